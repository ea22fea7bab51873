"""The SCIM request log an admin reads: method, path, status, time and a short
masked body (never a token or a password); kept for a limited time and count."""
from __future__ import annotations

import datetime as dt
import json
import re

from sqlalchemy import delete, func, or_, select

from app.audit.service import addresses_of
from app.database import like_escape
from app.deferred_writes import insert_at_commit
from app.extensions import db
from app.models import ScimRequestLog, ScimUserName, User, utcnow

KEEP_FOR = dt.timedelta(days=30)
KEEP_PER_WORKSPACE = 5000
BODY_LIMIT = 500
SECRET_KEY_RE = re.compile(r"password|secret|token|authorization|credential", re.IGNORECASE)
MASK = "***"


def mask_body(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return f"<{len(raw)} bytes, not JSON>"
    text = json.dumps(_mask(data), separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= BODY_LIMIT else text[:BODY_LIMIT - 1] + "…"


def _mask(value, depth: int = 0):
    if depth > 20:
        return MASK
    if isinstance(value, dict):
        # SCIM attribute names are case-insensitive, and so is our PATCH parser: "Path"/"Value" too.
        keys = {k.lower(): v for k, v in value.items() if isinstance(k, str)}
        secret_op = isinstance(keys.get("path"), str) and SECRET_KEY_RE.search(keys["path"])
        return {k: (MASK if isinstance(k, str) and (SECRET_KEY_RE.search(k) or (secret_op and k.lower() == "value"))
                    else _mask(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, depth + 1) for v in value]
    return value


def add_entry(workspace_id: int, method: str, path: str, status: int, duration_ms: int, body: bytes | None,
              user_id: int | None, client: str | None) -> None:
    # Inserted at commit with the change's audit events, in one statement (app/deferred_writes.py).
    # NULs dropped: PostgreSQL cannot store them, and the entry is committed with the request's change.
    insert_at_commit(db.session, ScimRequestLog.__table__, {
        "workspace_id": workspace_id, "method": method[:10], "path": path.replace("\x00", "")[:500], "status": status,
        "duration_ms": duration_ms, "body": mask_body(body), "user_id": user_id,
        "client": (client or "").replace("\x00", "")[:100] or None, "created_at": utcnow()})


def recent(workspace_id: int, limit: int = 100) -> list[ScimRequestLog]:
    return list(db.session.scalars(select(ScimRequestLog).where(ScimRequestLog.workspace_id == workspace_id)
                                   .order_by(ScimRequestLog.id.desc()).limit(limit)))


def prune(now: dt.datetime | None = None, keep: int = KEEP_PER_WORKSPACE) -> int:
    """Drop entries past KEEP_FOR, and all but the newest `keep` of each workspace."""
    now = now or utcnow()
    deleted = db.session.execute(delete(ScimRequestLog).where(ScimRequestLog.created_at < now - KEEP_FOR)).rowcount
    workspaces = db.session.scalars(select(ScimRequestLog.workspace_id).distinct()).all()
    for workspace_id in workspaces:
        cutoff = db.session.scalar(select(ScimRequestLog.id).where(ScimRequestLog.workspace_id == workspace_id)
                                   .order_by(ScimRequestLog.id.desc()).offset(keep).limit(1))
        if cutoff is not None:
            deleted += db.session.execute(delete(ScimRequestLog).where(ScimRequestLog.workspace_id == workspace_id,
                                                                       ScimRequestLog.id <= cutoff)).rowcount
    return deleted


# An attribute's value in a logged request (bodies are stored as compact JSON, lowered for the match):
# in a resource or a path-less PATCH value, as a PATCH operation's path and value, in a filter: in the
# query (logged percent-decoded, with its spaces as sent: " " or "+", hence the one-character `_`) or
# in a POST /.search body, where its quotes are escaped (`\\` is one backslash to LIKE).
_AS_ATTRIBUTE = ('%"{0}":"{1}"%', '%"path":"{0}","value":"{1}"%', '%{0}_eq_"{1}"%', r'%{0}_eq_\\"{1}\\"%')
# An address, quoted as a JSON or filter string, or inside a POST /.search filter.
_AS_STRING = ('%"{0}"%', r'%\\"{0}\\"%')


def purge_user_entries(workspace_id: int, user_id: int, batch_size: int) -> int:
    """Purge step: remove a deleted user's entries from the log, a batch at a time."""
    about_user = ScimRequestLog.user_id == user_id
    user = db.session.get(User, user_id)
    if user is not None and user.workspace_id == workspace_id:
        # Requests that named them before they had an id here (a filter, a create) go too: by every
        # address they have had (a request may predate an email change), matched whole, as the quoted
        # string it is in a body or a filter, so the entries of ada.lee@x (or lee@x.example) stay when
        # lee@x is purged; by their SCIM userName (an Entra UPN; its row goes with the user, after the
        # final pass) and their externalId only where they stand as those attributes: an externalId
        # such as "2" is also another member's id in a group's member list.
        stored = db.session.get(ScimUserName, user_id)
        patterns = [p.format(like_escape(address)) for address in
                    sorted(addresses_of(workspace_id, user_id, user.email_normalized)) for p in _AS_STRING]
        for attribute, value in (("externalid", user.external_id), ("username", stored and stored.user_name)):
            if value:
                patterns += [p.format(attribute, like_escape(value.lower())) for p in _AS_ATTRIBUTE]
        for pattern in patterns:
            about_user = or_(about_user, func.lower(ScimRequestLog.path).like(pattern, escape="\\"),
                             func.lower(ScimRequestLog.body).like(pattern, escape="\\"))
    ids = db.session.scalars(select(ScimRequestLog.id).where(ScimRequestLog.workspace_id == workspace_id, about_user)
                             .limit(batch_size)).all()
    if not ids:
        return 0
    return db.session.execute(delete(ScimRequestLog).where(ScimRequestLog.id.in_(ids))).rowcount
