"""The audit log: one function writes it, every area calls it."""
from __future__ import annotations

import re

from flask import has_request_context, request
from sqlalchemy import Text, cast, func, or_, select, update

from app.database import like_escape
from app.deferred_writes import insert_at_commit
from app.extensions import db
from app.models import AuditEvent, User, utcnow


def record(workspace_id: int, action: str, *, actor: User | None = None, actor_label: str | None = None,
           target: object | None = None, target_type: str | None = None, target_id: object | None = None,
           target_label: str | None = None, **details) -> None:
    """Write an audit event in the caller's transaction (it commits or rolls back with the change).

    `action` is `<kind>.<verb>`, e.g. `member.invited`; the kind is what the
    audit page filters on. The target is an object, or its type, id and label
    when the row is gone or not loaded (a purge pseudonymises events by target
    id, so pass it). The row is inserted when the transaction commits, with the
    request's other bookkeeping rows (app/deferred_writes.py): events are never
    read back in the request that writes them, so neither the ORM's unit of work
    nor a round trip of their own is worth paying on every change.
    """
    if target is not None:
        target_type = target_type or type(target).__name__.lower()
        target_label = target_label or getattr(target, "email", None) or getattr(target, "name", None)
        target_id = target_id if target_id is not None else getattr(target, "id", None)
    insert_at_commit(db.session, AuditEvent.__table__, {
        "workspace_id": workspace_id,
        "action": action,
        "actor_id": actor.id if actor is not None else None,
        "actor_label": actor_label or (actor.email if actor is not None else "system"),
        "target_type": target_type,
        "target_id": str(target_id) if target_id is not None else None,
        "target_label": (target_label or "")[:254] or None,
        "details": {k: v for k, v in details.items() if v is not None},
        "ip_address": request.remote_addr if has_request_context() else None,
        "created_at": utcnow(),
    })


PAGE_SIZE = 50


def list_events(workspace_id: int, *, kind: str | None = None, page: int = 1):
    query = select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
    if kind:
        query = query.where(AuditEvent.action.like(f"{kind}.%"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    events = db.session.scalars(
        query.order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
    ).all()
    return events, total


def kinds(workspace_id: int) -> list[str]:
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.workspace_id == workspace_id).distinct())
    return sorted({a.partition(".")[0] for a in actions})


def addresses_of(workspace_id: int, user_id: int, *current: str) -> set[str]:
    """Every address a member has had, lowercased: `current` and those their email-change
    events record. The purge looks for all of them (a log row may predate a change)."""
    addresses = {a.lower() for a in current if a}
    changes = db.session.scalars(select(AuditEvent.details).where(
        AuditEvent.workspace_id == workspace_id, AuditEvent.target_type == "user",
        AuditEvent.target_id == str(user_id), AuditEvent.action.like("%email_changed")))
    for details in changes:
        addresses.update(v.lower() for k, v in (details or {}).items() if k in ("old", "new") and isinstance(v, str))
    return addresses


def pseudonymise_user(workspace_id: int, user_id: int, label: str, *, addresses: set[str] = frozenset(),
                      names: set[str] = frozenset()) -> None:
    """Keep a purged user's audit trail, without their identity: the actor and target
    labels, the IP address of what they did, and in `details` any of their `addresses`
    (wherever it appears, e.g. the old address of an email change, or "transfer_to" on
    another member's deletion) and any value that is exactly one of their `names` (full
    name, externalId) in events about them."""
    db.session.execute(update(AuditEvent).where(AuditEvent.workspace_id == workspace_id, AuditEvent.actor_id == user_id)
                       .values(actor_label=label, actor_id=None, ip_address=None))  # their address is theirs too
    about_them = (AuditEvent.target_type == "user") & (AuditEvent.target_id == str(user_id))
    db.session.execute(update(AuditEvent).where(AuditEvent.workspace_id == workspace_id, about_them)
                       .values(target_label=label))
    details_text = func.lower(cast(AuditEvent.details, Text))
    mentions = [details_text.like(f"%{like_escape(a)}%", escape="\\") for a in sorted(addresses)]
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.workspace_id == workspace_id,
                                                         or_(about_them, *mentions)))
    lowered_names = {n.lower() for n in names if n}
    by_address = address_pattern(addresses)
    for event in events:
        scrubbed = redact(event.details, label, by_address, lowered_names)
        if scrubbed != event.details:
            event.details = scrubbed


def address_pattern(addresses: set[str]) -> re.Pattern | None:
    """Finds any of `addresses` as a whole address: purging lee@x.example leaves
    ada.lee@x.example and lee@x.example.org alone."""
    if not addresses:
        return None
    alternatives = "|".join(re.escape(a) for a in sorted(addresses, key=len, reverse=True))
    return re.compile(rf"(?<![\w.%+-])(?:{alternatives})(?![\w-]|\.\w)", re.IGNORECASE)


def redact(value, label: str, by_address: re.Pattern | None, names: set[str]):
    """`value` (JSON-like) with every address `by_address` (an `address_pattern`) finds
    replaced by `label`, and every string that is exactly one of `names` (lowercased)."""
    if isinstance(value, dict):
        return {k: redact(v, label, by_address, names) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, label, by_address, names) for v in value]
    if not isinstance(value, str):
        return value
    if value.strip().lower() in names:
        return label
    return by_address.sub(label, value) if by_address is not None else value
