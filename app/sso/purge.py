"""Permanent deletion of a user: their SAML login log rows and recovery codes."""
from __future__ import annotations

from sqlalchemy import delete, func, select

from app.audit.service import addresses_of
from app.extensions import db
from app.models import RecoveryCode, SamlLoginLog, User


def delete_login_log(workspace_id: int, user_id: int, batch_size: int) -> int:
    """Rows about the user: by id, and refused attempts that only carry an address of theirs."""
    user = db.session.get(User, user_id)
    about_user = SamlLoginLog.user_id == user_id
    if user is not None and user.workspace_id == workspace_id:
        # The log keeps the address as the IdP sent it (any case), and maybe a former one.
        addresses = addresses_of(workspace_id, user_id, user.email_normalized)
        about_user = about_user | func.lower(SamlLoginLog.email).in_(sorted(addresses))
    ids = db.session.scalars(select(SamlLoginLog.id).where(SamlLoginLog.workspace_id == workspace_id, about_user)
                             .limit(batch_size)).all()
    deleted = 0
    if ids:
        deleted += db.session.execute(delete(SamlLoginLog).where(SamlLoginLog.id.in_(ids))).rowcount
    if deleted < batch_size:
        deleted += db.session.execute(delete(RecoveryCode).where(RecoveryCode.workspace_id == workspace_id,
                                                                 RecoveryCode.user_id == user_id)).rowcount
    return deleted
