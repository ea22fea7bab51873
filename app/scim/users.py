"""SCIM Users, stored as workspace members. Rules live here; the views only parse
and render. A user the IdP deleted is detached (hidden from SCIM, deactivated,
data kept) and linked again by a POST with its userName or its address.

A member's SCIM userName is the userName stored beside it (one that differs from
its address), else its address; it is unique in the workspace, across both."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from scim2_models.path import CompareOperator
from sqlalchemy import bindparam, delete, exists, false, func, not_, select, true, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, lazyload

from app.audit.service import record
from app.extensions import db
from app.members import service as members
from app.auth.policy import can_sign_in
from app.members.admin_rule import LastAdminError, ensure_admin_remains
from app.models import (Group, GroupMember, ScimDetachedUser, ScimUserName, User, UserSource, UserStatus,
                        utcnow)
from app.scim.auth import ScimWorkspace
from app.scim.errors import ScimError, invalid_filter, mutability, not_found, uniqueness
from app.scim.filters import (BoolField, ConstantField, DateTimeField, Field, FilterTranslator, IdField, MultiValued,
                               StringField)
from app.scim.patch import apply_patch, parse_operations
from app.scim.resources import USER_SPEC, UserFields, body_to_document, parse_id, user_document, user_fields
from app.scim.schema import CORE_USER, GATEHOUSE_USER


@dataclass(frozen=True)
class Caller:
    """The workspace a SCIM request acts on, and the label its changes are audited under."""
    workspace: ScimWorkspace
    label: str

    @property
    def workspace_id(self) -> int:
        return self.workspace.id


def _not_detached():
    return ~exists().where(ScimDetachedUser.user_id == User.id)


def visible_users(workspace_id: int):
    return select(User).where(User.workspace_id == workspace_id, _not_detached())


# Hot statements built once, so SQLAlchemy reuses their compiled form on every request.
# No join to load the workspace with every user: a SCIM request needs only its caller's.

# Members holding an address or a userName, detached ones too: one uncorrelated id list, each
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
_ANY_DETACHED = select(ScimDetachedUser.user_id).where(ScimDetachedUser.workspace_id == bindparam("workspace_id")).limit(1)
_GROUPS_OF = (select(GroupMember.user_id, Group).join(Group, Group.id == GroupMember.group_id)
              .where(GroupMember.user_id.in_(bindparam("user_ids", expanding=True))).order_by(Group.id))


_VISIBLE_BY_ID_WITH_GROUPS = (
    select(User, ScimUserName.user_name, Group).options(lazyload(User.workspace))
    .outerjoin(ScimUserName, ScimUserName.user_id == User.id)
    .outerjoin(GroupMember, GroupMember.user_id == User.id).outerjoin(Group, Group.id == GroupMember.group_id)
    .where(User.workspace_id == bindparam("workspace_id"), User.id == bindparam("user_id"), _not_detached())
    .order_by(Group.id))


@dataclass
class Found:
    """A user as SCIM sees it: the member, its stored userName if any (None: the address), its groups."""
    user: User
    user_name: str | None
    groups: list[Group]


def get_user_and_groups(caller: Caller, user_id) -> Found:
    """The user, its userName and its groups in one round trip (PATCH and PUT leave the groups as they are)."""
    user_id = parse_id(user_id)
    rows = db.session.execute(_VISIBLE_BY_ID_WITH_GROUPS, {"workspace_id": caller.workspace_id,
                                                           "user_id": user_id}).all() if user_id else []
    if not rows:
        raise not_found(f"User {user_id} not found." if user_id else "Resource not found.")
    return Found(rows[0][0], rows[0][1], [group for _, _, group in rows if group is not None])


# --- filtering ------------------------------------------------------------------------------------

_EMAILS = MultiValued({
    "value": StringField("emails.value", User.email_normalized, lowered=True, nullable=False),
    "type": ConstantField("emails.type", "work"),
    "primary": ConstantField("emails.primary", True),
})
_GROUPS = MultiValued({"value": IdField("groups.value", GroupMember.group_id)},
                      wrap=lambda condition: exists().where(GroupMember.user_id == User.id, condition))
class UserNameField(Field):
    """userName is the address, unless the member has a userName kept beside it."""

    # An alias: list queries also join ScimUserName, which would swallow these subqueries' FROM.
    _names = aliased(ScimUserName)
    _members = aliased(User)
    _stored = select(_names.user_name_normalized).where(_names.user_id == User.id).scalar_subquery()

    def compare(self, op, value):
        if value is None:
            return false() if op == CompareOperator.eq else true() if op == CompareOperator.ne else self._refuse(op)
        if not isinstance(value, str):
            raise invalid_filter("userName is a string; compare it with a quoted value.")
        if op in (CompareOperator.eq, CompareOperator.ne):
            wanted = value.lower()
            # One uncorrelated id list, each half an index look-up: the address of members without
            # a stored userName, or a stored userName (an OR across tables would scan the workspace).
            names, members = self._names, self._members
            by_address = select(members.id).where(members.email_normalized == wanted,
                                                  ~exists().where(names.user_id == members.id))
            by_name = select(names.user_id).where(names.user_name_normalized == wanted)
            equal = User.id.in_(union_all(by_address, by_name))
            return equal if op == CompareOperator.eq else not_(equal)
        return StringField("userName", func.coalesce(self._stored, User.email_normalized), lowered=True,
                           nullable=False).compare(op, value)

    def _refuse(self, op):
        raise invalid_filter(f"The {op.value!r} operator cannot be used with null.")

    def present(self):
        return true()


_USER_FIELDS = {
    ("id", None): IdField("id", User.id),
    ("username", None): UserNameField(),
    ("externalid", None): StringField("externalId", User.external_id, case_exact=True),
    ("displayname", None): StringField("displayName", User.name),
    ("name", "givenname"): StringField("name.givenName", User.given_name),
    ("name", "familyname"): StringField("name.familyName", User.family_name),
    ("active", None): BoolField("active", User.status != UserStatus.deactivated.value),
    ("meta", "created"): DateTimeField("meta.created", User.created_at),
    ("meta", "lastmodified"): DateTimeField("meta.lastModified", User.updated_at),
    ("emails", None): _EMAILS,
    ("groups", None): _GROUPS,
}
_ROLE = StringField("role", User.role, nullable=False)


def _resolve_user_attr(path):
    if path.uri:
        if path.uri.lower() == GATEHOUSE_USER.lower() and path.attr.lower() == "role" and not path.sub_attr:
            return _ROLE
        if path.uri.lower() != CORE_USER.lower():
            return None
    return _USER_FIELDS.get((path.attr.lower(), path.sub_attr.lower() if path.sub_attr else None))


user_filter = FilterTranslator(_resolve_user_attr)


DIRECT_PAGE_LIMIT = 1000  # startIndex up to which rows are read at once
_WITH_NAME = (select(User, ScimUserName.user_name).options(lazyload(User.workspace))
              .outerjoin(ScimUserName, ScimUserName.user_id == User.id))


def list_users(caller: Caller, *, filter_text: str | None, start_index: int, count: int):
    """One page in id order, and the total.

    Deep pages take ids first (an index-only scan, cheap to skip through), rows
    after; the total needs no second query when the page holds everything
    (an IdP's `userName eq` look-up), and skips the detached check when the
    workspace has detached nobody.
    """
    conditions = [User.workspace_id == caller.workspace_id]
    if filter_text:
        conditions.append(user_filter.translate(filter_text))

    @functools.cache  # asked at most once, and only before a long scan
    def anyone_detached() -> bool:
        return db.session.scalar(_ANY_DETACHED, {"workspace_id": caller.workspace_id}) is not None

    def visible(query):
        return query.where(_not_detached()) if anyone_detached() else query

    rows = []
    if count and start_index <= DIRECT_PAGE_LIMIT:
        rows = db.session.execute(_WITH_NAME.where(*conditions, _not_detached()).order_by(User.id)
                                  .offset(start_index - 1).limit(count)).all()
    elif count:
        page_ids = list(db.session.scalars(visible(select(User.id).where(*conditions)).order_by(User.id)
                                           .offset(start_index - 1).limit(count)))
        rows = db.session.execute(_WITH_NAME.where(User.id.in_(page_ids)).order_by(User.id)).all() if page_ids else []
    if start_index == 1 and len(rows) < count:
        total = len(rows)
    else:
        total = db.session.scalar(select(func.count()).select_from(visible(select(User.id).where(*conditions))
                                                                   .subquery()))
    return total, [Found(user, user_name, []) for user, user_name in rows]


def groups_of(user_ids: list[int]) -> dict[int, list[Group]]:
    out: dict[int, list[Group]] = {i: [] for i in user_ids}
    if user_ids:
        rows = db.session.execute(_GROUPS_OF, {"user_ids": user_ids})
        for user_id, group in rows:
            out[user_id].append(group)
    return out


# --- writes ---------------------------------------------------------------------------------------

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
    db.session.execute(delete(GroupMember).where(GroupMember.user_id == user.id,
                                                 GroupMember.workspace_id == caller.workspace_id))
    db.session.add(ScimDetachedUser(user_id=user.id, workspace_id=caller.workspace_id))
    record(caller.workspace_id, "scim.user_deleted", actor_label=caller.label, target=user)


def _write_profile(user: User, fields: UserFields) -> list[str]:
    changed = []
    for attr, value in (("external_id", fields.external_id), ("given_name", fields.given_name),
                        ("family_name", fields.family_name), ("name", fields.display_name or "")):
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            changed.append(attr)
    return changed


def _write(caller: Caller, user: User, fields: UserFields, current_user_name: str | None) -> None:
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
    if fields.role is not None and fields.role != user.role:
        try:
            members.change_role(user, fields.role, actor=None, actor_label=caller.label)
        except LastAdminError as exc:
            raise mutability(str(exc)) from None
    if fields.active is False and user.status != UserStatus.deactivated.value:
        members.deactivate(user, actor=None, by_idp=True, actor_label=caller.label)
    elif fields.active is True and user.status == UserStatus.deactivated.value:
        members.reactivate(user, actor=None, actor_label=caller.label)
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
    _flush_unique(fields.email)


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


def _flush_unique(email: str) -> None:
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise uniqueness(f"A member with userName {email} already exists.") from None


__all__ = ["Caller", "Found", "ScimError", "create_user", "delete_user", "get_user_and_groups", "groups_of",
           "list_users", "patch_user", "replace_user", "visible_users"]
