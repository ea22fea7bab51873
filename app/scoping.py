"""Workspace-scoped queries: every table owned by a workspace is read through here,
so nothing crosses workspaces by accident."""
from __future__ import annotations

from typing import TypeVar

from flask import abort
from sqlalchemy import Select, select

from app.extensions import db

T = TypeVar("T")


def scoped(model: type[T], workspace_id: int) -> Select:
    return select(model).where(model.workspace_id == workspace_id)


MAX_ID = 2**63 - 1  # past every row; a larger number can't even be bound (OverflowError)


def get_scoped(model: type[T], workspace_id: int, object_id) -> T | None:
    try:
        object_id = int(object_id)
    except (TypeError, ValueError):
        return None
    if not 0 < object_id <= MAX_ID:
        return None
    return db.session.scalar(scoped(model, workspace_id).where(model.id == object_id))


def get_scoped_or_404(model: type[T], workspace_id: int, object_id) -> T:
    obj = get_scoped(model, workspace_id, object_id)
    if obj is None:
        abort(404)
    return obj
