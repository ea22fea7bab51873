"""SCIM Users, stored as workspace members: who calls, which members SCIM sees, and
reading them (by id, and lists with filters translated to SQL). Writes are in
user_writes.py; the views only parse and render.

A member's SCIM userName is the userName stored beside it (one that differs from
its address), else its address. A user the IdP deleted is detached: hidden here."""
from __future__ import annotations

import functools
from dataclasses import dataclass

from scim2_models.path import CompareOperator
from sqlalchemy import bindparam, exists, false, func, not_, select, true, union_all
from sqlalchemy.orm import aliased, lazyload

from app.extensions import db
from app.models import Group, GroupMember, ScimDetachedUser, ScimUserName, User, UserStatus
from app.scim.auth import ScimWorkspace
from app.scim.errors import invalid_filter, not_found
from app.scim.filters import (BoolField, ConstantField, DateTimeField, Field, FilterTranslator, IdField, MultiValued,
                               StringField)
from app.scim.resources import parse_id
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


__all__ = ["Caller", "Found", "get_user_and_groups", "groups_of", "list_users", "visible_users"]
