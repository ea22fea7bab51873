"""SCIM provisioning: bearer tokens, groups and their members, the request log,
and the users an IdP has detached (SCIM DELETE) from provisioning."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class ScimToken(Base):
    """A static bearer token for the SCIM API; only its SHA-256 is kept."""

    __tablename__ = "scim_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Group(Base):
    __tablename__ = "scim_group"
    __table_args__ = (
        # Group names are unique within a workspace, case-insensitively (a retried
        # Okta push or an Entra re-sync finds the group instead of duplicating it).
        Index("uq_scim_group_workspace_name", "workspace_id", "display_name_normalized", unique=True),
        Index("ix_scim_group_workspace_external_id", "workspace_id", "external_id"),
        {"sqlite_autoincrement": True},  # a deleted group's SCIM id is never another group's
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    display_name_normalized: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def set_display_name(self, name: str) -> None:
        self.display_name = name.strip()
        self.display_name_normalized = self.display_name.lower()

    @property
    def name(self) -> str:  # audit labels
        return self.display_name


class GroupMember(Base):
    __tablename__ = "scim_group_member"
    __table_args__ = (Index("ix_scim_group_member_user", "user_id"),)

    group_id: Mapped[int] = mapped_column(ForeignKey("scim_group.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScimDetachedUser(Base):
    """A user the IdP deleted over SCIM: deactivated, data kept, hidden from SCIM
    (GET answers 404) until a POST with its userName or its address links them again."""

    __tablename__ = "scim_detached_user"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    detached_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScimUserName(Base):
    """The IdP's userName when it differs from the member's address, email-shaped or not
    (an Entra UPN, an opaque id): kept beside the member as given. No row: the userName
    is the address (app.scim.resources.user_fields has the rule)."""

    __tablename__ = "scim_user_name"
    __table_args__ = (
        Index("uq_scim_user_name_workspace_name", "workspace_id", "user_name_normalized", unique=True),
        Index("ix_scim_user_name_normalized", "user_name_normalized"),
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    user_name: Mapped[str] = mapped_column(String(255))
    user_name_normalized: Mapped[str] = mapped_column(String(255))


class ScimRequestLog(Base):
    """One SCIM request, for the admin's provisioning log (masked; pruned by age and count)."""

    __tablename__ = "scim_request_log"
    __table_args__ = (Index("ix_scim_request_log_workspace_created", "workspace_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[int]
    duration_ms: Mapped[int]
    body: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
