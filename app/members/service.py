"""Member management: invitations, roles, deactivation. Views call these; these never commit."""
from __future__ import annotations

from sqlalchemy import func, or_, select

from app import mail
from app.audit.service import record
from app.auth import tokens
from app.auth.policy import SignInMethod, sign_in_method_once_active
from app.database import like_escape
from app.extensions import db
from app.members.admin_rule import ensure_admin_remains
from app.models import Role, TokenPurpose, User, UserSource, UserStatus, Workspace, utcnow
from app.urls import external_url


class MemberError(ValueError):
    pass


def find_member(workspace_id: int, email: str) -> User | None:
    return db.session.scalar(select(User).where(User.workspace_id == workspace_id,
                                                User.email_normalized == User.normalize_email(email)))


def invite(workspace: Workspace, email: str, role: str, *, actor: User, name: str = "") -> User:
    """Invite someone who will be able to sign in: with SSO on, an address outside the authorized
    domains would be blocked, so it is refused here rather than after they chose a password."""
    if find_member(workspace.id, email) is not None:
        raise MemberError(f"{email} is already a member of this workspace.")
    user = User(workspace_id=workspace.id, name=name.strip(), role=Role(role).value, status=UserStatus.invited.value,
                source=UserSource.invite.value)
    user.set_email(email)
    method = _invitee_sign_in(user, "invite them again")
    db.session.add(user)
    db.session.flush()
    _send_invitation(workspace, user, actor, method)
    record(workspace.id, "member.invited", actor=actor, target=user, role=user.role)
    return user


def resend_invitation(workspace: Workspace, user: User, *, actor: User) -> None:
    if user.status != UserStatus.invited.value:
        raise MemberError(f"{user.email} has already accepted the invitation.")
    _send_invitation(workspace, user, actor, _invitee_sign_in(user, "resend the invitation"))
    record(workspace.id, "member.invitation_resent", actor=actor, target=user)


def revoke_invitation(workspace: Workspace, user: User, *, actor: User) -> None:
    if user.status != UserStatus.invited.value:
        raise MemberError(f"{user.email} has already accepted the invitation; deactivate them instead.")
    record(workspace.id, "member.invitation_revoked", actor=actor, target=user)
    db.session.delete(user)


def _invitee_sign_in(user: User, then: str) -> SignInMethod:
    """How the invitee will sign in; refused if not at all (SSO on, their domain not authorized)."""
    method = sign_in_method_once_active(user)
    if method is SignInMethod.blocked:
        raise MemberError(f"{user.email} could not sign in: single sign-on is on, and {user.email_domain} is not "
                          f"one of this workspace's authorized domains. Authorize {user.email_domain} under "
                          f"Settings → Security, or turn SSO off, then {then}.")
    return method


def _send_invitation(workspace: Workspace, user: User, actor: User, method: SignInMethod) -> None:
    """The email says whether they will choose a password or sign in with SSO."""
    secret = tokens.issue(user, TokenPurpose.invitation)
    link = external_url("auth.accept_invitation", token=secret)
    mail.send(user.email, f"{actor.display_name} invited you to {workspace.name} on Gatehouse", "invitation",
              workspace_id=workspace.id, workspace=workspace, inviter=actor, link=link,
              sso=method is SignInMethod.sso)


def change_role(user: User, role: str, *, actor: User | None, actor_label: str | None = None) -> None:
    role = Role(role).value
    if role == user.role:
        return
    if user.is_admin and role != Role.admin.value and user.status == UserStatus.active.value:
        # Only an active admin counts for the rule: demoting a deactivated one loses nobody.
        ensure_admin_remains(user.workspace_id, losing=user)
    old, user.role = user.role, role
    record(user.workspace_id, "member.role_changed", actor=actor, actor_label=actor_label, target=user,
           old=old, new=role)


def deactivate(user: User, *, actor: User | None, by_idp: bool = False, actor_label: str | None = None) -> None:
    """Deactivate: sign-in refused, every session ends at once, data kept.

    A deactivation by the IdP wins over the admin rule (the IdP is the source
    of truth for who works here); it is audited and the admins are told.
    """
    if user.status == UserStatus.deactivated.value:
        return
    if user.is_admin and not by_idp:
        ensure_admin_remains(user.workspace_id, losing=user)
    user.status = UserStatus.deactivated.value
    user.deactivated_at = utcnow()
    user.end_all_sessions()
    tokens.revoke_all(user)
    record(user.workspace_id, "member.deactivated", actor=actor, actor_label=actor_label, target=user,
           by_idp=by_idp or None)
    if by_idp and user.is_admin:
        from app.members.admin_rule import admins_who_can_sign_in
        if not admins_who_can_sign_in(user.workspace_id, excluding={user.id}):
            record(user.workspace_id, "member.last_admin_deactivated_by_idp", actor_label=actor_label or "identity provider",
                   target=user)
        notify_admins(user.workspace_id, f"{user.email} was deactivated by your identity provider", "admin_deactivated",
                      excluding={user.id}, user=user)


