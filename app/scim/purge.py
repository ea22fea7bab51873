"""Purge steps (app.members.purge): a deleted user's SCIM traces, a batch at a time."""
from __future__ import annotations

from sqlalchemy import delete, select

from app.extensions import db
from app.models import GroupMember, ScimDetachedUser
from app.scim.groups import members_left
from app.scim.requestlog import purge_user_entries


def request_log_entries(workspace_id: int, user_id: int, batch_size: int) -> int:
    return purge_user_entries(workspace_id, user_id, batch_size)


def group_memberships(workspace_id: int, user_id: int, batch_size: int) -> int:
    group_ids = db.session.scalars(select(GroupMember.group_id).where(GroupMember.workspace_id == workspace_id,
                                                                      GroupMember.user_id == user_id)
                                   .limit(batch_size)).all()
    if not group_ids:
        return 0
    members_left(group_ids)
    return db.session.execute(delete(GroupMember).where(GroupMember.user_id == user_id,
                                                        GroupMember.group_id.in_(group_ids))).rowcount


def detachment(workspace_id: int, user_id: int, batch_size: int) -> int:
    return db.session.execute(delete(ScimDetachedUser).where(ScimDetachedUser.workspace_id == workspace_id,
                                                             ScimDetachedUser.user_id == user_id)).rowcount

