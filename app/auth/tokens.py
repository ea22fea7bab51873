"""Single-use emailed links (password reset, invitation): random, hashed, expiring."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from app.extensions import db
from app.models import EmailToken, TokenPurpose, User, UserStatus, utcnow
from app.security import hash_secret, new_secret

LIFETIME = {
    TokenPurpose.password_reset: dt.timedelta(hours=1),
    TokenPurpose.invitation: dt.timedelta(days=7),
}


def issue(user: User, purpose: TokenPurpose) -> str:
    """Invalidate the user's earlier links of this kind and return a new secret."""
    now = utcnow()
    db.session.execute(
        update(EmailToken)
        .where(EmailToken.user_id == user.id, EmailToken.purpose == purpose.value, EmailToken.used_at.is_(None))
        .values(used_at=now)
    )
    secret = new_secret()
    db.session.add(EmailToken(workspace_id=user.workspace_id, user_id=user.id, purpose=purpose.value,
                              token_hash=hash_secret(secret), expires_at=now + LIFETIME[purpose]))
    return secret


def find_usable(secret: str, purpose: TokenPurpose) -> EmailToken | None:
    if not secret or len(secret) > 128:
        return None
    # Looked up by its hash: an index hit, and the comparison never touches the secret.
    token = db.session.scalar(select(EmailToken).where(EmailToken.token_hash == hash_secret(secret),
                                                       EmailToken.purpose == purpose.value))
    if token is None or not token.is_usable or not _fits(token.user, purpose):
        return None
    return token


def _fits(user: User, purpose: TokenPurpose) -> bool:
    """An invitation is for someone still invited (not a deactivated or an active member);
    no link is for a deactivated member (deactivation revokes them too: belt and braces)."""
    if purpose is TokenPurpose.invitation:
        return user.status == UserStatus.invited.value
    return user.status != UserStatus.deactivated.value


def consume(token: EmailToken) -> bool:
    """Mark used; False if someone else used it first (two tabs, a double click)."""
    result = db.session.execute(
        update(EmailToken).where(EmailToken.id == token.id, EmailToken.used_at.is_(None)).values(used_at=utcnow())
    )
    return result.rowcount == 1


def revoke_all(user: User) -> None:
    """Every unused link of the user stops working (deactivation: no invitation or reset brings them back)."""
    db.session.execute(update(EmailToken).where(EmailToken.user_id == user.id, EmailToken.used_at.is_(None))
                       .values(used_at=utcnow()))
