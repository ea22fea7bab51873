"""Who may sign in, and how. One place, so the admin rule and the login page agree.

The SSO area registers its enforcement here (`register_sso_policy`): with SSO
on, members on authorized domains must use SSO and members outside them are
blocked. Without it every active member may use their password.
"""
from __future__ import annotations

import enum
from typing import Callable

from app.models import User, UserStatus


class SignInMethod(str, enum.Enum):
    password = "password"
    sso = "sso"
    blocked = "blocked"


# (user) -> SignInMethod | None; None means "no SSO rule applies to this user".
_sso_policy: Callable[[User], SignInMethod | None] | None = None


def register_sso_policy(policy: Callable[[User], SignInMethod | None]) -> None:
    global _sso_policy
    _sso_policy = policy


def sign_in_method(user: User) -> SignInMethod:
    if user.status != UserStatus.active.value:
        return SignInMethod.blocked
    return sign_in_method_once_active(user)


def sign_in_method_once_active(user: User) -> SignInMethod:
    """How the user will sign in when active: what an invitation asks of an invitee (and
    whether one can be sent), while `sign_in_method` still says "blocked" for them."""
    if _sso_policy is not None:
        method = _sso_policy(user)
        if method is not None:
            return method
    return SignInMethod.password


def can_sign_in(user: User) -> bool:
    """An active user with a way in: SSO, or a password (one can always be set
    through the emailed reset link, so a missing password is not a lock-out)."""
    return sign_in_method(user) is not SignInMethod.blocked
