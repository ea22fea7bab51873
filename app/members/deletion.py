"""Permanent deletion of a deactivated member: what will go, starting it, and
the batch loop the RQ job runs (jobs.members.purge_user).

Resumable and idempotent: every batch deletes (or transfers) at most
`batch_size` rows and records its count in the UserPurge row in the same
transaction, so a worker killed at any point leaves exact progress, and the
next run simply continues. Each area's rows go through the steps registered in
app.members.purge; this module adds the member's own data (recordings, email
links, outbound mail). Audit events stay, with the person pseudonymised.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from app.audit.service import address_pattern, addresses_of, pseudonymise_user, record
from app.database import like_escape, serialize_on
from app.extensions import db
from app.members.purge import purge_steps
from app.models import EmailToken, OutboundEmail, Recording, User, UserStatus, utcnow
from app.models.user_purge import PurgeState, UserPurge
from app.scoping import get_scoped

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# A running purge renews this lease with every batch; one silent for longer lost its worker.
LEASE = dt.timedelta(minutes=5)
ACTIVE_STATES = (PurgeState.queued.value, PurgeState.running.value)


class DeletionError(ValueError):
    """The deletion cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class DeletionPreview:
    recordings: int
    groups: int
    email_links: int
    emails: int


def preview(user: User) -> DeletionPreview:
    def count(query) -> int:
        return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    from app.models.scim import GroupMember
    return DeletionPreview(
        recordings=count(select(Recording.id).where(Recording.workspace_id == user.workspace_id,
                                                    Recording.owner_id == user.id)),
        groups=count(select(GroupMember.group_id).where(GroupMember.workspace_id == user.workspace_id,
                                                        GroupMember.user_id == user.id)),
        email_links=count(select(EmailToken.id).where(EmailToken.user_id == user.id)),
        emails=count(_outbound_query(user.workspace_id,
                                     addresses_of(user.workspace_id, user.id, user.email_normalized))),
    )


def transfer_candidates(user: User) -> list[User]:
    return list(db.session.scalars(select(User).where(
        User.workspace_id == user.workspace_id, User.status == UserStatus.active.value, User.id != user.id)
        .order_by(User.email_normalized)))


def active_purge(workspace_id: int, user_id: int) -> UserPurge | None:
    return db.session.scalar(select(UserPurge).where(
        UserPurge.workspace_id == workspace_id, UserPurge.user_id == user_id, UserPurge.state.in_(ACTIVE_STATES))
        .order_by(UserPurge.id.desc()).limit(1))


def purges_by_user(workspace_id: int, user_ids: list[int]) -> dict[int, UserPurge]:
    if not user_ids:
        return {}
    rows = db.session.scalars(select(UserPurge).where(
        UserPurge.workspace_id == workspace_id, UserPurge.user_id.in_(user_ids), UserPurge.state.in_(ACTIVE_STATES)))
    return {row.user_id: row for row in rows}


def start(user: User, *, actor: User, transfer_to: User | None = None) -> UserPurge:
    """Record the request (the caller commits, then enqueues the job)."""
    if user.status != UserStatus.deactivated.value:
        raise DeletionError(f"Deactivate {user.email} before deleting them permanently.")
    found = preview(user)  # counted before the lock: it reads a lot, and holding SQLite's write lock would stall others
    serialize_on(f"purge:{user.workspace_id}:{user.id}")  # a double click makes one purge, not two
    existing = active_purge(user.workspace_id, user.id)
    if existing is not None:
        return existing
    if transfer_to is not None:
        if (transfer_to.workspace_id != user.workspace_id or transfer_to.id == user.id
                or transfer_to.status != UserStatus.active.value):
            raise DeletionError("Recordings can only be transferred to an active member of this workspace.")
    recordings_step = "recordings_transferred" if transfer_to else "recordings_deleted"
    purge = UserPurge(workspace_id=user.workspace_id, user_id=user.id, user_label=user.email,
                      requested_by_id=actor.id, transfer_recordings=transfer_to is not None,
                      transfer_to_id=transfer_to.id if transfer_to else None, state=PurgeState.queued.value,
                      counts={}, expected={recordings_step: found.recordings, "scim_group_memberships": found.groups,
                                           "email_links": found.email_links, "emails": found.emails})
    db.session.add(purge)
    db.session.flush()
    record(user.workspace_id, "member.deletion_requested", actor=actor, target=user, purge_id=purge.id,
           recordings=found.recordings, transfer_to=transfer_to.email if transfer_to else None)
    return purge


