"""Sign-in rules: password checks, where an email should sign in, resets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app import mail
from app.audit.service import record
from app.auth import tokens
from app.auth.policy import SignInMethod, sign_in_method
from app.extensions import db
from app.models import EmailToken, TokenPurpose, User, UserStatus
from app.security import hash_secret
from app.urls import external_url

# A constant-time decoy so a missing account costs as much as a wrong password.
DECOY_HASH = generate_password_hash("decoy-password-never-matches")

# email -> (URL that starts SSO for it, the workspace whose SSO it is), or None.
# Registered by the SSO area.
_home_realm: Callable[[str], tuple[str, int] | None] | None = None


def register_home_realm_discovery(finder: Callable[[str], tuple[str, int] | None]) -> None:
    global _home_realm
    _home_realm = finder


def sso_start_url(email: str) -> str | None:
    """Where /login sends this email straight away: the IdP of the workspace that verified its
    domain and has SSO on, unless the address also has an account in another workspace. That
    workspace's own rules apply to that account (a password, perhaps), so the person gets the
    password step, which offers SSO too (`sso_offer`)."""
    realm = _home_realm(email) if _home_realm is not None else None
    if realm is None:
        return None
    url, workspace_id = realm
    elsewhere = db.session.scalar(select(User.id).where(User.email_normalized == User.normalize_email(email),
                                                        User.workspace_id != workspace_id).limit(1))
    return None if elsewhere is not None else url


def sso_offer(email: str) -> str | None:
    """The SSO start the password step offers for this email, if its domain has one."""
    realm = _home_realm(email) if _home_realm is not None else None
    return realm[0] if realm else None


def sso_start_for(user: User) -> str | None:
    """The SSO start of the user's own workspace for their address (not another workspace's
    that verified a parent or child domain)."""
    realm = _home_realm(user.email) if _home_realm is not None else None
    return realm[0] if realm and realm[1] == user.workspace_id else None


def users_with_email(email: str) -> list[User]:
    return list(db.session.scalars(select(User).where(User.email_normalized == User.normalize_email(email))
                                   .order_by(User.workspace_id)))


def set_password(user: User, password: str) -> None:
    user.password_hash = generate_password_hash(password)


@dataclass
class PasswordOutcome:
    users: list[User]          # accounts whose password matched and may sign in
    refusal: str | None = None  # shown when the password matched but sign-in is not allowed


def check_password(email: str, password: str) -> PasswordOutcome:
    """Accounts with this email whose password matches. Says nothing about an
    account until its password is right (no enumeration)."""
    candidates = [u for u in users_with_email(email) if u.password_hash]
    if not candidates:
        check_password_hash(DECOY_HASH, password)
        return PasswordOutcome([])
    matched = [u for u in candidates if check_password_hash(u.password_hash, password)]
    allowed, refusal = [], None
    for user in matched:
        method = sign_in_method(user)
        if method is SignInMethod.password:
            allowed.append(user)
        elif user.status == UserStatus.deactivated.value:
            refusal = "This account has been deactivated. Contact an admin of your workspace."
        elif method is SignInMethod.sso:
            refusal = "Your workspace requires single sign-on. Continue with SSO instead of a password."
        else:
            refusal = "Your workspace doesn't allow you to sign in. Contact an admin of your workspace."
    return PasswordOutcome(allowed, None if allowed else refusal)


def send_password_reset(email: str) -> None:
    for user in users_with_email(email):
        if user.status == UserStatus.deactivated.value:
            continue
        secret = tokens.issue(user, TokenPurpose.password_reset)
        link = external_url("auth.reset_password", token=secret)
        mail.send(user.email, "Reset your Gatehouse password", "password_reset", workspace_id=user.workspace_id,
                  user=user, workspace=user.workspace, link=link)
        record(user.workspace_id, "auth.password_reset_requested", actor=user, target=user)


def complete_password_reset(token, password: str) -> User:
    user = token.user
    set_password(user, password)
    user.end_all_sessions()
    record(user.workspace_id, "auth.password_reset", actor=user, target=user)
    if user.status == UserStatus.invited.value:
        # The link proved the address, as the invitation's would have: they have joined.
        user.status = UserStatus.active.value
        record(user.workspace_id, "member.invitation_accepted", actor=user, target=user, via="password reset")
    return user


def invitee_of_link(secret: str) -> User | None:
    """Whom an invitation link was for, even once it no longer works (None when the invitee
    is gone: a revoked invitation, or the link's row cleaned up)."""
    if not secret or len(secret) > 128:
        return None
    return db.session.scalar(select(User).join(EmailToken, EmailToken.user_id == User.id).where(
        EmailToken.token_hash == hash_secret(secret), EmailToken.purpose == TokenPurpose.invitation.value))


def accept_invitation(token, name: str, password: str) -> User:
    user = token.user
    user.name = name.strip()
    set_password(user, password)
    user.status = UserStatus.active.value
    record(user.workspace_id, "member.invitation_accepted", actor=user, target=user)
    return user
