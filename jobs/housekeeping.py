"""Housekeeping: expired links and invitations, mail the queue lost, and old mail."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select, update

from app.extensions import db
from app.models import EmailToken, OutboundEmail, TokenPurpose, User, UserStatus, utcnow
from jobs.worker import app_job

STALE_MAIL_AFTER = dt.timedelta(minutes=5)
KEEP_USED_TOKENS = dt.timedelta(days=30)
KEEP_MAIL = dt.timedelta(days=90)  # who was mailed what, for the admins' "email sent" states; then it goes


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
    # Mail that gave up keeps no body (it may carry a single-use link; a resend makes a new row),
    # and no mail row outlives KEEP_MAIL: each names a person's address.
    wiped = db.session.execute(update(OutboundEmail).where(
        OutboundEmail.status == "failed", OutboundEmail.body_text.is_not(None) | OutboundEmail.body_html.is_not(None))
        .values(body_text=None, body_html=None)).rowcount
    deleted_mail = db.session.execute(delete(OutboundEmail).where(OutboundEmail.created_at < now - KEEP_MAIL)).rowcount
    db.session.commit()
    from jobs.mail import enqueue_delivery
    for email_id in stale:
        enqueue_delivery(email_id)
    return {"invitations_removed": removed_invitations, "tokens_deleted": deleted_tokens, "mail_requeued": len(stale),
            "failed_mail_wiped": wiped, "mail_deleted": deleted_mail}
