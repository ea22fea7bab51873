"""SCIM Groups: stored groups of workspace members (Okta's group push, Entra's groups)."""
from __future__ import annotations

from sqlalchemy import delete, exists, func, insert, select, update

from app.audit.service import record
from app.database import flush_or_raise
from app.extensions import db
from app.models import Group, GroupMember, User, utcnow
from app.scim.errors import invalid_value, not_found, uniqueness
from app.scim.filters import DateTimeField, FilterTranslator, IdField, MultiValued, StringField
from app.scim.patch import apply_patch, parse_operations
from app.scim.resources import GROUP_SPEC, GroupFields, body_to_document, group_document, group_fields, parse_id
from app.scim.schema import CORE_GROUP
from app.scim.users import Caller, visible_users
from app.scoping import scoped

AUDITED_IDS = 50  # member ids listed in one audit event; the count is always there

_MEMBERS = MultiValued({"value": IdField("members.value", GroupMember.user_id)},
                       wrap=lambda condition: exists().where(GroupMember.group_id == Group.id, condition))
_GROUP_FIELDS = {
    ("id", None): IdField("id", Group.id),
    ("displayname", None): StringField("displayName", Group.display_name_normalized, lowered=True, nullable=False),
    ("externalid", None): StringField("externalId", Group.external_id, case_exact=True),
    ("meta", "created"): DateTimeField("meta.created", Group.created_at),
    ("meta", "lastmodified"): DateTimeField("meta.lastModified", Group.updated_at),
    ("members", None): _MEMBERS,
}


def _resolve_group_attr(path):
    if path.uri and path.uri.lower() != CORE_GROUP.lower():
        return None
    return _GROUP_FIELDS.get((path.attr.lower(), path.sub_attr.lower() if path.sub_attr else None))


group_filter = FilterTranslator(_resolve_group_attr)


def get_group(caller: Caller, group_id) -> Group:
    group_id = parse_id(group_id)
    if group_id is None:
        raise not_found()
    group = db.session.scalar(scoped(Group, caller.workspace_id).where(Group.id == group_id))
    if group is None:
        raise not_found(f"Group {group_id} not found.")
    return group


def list_groups(caller: Caller, *, filter_text: str | None, start_index: int, count: int):
    query = scoped(Group, caller.workspace_id)
    if filter_text:
        query = query.where(group_filter.translate(filter_text))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    groups = list(db.session.scalars(query.order_by(Group.id).offset(start_index - 1).limit(count))) if count else []
    return total, groups


def member_ids(group: Group) -> list[int]:
    return list(db.session.scalars(select(GroupMember.user_id).where(GroupMember.group_id == group.id)
                                   .order_by(GroupMember.user_id)))


def members_of(group_ids: list[int]) -> dict[int, list[User]]:
    out: dict[int, list[User]] = {i: [] for i in group_ids}
    if group_ids:
        rows = db.session.execute(select(GroupMember.group_id, User).join(User, User.id == GroupMember.user_id)
                                  .where(GroupMember.group_id.in_(group_ids)).order_by(User.id))
        for group_id, user in rows:
            out[group_id].append(user)
    return out


def create_group(caller: Caller, body) -> Group:
    fields = group_fields(body_to_document(GROUP_SPEC, body))
    _ensure_unique_name(caller, fields.display_name, None)
    group = Group(workspace_id=caller.workspace_id, external_id=fields.external_id)
    group.set_display_name(fields.display_name)
    db.session.add(group)
    flush_or_raise(uniqueness(f"A group named {fields.display_name!r} already exists."))
    record(caller.workspace_id, "scim.group_created", actor_label=caller.label, target=group)
    _set_members(caller, group, fields.member_ids or [])
    return group


def replace_group(caller: Caller, group: Group, body) -> Group:
    fields = group_fields(body_to_document(GROUP_SPEC, body))
    _write(caller, group, fields, current=None)
    return group


def patch_group(caller: Caller, group: Group, body) -> Group:
    operations = parse_operations(body)
    current = member_ids(group)
    doc = apply_patch(GROUP_SPEC, group_document(group, current), operations)
    _write(caller, group, group_fields(doc), current=current)
    return group


def delete_group(caller: Caller, group: Group) -> None:
    record(caller.workspace_id, "scim.group_deleted", actor_label=caller.label, target=group)
    db.session.execute(delete(GroupMember).where(GroupMember.group_id == group.id))
    db.session.delete(group)


def _write(caller: Caller, group: Group, fields: GroupFields, *, current: list[int] | None) -> None:
    if fields.display_name != group.display_name:
        if fields.display_name.lower() != group.display_name_normalized:
            _ensure_unique_name(caller, fields.display_name, group.id)
        record(caller.workspace_id, "scim.group_renamed", actor_label=caller.label, target=group,
               old=group.display_name, new=fields.display_name)
        group.set_display_name(fields.display_name)
        group.updated_at = utcnow()
    if fields.external_id != group.external_id:
        group.external_id = fields.external_id
        group.updated_at = utcnow()
    _set_members(caller, group, fields.member_ids or [], current=current)
    flush_or_raise(uniqueness(f"A group named {fields.display_name!r} already exists."))


def _set_members(caller: Caller, group: Group, wanted: list[int], current: list[int] | None = None) -> None:
    have = set(member_ids(group) if current is None else current)
    adding = [i for i in wanted if i not in have]
    removing = sorted(have - set(wanted))
    if adding:
        found = set(db.session.scalars(visible_users(caller.workspace_id).with_only_columns(User.id)
                                       .where(User.id.in_(adding))))
        missing = [i for i in adding if i not in found]
        if missing:
            raise invalid_value(f"No user with id {missing[0]} in this workspace; members must be provisioned users.")
        db.session.execute(insert(GroupMember), [{"group_id": group.id, "user_id": i, "workspace_id": caller.workspace_id}
                                                 for i in adding])
        record(caller.workspace_id, "scim.group_members_added", actor_label=caller.label, target=group,
               count=len(adding), user_ids=adding[:AUDITED_IDS])
    if removing:
        db.session.execute(delete(GroupMember).where(GroupMember.group_id == group.id,
                                                     GroupMember.user_id.in_(removing)))
        record(caller.workspace_id, "scim.group_members_removed", actor_label=caller.label, target=group,
               count=len(removing), user_ids=removing[:AUDITED_IDS])
    if adding or removing:
        group.updated_at = utcnow()


def members_left(group_ids) -> None:
    """Members left these groups (ids, or a query of them) without a request to the groups: a
    user DELETE, a purge. Their members are part of the resource: a new meta.version and
    lastModified, in one UPDATE."""
    db.session.execute(update(Group).where(Group.id.in_(group_ids)).values(updated_at=utcnow()))


def _ensure_unique_name(caller: Caller, name: str, group_id: int | None) -> None:
    query = scoped(Group, caller.workspace_id).where(Group.display_name_normalized == name.strip().lower())
    if group_id is not None:
        query = query.where(Group.id != group_id)
    if db.session.scalar(query) is not None:
        raise uniqueness(f"A group named {name!r} already exists.")
