"""SCIM Users written: create, replace, PATCH and delete, and the rules they keep.
A user the IdP deleted is detached (hidden from SCIM, deactivated, data kept) and
linked again by a POST with its userName or its address. A member's SCIM userName
(see users.py) is unique in the workspace, across stored userNames and addresses."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, lazyload

from app.audit.service import record
from app.auth.policy import can_sign_in
from app.database import flush_or_raise
from app.extensions import db
from app.members import service as members
from app.members.admin_rule import LastAdminError, ensure_admin_remains
from app.models import GroupMember, ScimDetachedUser, ScimUserName, User, UserSource, UserStatus, utcnow
from app.scim.errors import mutability, uniqueness
from app.scim.groups import members_left
from app.scim.patch import apply_patch, parse_operations
from app.scim.resources import USER_SPEC, UserFields, body_to_document, user_document, user_fields
from app.scim.schema import GATEHOUSE_USER
from app.scim.users import Caller, Found

# Built once. Members holding an address or a userName, detached ones too: one uncorrelated id list, each
# half an index look-up (aliases, so the subqueries keep their own FROM).
_holding_user, _holding_name = aliased(User), aliased(ScimUserName)
_HOLDERS = (
    select(User, ScimUserName.user_name, ScimDetachedUser.user_id.is_not(None)).options(lazyload(User.workspace))
    .outerjoin(ScimUserName, ScimUserName.user_id == User.id)
    .outerjoin(ScimDetachedUser, ScimDetachedUser.user_id == User.id)
    .where(User.id.in_(union_all(
        select(_holding_user.id).where(_holding_user.workspace_id == bindparam("workspace_id"),
                                       _holding_user.email_normalized.in_(bindparam("addresses", expanding=True))),
        select(_holding_name.user_id).where(_holding_name.workspace_id == bindparam("workspace_id"),
                                            _holding_name.user_name_normalized == bindparam("user_name"))))))


@dataclass
class Holder:
    """A member (detached or not) holding an address or a userName someone wants."""
    user: User
    user_name: str | None
    detached: bool


def _holders(workspace_id: int, fields: UserFields, *, besides: int | None = None) -> list[Holder]:
    """The members, other than `besides`, that hold the address `fields` gives, or its userName
    (as a stored userName, or as the address of a member without one)."""
    email, name = fields.email.lower(), (fields.user_name or fields.email).lower()
    rows = db.session.execute(_HOLDERS, {"workspace_id": workspace_id, "addresses": sorted({email, name}),
                                         "user_name": name})
    return [Holder(user, user_name, detached) for user, user_name, detached in rows
            if user.id != besides and (user.email_normalized == email or (user_name or user.email).lower() == name)]


def create_user(caller: Caller, body) -> Found:
    fields = user_fields(body_to_document(USER_SPEC, body))
    holders = _holders(caller.workspace_id, fields)
    if holders:
        return _relink(caller, fields, holders)
    user = User(workspace_id=caller.workspace_id, role=fields.role or caller.workspace.default_role,
                status=UserStatus.active.value, source=UserSource.scim.value)
    user.set_email(fields.email)
    _write_profile(user, fields)
    db.session.add(user)
    try:
        db.session.flush()
        if fields.user_name:
            db.session.add(ScimUserName(user_id=user.id, workspace_id=caller.workspace_id, user_name=fields.user_name,
                                        user_name_normalized=fields.user_name.lower()))
            db.session.flush()
    except IntegrityError:  # taken between the look-up and the insert
        db.session.rollback()
        return _relink(caller, fields, _holders(caller.workspace_id, fields))
    record(caller.workspace_id, "scim.user_created", actor_label=caller.label, target=user, role=user.role,
           external_id=user.external_id)
    if fields.active is False:
        members.deactivate(user, actor=None, by_idp=True, actor_label=caller.label)
    return Found(user, fields.user_name, [])


def _relink(caller: Caller, fields: UserFields, holders: list[Holder]) -> Found:
    """POST for a userName or an address that exists. A member the IdP deleted earlier, who
    alone holds both, is linked again (data kept) and takes the body's values; else 409."""
    user_name = fields.user_name or fields.email
    if len({h.user.id for h in holders}) > 1 and all(h.detached for h in holders):
        raise uniqueness(f"userName {user_name} and the address {fields.email} belong to two members the IdP "
                         "deleted earlier; an admin can delete one of them permanently in Gatehouse.")
    if len(holders) != 1 or not holders[0].detached:
        raise uniqueness(f"A member with userName {user_name} (or with the address {fields.email}) already exists.")
    (existing,) = holders
    if not _same_person(existing, fields):
        raise uniqueness(f"A member the IdP deleted earlier has the address {fields.email} under another userName "
                         "and without this externalId, so this is not linked to them; an admin can delete them "
                         "permanently in Gatehouse first.")
    db.session.execute(delete(ScimDetachedUser).where(ScimDetachedUser.user_id == existing.user.id))
    existing.user.source = UserSource.scim.value
    record(caller.workspace_id, "scim.user_relinked", actor_label=caller.label, target=existing.user)
    if fields.active is None:
        fields.active = True
    # The POST's role, or the default one as on a create: someone the IdP deleted and adds back
    # must not come back an admin unasked. _write applies it once they are active again, so the
    # last-admin rule judges what the re-link leaves (as for the same change by PATCH).
    fields.role = fields.role or caller.workspace.default_role
    _write(caller, existing.user, fields, existing.user_name)
    return Found(existing.user, fields.user_name, [])


