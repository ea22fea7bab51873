"""Break-glass recovery codes: when SSO is on, each admin can hold one-time
codes (shown once, stored hashed) to sign in with password + code if the IdP
is broken. Every use is audited and emailed to the other admins."""
from __future__ import annotations

import secrets

from sqlalchemy import delete, func, select, update
from werkzeug.security import check_password_hash

from app import mail
from app.audit.service import record
from app.auth.service import DECOY_HASH, users_with_email
from app.extensions import db
from app.models import RecoveryCode, Role, User, UserStatus, utcnow
from app.security import hash_secret
from app.sso.policy import enforced_connection

CODES_PER_ADMIN = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o/1/l/i: codes are typed by hand


def _new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalize(code: str) -> str:
    raw = "".join(ch for ch in (code or "").lower() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}" if len(raw) == 12 else raw


def unused_count(user: User) -> int:
    return db.session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.workspace_id == user.workspace_id, RecoveryCode.user_id == user.id,
        RecoveryCode.used_at.is_(None))) or 0


def generate(user: User) -> list[str]:
    """New codes for an admin, replacing their unused ones; the plain codes are returned once."""
    if not user.is_admin:
        raise PermissionError("Only admins hold recovery codes.")
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.workspace_id == user.workspace_id,
                                                  RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))
    codes = [_new_code() for _ in range(CODES_PER_ADMIN)]
    for code in codes:
        db.session.add(RecoveryCode(workspace_id=user.workspace_id, user_id=user.id, code_hash=hash_secret(code)))
    record(user.workspace_id, "sso.recovery_codes_generated", actor=user, target=user, count=len(codes))
    return codes


class RecoveryRefused(ValueError):
    pass


def sign_in_with_code(email: str, password: str, code: str) -> User:
    """The admin whose password and unused code match, with the code consumed.

    One vague refusal for every wrong part (no enumeration of accounts or codes)."""
    refused = RecoveryRefused("That email, password and recovery code don't match an admin of a workspace "
                              "that uses single sign-on.")
    code_hash = hash_secret(normalize(code))
    password_checked = False
    for user in users_with_email(email):
        if user.role != Role.admin.value or user.status != UserStatus.active.value or not user.password_hash:
            continue
        if enforced_connection(user.workspace_id) is None:
            continue
        password_checked = True
        if not check_password_hash(user.password_hash, password):
            continue
        row = db.session.scalar(select(RecoveryCode).where(
            RecoveryCode.workspace_id == user.workspace_id, RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == code_hash))
        if row is None or row.used_at is not None:
            continue
        # Single use even with two concurrent requests: only one UPDATE matches.
        used = db.session.execute(update(RecoveryCode).where(RecoveryCode.id == row.id,
                                                             RecoveryCode.used_at.is_(None))
                                  .values(used_at=utcnow())).rowcount
        if used != 1:
            continue
        left = unused_count(user)
        record(user.workspace_id, "sso.recovery_code_used", actor=user, target=user, codes_left=left)
        _tell_other_admins(user, left)
        return user
    if not password_checked:  # as long as a real check: the time taken must not tell who is an admin here
        check_password_hash(DECOY_HASH, password)
    raise refused


def _tell_other_admins(user: User, left: int) -> None:
    admins = db.session.scalars(select(User).where(User.workspace_id == user.workspace_id,
                                                   User.role == Role.admin.value,
                                                   User.status == UserStatus.active.value, User.id != user.id))
    for admin in admins:
        mail.send(admin.email, f"{user.display_name} signed in with a recovery code", "sso_recovery_code_used",
                  workspace_id=user.workspace_id, admin=admin, user=user, workspace=user.workspace, codes_left=left)
