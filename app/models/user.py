from __future__ import annotations

import datetime as dt
import enum
import re
import secrets

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String, event, func, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, validates

from app.models.base import Base, utcnow
from app.models.workspace import Role, Workspace


# A name is one line of text: it goes into mail subjects and pages. Line breaks and tabs
# (str.splitlines' set) become a space, other control characters (C0, DEL, C1) go.
_NAME_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
_NAME_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class UserStatus(str, enum.Enum):
    active = "active"
    invited = "invited"
    deactivated = "deactivated"


class UserSource(str, enum.Enum):
    password = "password"
    invite = "invite"
    scim = "scim"
    sso_jit = "sso_jit"

    @property
    def label(self) -> str:
        return {"password": "Password", "invite": "Invited", "scim": "SCIM", "sso_jit": "SSO (JIT)"}[self.value]


class User(UserMixin, Base):
    __tablename__ = "user"
    __table_args__ = (
        # Email is unique within a workspace, case-insensitively.
        Index("uq_user_workspace_email", "workspace_id", "email_normalized", unique=True),
        Index("ix_user_email_normalized", "email_normalized"),
        Index("ix_user_workspace_external_id", "workspace_id", "external_id"),
        # An id is never handed out twice, even on SQLite (which would reuse a deleted highest
        # one): an IdP still holding a deleted member's SCIM id must not reach a new member.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    email_normalized: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default=Role.creator_lite.value)
    status: Mapped[str] = mapped_column(String(20), default=UserStatus.active.value)
    source: Mapped[str] = mapped_column(String(20), default=UserSource.password.value)
    external_id: Mapped[str | None] = mapped_column(String(255))
    # Bumped to end every session of the user at once (deactivation, password change). It
    # starts at a random number, not 1: were a deleted member's id handed out again, a
    # cookie of theirs must not fit the new member.
    session_version: Mapped[int] = mapped_column(default=lambda: secrets.randbelow(2**30) + 1)
    last_login_at: Mapped[dt.datetime | None]
    deactivated_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The version of the member as provisioning sees it (SCIM meta.version / ETag and
    # meta.lastModified): moved by `_new_resource_version` below, not by every UPDATE.
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    workspace: Mapped[Workspace] = relationship(lazy="joined")

    @validates("name", "given_name", "family_name")
    def _one_line(self, key: str, value: str | None) -> str | None:
        """Every way a name arrives (forms, SCIM, JIT sign-in) stores it without control characters:
        one in a mail subject made that mail unbuildable."""
        return _NAME_CONTROLS.sub("", _NAME_BREAKS.sub(" ", value)) if value else value

    @staticmethod
    def normalize_email(email: str) -> str:
        return email.strip().lower()

    def set_email(self, email: str) -> None:
        self.email = email.strip()
        self.email_normalized = self.normalize_email(email)

    @property
    def email_domain(self) -> str:
        return self.email_normalized.rpartition("@")[2]

    @property
    def display_name(self) -> str:
        if self.status == UserStatus.deactivated.value:
            return "Deactivated user"
        return self.name or self.email

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin.value

    @property
    def is_active(self) -> bool:  # Flask-Login: deactivated and invited users cannot sign in
        return self.status == UserStatus.active.value

    @property
    def role_label(self) -> str:
        return Role(self.role).label

    @property
    def source_label(self) -> str:
        return UserSource(self.source).label

    def get_id(self) -> str:
        # The session version rides in the id, so a bump ends remember-cookies too.
        return f"{self.id}:{self.session_version}"

    def end_all_sessions(self) -> None:
        self.session_version = (self.session_version or 1) + 1

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email_normalized}>"


def email_equals(column, email: str):
    return column == User.normalize_email(email)


__all__ = ["User", "UserStatus", "UserSource", "email_equals", "func"]


# What an IdP reads of a member. Ending sessions, setting a password or recording a
# sign-in change none of it, so they keep the ETag an IdP may hold (If-Match).
RESOURCE_ATTRIBUTES = ("email", "name", "given_name", "family_name", "role", "status", "external_id")


@event.listens_for(Session, "before_flush")
def _new_resource_version(session, flush_context, instances) -> None:
    now = None
    for obj in session.dirty:
        if not isinstance(obj, User):
            continue
        attrs = inspect(obj).attrs
        if not attrs.updated_at.history.has_changes() and any(
                attrs[name].history.has_changes() for name in RESOURCE_ATTRIBUTES):
            obj.updated_at = now = now or utcnow()
