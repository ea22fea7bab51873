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


def lock_admins(workspace_id: int, *, wait: bool = True) -> bool:
    """Before a change that could leave the workspace without an admin who can sign in: two
    such changes at once (two demotions, a demotion and a domain removal) must not both pass
    their check; the second waits for the first to commit (wait=False: False instead)."""
    return serialize_on(f"workspace-admins:{workspace_id}", wait=wait)


def _active_admins(workspace_id: int) -> list[User]:
    # populate_existing: admins already loaded in this session (the current user, say) are read
    # again, so a change another request committed meanwhile (an address, a role) counts.
    return db.session.scalars(
        select(User).where(User.workspace_id == workspace_id, User.role == Role.admin.value,
                           User.status == UserStatus.active.value).execution_options(populate_existing=True)
    ).all()


def admins_who_can_sign_in(workspace_id: int, *, excluding: set[int] = frozenset()) -> list[User]:
    return [u for u in _active_admins(workspace_id) if u.id not in excluding and can_sign_in(u)]


def ensure_admin_remains(workspace_id: int, *, losing: User | None = None, policy_check=None) -> None:
    """Raise LastAdminError unless an admin who can sign in remains.

    `losing` is the user about to stop being such an admin (demoted,
    deactivated, deleted). `policy_check(user) -> bool`, when given, answers
    "can this user still sign in after the change?" (SSO enforcement, domain
    removal) in place of the current policy.
    """
    lock_admins(workspace_id)
    excluding = {losing.id} if losing is not None and losing.id is not None else set()
    check = policy_check or can_sign_in
    if not any(u.id not in excluding and check(u) for u in _active_admins(workspace_id)):
        raise LastAdminError()