def _same_person(holder: Holder, fields: UserFields) -> bool:
    """Is the deleted member the one this POST describes? The same userName re-links (the
    contract); the same address under another userName only with the same externalId: an
    address alone is not enough (a recycled address must not bring back someone else's account)."""
    if (holder.user_name or holder.user.email).lower() == (fields.user_name or fields.email).lower():
        return True
    return bool(holder.user.external_id and holder.user.external_id == fields.external_id)


def replace_user(caller: Caller, found: Found, body) -> Found:
    doc = body_to_document(USER_SPEC, body)
    fields = user_fields(doc, current_email=found.user.email, current_user_name=found.user_name)
    _write(caller, found.user, fields, found.user_name)
    found.user_name = fields.user_name
    return found


def patch_user(caller: Caller, found: Found, body) -> Found:
    operations = parse_operations(body)
    touched: set[str] = set()
    doc = apply_patch(USER_SPEC, user_document(found.user, found.user_name), operations, touched=touched)
    # The document always shows the address in emails: the IdP sent emails only if an operation named them.
    fields = user_fields(doc, current_email=found.user.email, current_user_name=found.user_name,
                         emails_sent="emails" in touched)
    if (doc.get(GATEHOUSE_USER) or {}).get("role") is None:
        fields.role = caller.workspace.default_role  # removing the role gives the default one
    _write(caller, found.user, fields, found.user_name)
    found.user_name = fields.user_name
    return found


def delete_user(caller: Caller, user: User) -> None:
    """SCIM DELETE: deactivate and detach; the data stays for an admin to purge or a POST to re-link."""
    members.deactivate(user, actor=None, by_idp=True, actor_label=caller.label)
    memberships = (GroupMember.user_id == user.id, GroupMember.workspace_id == caller.workspace_id)
    members_left(select(GroupMember.group_id).where(*memberships))
    db.session.execute(delete(GroupMember).where(*memberships))
    db.session.add(ScimDetachedUser(user_id=user.id, workspace_id=caller.workspace_id))
    record(caller.workspace_id, "scim.user_deleted", actor_label=caller.label, target=user)


