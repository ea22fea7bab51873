"""Single-use emailed links (password reset, invitation): random, hashed, expiring."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from app.extensions import db
from app.models import EmailToken, TokenPurpose, User, utcnow
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
    return token if token is not None and token.is_usable else None


def consume(token: EmailToken) -> bool:
    """Mark used; False if someone else used it first (two tabs, a double click)."""
    result = db.session.execute(
        update(EmailToken).where(EmailToken.id == token.id, EmailToken.used_at.is_(None)).values(used_at=utcnow())
    )
    return result.rowcount == 1