def reactivate(user: User, *, actor: User | None, actor_label: str | None = None) -> None:
    if user.status != UserStatus.deactivated.value:
        return
    user.status = UserStatus.active.value
    user.deactivated_at = None
    record(user.workspace_id, "member.reactivated", actor=actor, actor_label=actor_label, target=user)


def is_idp_managed(user: User) -> bool:
    """Provisioned over SCIM: the identity provider decides whether they are active."""
    return user.source == UserSource.scim.value


def _idp_managed_refusal(user: User, verb: str) -> MemberError:
    return MemberError(f"{user.email} is managed by your identity provider (SCIM): {verb} them there, "
                       f"or tick “Override” to {verb} them here anyway (the next update from the identity "
                       f"provider may undo it).")


def admin_deactivate(user: User, *, actor: User, override: bool = False) -> None:
    """Deactivation from member management; SCIM-managed members need the override."""
    if user.id == actor.id:
        raise MemberError("You cannot deactivate yourself. Ask another admin.")
    if is_idp_managed(user) and not override:
        raise _idp_managed_refusal(user, "deactivate")
    deactivate(user, actor=actor)
    if is_idp_managed(user):
        record(user.workspace_id, "member.idp_override", actor=actor, target=user, change="deactivate")


def admin_reactivate(user: User, *, actor: User, override: bool = False) -> None:
    from app.members.deletion import active_purge
    if active_purge(user.workspace_id, user.id) is not None:
        raise MemberError(f"{user.email} is being deleted permanently; they cannot be reactivated.")
    if is_idp_managed(user) and not override:
        raise _idp_managed_refusal(user, "reactivate")
    reactivate(user, actor=actor)
    if is_idp_managed(user):
        record(user.workspace_id, "member.idp_override", actor=actor, target=user, change="reactivate")


def groups_by_user(workspace_id: int, user_ids: list[int]) -> dict[int, list[str]]:
    """Group names (from SCIM) of the listed members, in one query."""
    from app.models.scim import Group, GroupMember
    if not user_ids:
        return {}
    rows = db.session.execute(select(GroupMember.user_id, Group.display_name).join(Group, Group.id == GroupMember.group_id)
                              .where(GroupMember.workspace_id == workspace_id, GroupMember.user_id.in_(user_ids))
                              .order_by(Group.display_name_normalized))
    groups: dict[int, list[str]] = {}
    for user_id, name in rows:
        groups.setdefault(user_id, []).append(name)
    return groups


def notify_admins(workspace_id: int, subject: str, template: str, *, excluding: set[int] = frozenset(), **context) -> None:
    admins = db.session.scalars(select(User).where(User.workspace_id == workspace_id, User.role == Role.admin.value,
                                                   User.status == UserStatus.active.value)).all()
    workspace = db.session.get(Workspace, workspace_id)
    for admin in admins:
        if admin.id not in excluding:
            mail.send(admin.email, subject, template, workspace_id=workspace_id, workspace=workspace, admin=admin,
                      **context)


PAGE_SIZE = 25


def search_members(workspace_id: int, *, q: str = "", status: str = "", role: str = "", source: str = "",
                   page: int = 1):
    query = select(User).where(User.workspace_id == workspace_id)
    if q:
        like = "%" + like_escape(q.strip().lower()) + "%"
        query = query.where(or_(User.email_normalized.like(like, escape="\\"), func.lower(User.name).like(like, escape="\\")))
    if status in {s.value for s in UserStatus}:
        query = query.where(User.status == status)
    if role in {r.value for r in Role}:
        query = query.where(User.role == role)
    if source in {s.value for s in UserSource}:
        query = query.where(User.source == source)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    members = db.session.scalars(query.order_by(User.email_normalized, User.id).limit(PAGE_SIZE)
                                 .offset((page - 1) * PAGE_SIZE)).all()
    return members, total
