"""Creating workspaces (CLI, seed) with their first admin."""
from __future__ import annotations

import re

from sqlalchemy import select

from app.audit.service import record
from app.auth.service import set_password
from app.emails import InvalidEmail, normalize_address
from app.extensions import db
from app.models import Plan, Role, User, UserSource, UserStatus, Workspace


class WorkspaceError(ValueError):
    pass


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48]
    return slug or "workspace"


def unique_slug(name: str) -> str:
    base, n = slugify(name), 1
    slug = base
    while db.session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


def get_by_slug(slug: str) -> Workspace | None:
    return db.session.scalar(select(Workspace).where(Workspace.slug == slug))


def create_workspace(name: str, plan: str, admin_email: str, admin_password: str, admin_name: str = "") -> Workspace:
    name = name.strip()
    if not name or len(name) > 100:
        raise WorkspaceError("the workspace name must be 1 to 100 characters")
    try:
        plan = Plan(plan).value
    except ValueError:
        raise WorkspaceError("plan must be free, business or enterprise") from None
    try:
        admin_email = normalize_address(admin_email)
    except InvalidEmail as exc:
        raise WorkspaceError(f"invalid admin email: {exc}") from None
    if not 10 <= len(admin_password) <= 128:
        raise WorkspaceError("the admin password must be 10 to 128 characters")
    workspace = Workspace(name=name, slug=unique_slug(name), plan=plan)
    db.session.add(workspace)
    db.session.flush()
    admin = User(workspace_id=workspace.id, name=admin_name or admin_email.partition("@")[0].title(),
                 role=Role.admin.value, status=UserStatus.active.value, source=UserSource.password.value)
    admin.set_email(admin_email)
    set_password(admin, admin_password)
    db.session.add(admin)
    db.session.flush()
    record(workspace.id, "workspace.created", actor_label="operator (CLI)", target=workspace, plan=plan)
    return workspace