def _write_profile(user: User, fields: UserFields) -> list[str]:
    """Compared as stored: the model cleans names (no control characters), so an IdP sending
    a line break in one is not an update every time."""
    changed = []
    for attr, value in (("external_id", fields.external_id), ("given_name", fields.given_name),
                        ("family_name", fields.family_name), ("name", fields.display_name or "")):
        old = getattr(user, attr)
        setattr(user, attr, value)
        if getattr(user, attr) != old:
            changed.append(attr)
    return changed


def _write(caller: Caller, user: User, fields: UserFields, current_user_name: str | None) -> None:
    if user.source != UserSource.scim.value:
        # Invited, signed up or JIT-provisioned, then found by the IdP (filter on userName) and
        # written to: the IdP manages them from now on (members.is_idp_managed).
        record(caller.workspace_id, "scim.user_linked", actor_label=caller.label, target=user, source=user.source)
        user.source = UserSource.scim.value
    moves = fields.email.lower() != user.email_normalized
    if moves or (fields.user_name or fields.email).lower() != (current_user_name or user.email).lower():
        taken = _holders(caller.workspace_id, fields, besides=user.id)
        if taken:
            raise uniqueness(_taken(fields, taken[0]))
    changed = [] if current_user_name == fields.user_name else _write_user_name(caller, user, fields.user_name)
    admin_could_sign_in = False
    if moves:
        admin_could_sign_in = user.is_admin and can_sign_in(user)
        old_email = user.email
        user.set_email(fields.email)
        changed.append("email")
        record(caller.workspace_id, "scim.user_email_changed", actor_label=caller.label, target=user,
               old=old_email, new=user.email)
    elif fields.email != user.email:
        user.email = fields.email  # same address, new capitalisation
    changed += _write_profile(user, fields)
    # The status first: a deactivation by the IdP wins over the last-admin rule, and the
    # same request demoting the member (offboarding, in one Entra PATCH) then loses nobody.
    if fields.active is False and user.status != UserStatus.deactivated.value:
        members.deactivate(user, actor=None, by_idp=True, actor_label=caller.label)
    elif fields.active is True and user.status == UserStatus.deactivated.value:
        members.reactivate(user, actor=None, actor_label=caller.label)
    if fields.role is not None and fields.role != user.role:
        try:
            members.change_role(user, fields.role, actor=None, actor_label=caller.label)
        except LastAdminError as exc:
            raise mutability(str(exc)) from None
    if admin_could_sign_in and user.is_admin and user.status == UserStatus.active.value and not can_sign_in(user):
        # A new address off the authorized domains (SSO on) locks this admin out: only a
        # deactivation by the IdP may leave the workspace without an admin who can sign in.
        try:
            ensure_admin_remains(caller.workspace_id, losing=user)
        except LastAdminError as exc:
            raise mutability(str(exc)) from None
    profile = [c for c in changed if c != "email"]
    if profile:
        record(caller.workspace_id, "scim.user_updated", actor_label=caller.label, target=user, changed=profile)
    flush_or_raise(uniqueness(f"A member with userName {fields.email} already exists."))


def _taken(fields: UserFields, holder: Holder) -> str:
    held = f"the address {fields.email}" if holder.user.email_normalized == fields.email.lower() \
        else f"the userName {fields.user_name or fields.email}"
    if holder.detached:
        return (f"A member the IdP deleted earlier has {held} (kept until an admin deletes them permanently in "
                "Gatehouse, or a POST links them again).")
    return f"Another member already has {held}."


def _write_user_name(caller: Caller, user: User, user_name: str | None) -> list[str]:
    stored = db.session.get(ScimUserName, user.id)
    if (stored.user_name if stored else None) == user_name:
        return []
    if user_name is None:
        db.session.delete(stored)
    else:
        if stored is None:
            stored = ScimUserName(user_id=user.id, workspace_id=caller.workspace_id)
            db.session.add(stored)
        stored.user_name, stored.user_name_normalized = user_name, user_name.lower()
    user.updated_at = utcnow()  # the resource changed: a new meta.version
    return ["userName"]



__all__ = ["create_user", "delete_user", "patch_user", "replace_user"]
