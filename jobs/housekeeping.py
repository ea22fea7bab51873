"""Housekeeping: expired links and invitations, and mail the queue lost."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select

from app.extensions import db
from app.models import EmailToken, OutboundEmail, TokenPurpose, User, UserStatus, utcnow
from jobs.worker import app_job

STALE_MAIL_AFTER = dt.timedelta(minutes=5)
KEEP_USED_TOKENS = dt.timedelta(days=30)


@app_job
def housekeeping() -> dict:
    now = utcnow()
    # Invitations nobody accepted: the invited row goes, an admin can invite again.
    expired_invites = db.session.scalars(
        select(EmailToken.user_id).where(EmailToken.purpose == TokenPurpose.invitation.value,
                                         EmailToken.expires_at < now, EmailToken.used_at.is_(None))
    ).all()
    removed_invitations = 0
    for user_id in set(expired_invites):
        user = db.session.get(User, user_id)
        still_valid = db.session.scalar(select(EmailToken.id).where(
            EmailToken.user_id == user_id, EmailToken.purpose == TokenPurpose.invitation.value,
            EmailToken.expires_at >= now, EmailToken.used_at.is_(None)))
        if user is not None and user.status == UserStatus.invited.value and still_valid is None:
            from app.audit.service import record
            record(user.workspace_id, "member.invitation_expired", target=user)
            db.session.delete(user)
            removed_invitations += 1
    deleted_tokens = db.session.execute(
        delete(EmailToken).where((EmailToken.expires_at < now - KEEP_USED_TOKENS)
                                 | ((EmailToken.used_at.is_not(None)) & (EmailToken.used_at < now - KEEP_USED_TOKENS)))
    ).rowcount
    # Mail whose job was lost (Redis flushed, worker killed): enqueue it again.
    stale = db.session.scalars(select(OutboundEmail.id).where(
        OutboundEmail.status == "queued", OutboundEmail.created_at < now - STALE_MAIL_AFTER,
        (OutboundEmail.next_attempt_at.is_(None)) | (OutboundEmail.next_attempt_at < now - STALE_MAIL_AFTER))).all()
    db.session.commit()
    from jobs.mail import enqueue_delivery
    for email_id in stale:
        enqueue_delivery(email_id)
    return {"invitations_removed": removed_invitations, "tokens_deleted": deleted_tokens, "mail_requeued": len(stale)}
