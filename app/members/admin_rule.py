"""The rule that holds everywhere: a workspace always keeps at least one active
admin who can sign in. Every action that could break it asks here first."""
from __future__ import annotations

from sqlalchemy import select

from app.auth.policy import can_sign_in
from app.database import serialize_on
from app.extensions import db
from app.models import Role, User, UserStatus


class LastAdminError(ValueError):
    """The change would leave the workspace without an admin who can sign in."""

    def __init__(self, message: str | None = None):
        super().__init__(message or "This would leave the workspace without an active admin who can sign in. "
                         "Make another member an admin first.")


def admins_who_can_sign_in(workspace_id: int, *, excluding: set[int] = frozenset()) -> list[User]:
    admins = db.session.scalars(
        select(User).where(User.workspace_id == workspace_id, User.role == Role.admin.value,
                           User.status == UserStatus.active.value)
    ).all()
    return [u for u in admins if u.id not in excluding and can_sign_in(u)]


def ensure_admin_remains(workspace_id: int, *, losing: User | None = None, policy_check=None) -> None:
    """Raise LastAdminError unless an admin who can sign in remains.

    `losing` is the user about to stop being such an admin (demoted,
    deactivated, deleted). `policy_check(user) -> bool`, when given, answers
    "can this user still sign in after the change?" (SSO enforcement, domain
    removal) in place of the current policy.
    """
    # Two admins demoting each other at once must not both pass: the second waits for the first.
    serialize_on(f"workspace-admins:{workspace_id}")
    excluding = {losing.id} if losing is not None and losing.id is not None else set()
    admins = db.session.scalars(
        select(User).where(User.workspace_id == workspace_id, User.role == Role.admin.value,
                           User.status == UserStatus.active.value)
    ).all()
    check = policy_check or can_sign_in
    if not any(u.id not in excluding and check(u) for u in admins):
        raise LastAdminError()