# --- the batch loop (run by the job) ---------------------------------------------------------

def _outbound_query(workspace_id: int, addresses: set[str]):
    """Mail sent to the member, at any address they have had."""
    return select(OutboundEmail.id).where(OutboundEmail.workspace_id == workspace_id,
                                          func.lower(OutboundEmail.to).in_(sorted(addresses)))


def _delete_ids(model, ids: list) -> int:
    if not ids:
        return 0
    return db.session.execute(delete(model).where(model.id.in_(ids))).rowcount


def _member_steps(purge: UserPurge, addresses: set[str]) -> list[tuple[str, object]]:
    """The member's own rows, as steps `fn(batch_size) -> rows handled`."""
    ws, uid = purge.workspace_id, purge.user_id

    def recordings(batch: int) -> int:
        ids = db.session.scalars(select(Recording.id).where(Recording.workspace_id == ws, Recording.owner_id == uid)
                                 .order_by(Recording.id).limit(batch)).all()
        if not ids:
            return 0
        if purge.transfer_recordings:
            return db.session.execute(update(Recording).where(Recording.id.in_(ids))
                                      .values(owner_id=purge.transfer_to_id)).rowcount
        return _delete_ids(Recording, ids)

    def email_links(batch: int) -> int:
        return _delete_ids(EmailToken, db.session.scalars(select(EmailToken.id).where(
            EmailToken.workspace_id == ws, EmailToken.user_id == uid).limit(batch)).all())

    def emails(batch: int) -> int:
        return _delete_ids(OutboundEmail, db.session.scalars(_outbound_query(ws, addresses).limit(batch)).all())

    name = "recordings_transferred" if purge.transfer_recordings else "recordings_deleted"
    return [(name, recordings), ("email_links", email_links), ("emails", emails)]


def _steps(purge: UserPurge, addresses: set[str]) -> list[tuple[str, object]]:
    steps = _member_steps(purge, addresses)
    for name, step in purge_steps().items():
        steps.append((name, lambda batch, step=step: step(purge.workspace_id, purge.user_id, batch)))
    return steps


def _stop(purge: UserPurge, message: str) -> UserPurge:
    purge.state, purge.error, purge.updated_at = PurgeState.failed.value, message, utcnow()
    record(purge.workspace_id, "member.deletion_stopped", target_type="user", target_id=str(purge.user_id),
           target_label=purge.user_label, purge_id=purge.id, reason=message)
    db.session.commit()
    return purge


def run(purge_id: int, *, batch_size: int = DEFAULT_BATCH_SIZE, pause: float = 0.0) -> UserPurge | None:
    """Run (or resume) one purge to its end. Commits after every batch."""
    if not _claim(purge_id):
        return db.session.get(UserPurge, purge_id)  # done, stopped, missing, or another worker has it
    purge = db.session.get(UserPurge, purge_id)
    batch_size = max(1, int(batch_size))
    user = get_scoped(User, purge.workspace_id, purge.user_id)
    if user is None:
        return _finish(purge)  # an earlier run deleted the row but did not get to mark it done
    addresses = addresses_of(purge.workspace_id, purge.user_id, user.email_normalized, purge.user_label)
    for name, step in _steps(purge, addresses):
        while True:
            db.session.refresh(user, ["status"])
            if user.status != UserStatus.deactivated.value:
                return _stop(purge, "The member was reactivated while being deleted; deletion stopped. "
                                    "What was already deleted is gone.")
            if purge.transfer_recordings and not _transfer_target_ok(purge):
                return _stop(purge, "The member chosen to receive the recordings is no longer active; "
                                    "deletion stopped before deleting anything they were meant to keep.")
            try:
                handled = step(batch_size)
                if not handled:
                    break
                purge.counts = {**purge.counts, name: purge.counts.get(name, 0) + handled}
                purge.batches += 1
                purge.updated_at = utcnow()
                db.session.commit()  # the batch and its count together: exact progress if killed now
            except SQLAlchemyError as exc:
                db.session.rollback()  # this batch is undone; everything before it stays done and counted
                log.exception("purge %s: step %s failed", purge_id, name)
                return _stop(db.session.get(UserPurge, purge_id),
                             f"Deleting stopped at “{name.replace('_', ' ')}” ({type(exc).__name__}). What was "
                             f"deleted so far stays deleted; try again.")
            if pause:
                time.sleep(pause)
    return _finish(purge, user)


def _claim(purge_id: int) -> bool:
    """Take the purge for this run: queued, or running but silent for LEASE (its
    worker died). Every batch renews the lease, so two workers never share one."""
    now = utcnow()
    claimed = db.session.execute(update(UserPurge).where(
        UserPurge.id == purge_id,
        or_(UserPurge.state == PurgeState.queued.value,
            and_(UserPurge.state == PurgeState.running.value, UserPurge.updated_at < now - LEASE)))
        .values(state=PurgeState.running.value, updated_at=now)).rowcount
    db.session.commit()
    return claimed == 1


def _transfer_target_ok(purge: UserPurge) -> bool:
    target = get_scoped(User, purge.workspace_id, purge.transfer_to_id) if purge.transfer_to_id else None
    return target is not None and target.status == UserStatus.active.value


def pseudonym(purge: UserPurge) -> str:
    return f"Deleted user #{purge.id}"


def _finish(purge: UserPurge, user: User | None = None) -> UserPurge:
    label = pseudonym(purge)
    try:
        # Everything that still names them: what they were called, and every address they had.
        current = (user.email_normalized,) if user is not None else ()
        addresses = addresses_of(purge.workspace_id, purge.user_id, purge.user_label, *current)
        names = {user.name, user.external_id, f"{user.given_name or ''} {user.family_name or ''}".strip()} \
            if user is not None else set()
        names = {n for n in names if n}
        # Rows written while the steps ran (a refused sign-in, a SCIM request naming them) go too.
        for name, step in _steps(purge, addresses):
            while handled := step(DEFAULT_BATCH_SIZE):
                purge.counts = {**purge.counts, name: purge.counts.get(name, 0) + handled}
        pseudonymise_user(purge.workspace_id, purge.user_id, label, addresses=addresses, names=names)
        _redact_mail(purge.workspace_id, label, addresses, names)
        # Earlier attempts (stopped, then retried) named them on the deletion page too.
        db.session.execute(update(UserPurge).where(UserPurge.workspace_id == purge.workspace_id,
                                                   UserPurge.user_id == purge.user_id).values(user_label=label))
        if user is not None:
            db.session.delete(user)
        requester = get_scoped(User, purge.workspace_id, purge.requested_by_id) if purge.requested_by_id else None
        record(purge.workspace_id, "member.purged", actor=requester, target_type="user",
               target_id=str(purge.user_id), target_label=label, purge_id=purge.id, **purge.counts)
        purge.user_label = label
        purge.state, purge.finished_at = PurgeState.done.value, utcnow()
        purge.updated_at = purge.finished_at
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.exception("purge %s could not delete user %s", purge.id, purge.user_id)
        purge = db.session.get(UserPurge, purge.id)
        return _stop(purge, f"The member's account could not be removed ({type(exc).__name__}); "
                            "their data is deleted. Try again, or contact support.")
    return purge


def _redact_mail(workspace_id: int, label: str, addresses: set[str], names: set[str]) -> None:
    """Mail to other people that names the member (an admin told of their deactivation,
    of their recovery-code sign-in; invitations they sent) keeps its record, without them:
    their addresses, and full names of several words (so "Ada" alone never redacts "Adam")."""
    names = {n.strip().lower() for n in names if n and " " in n.strip()}
    needles = sorted(addresses | names)
    if not needles:
        return
    columns = (OutboundEmail.subject, OutboundEmail.body_text, OutboundEmail.body_html)
    mentions = [func.lower(column).like(f"%{like_escape(n)}%", escape="\\") for n in needles for column in columns]
    by_address = address_pattern(addresses)
    by_name = re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)), re.IGNORECASE) \
        if names else None

    def scrub(text: str | None) -> str | None:
        for pattern in (by_address, by_name):
            if text and pattern is not None:
                text = pattern.sub(label, text)
        return text

    for mail in db.session.scalars(select(OutboundEmail).where(OutboundEmail.workspace_id == workspace_id,
                                                               or_(*mentions))):
        mail.subject = scrub(mail.subject)[:300]
        mail.body_text, mail.body_html = scrub(mail.body_text), scrub(mail.body_html)


def stalled() -> list[UserPurge]:
    """Purges whose job was lost (Redis flushed, worker killed): the sweep resumes them."""
    cutoff = utcnow() - LEASE
    return list(db.session.scalars(select(UserPurge).where(UserPurge.state.in_(ACTIVE_STATES),
                                                           UserPurge.updated_at < cutoff)))
