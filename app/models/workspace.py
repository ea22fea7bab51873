from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class Plan(str, enum.Enum):
    free = "free"
    business = "business"
    enterprise = "enterprise"

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @staticmethod
    def is_enterprise(plan: str) -> bool:
        """Security settings (SSO, domains, SCIM) are the Enterprise plan's."""
        return plan == Plan.enterprise.value


class Role(str, enum.Enum):
    admin = "admin"
    creator = "creator"
    creator_lite = "creator_lite"

    @property
    def label(self) -> str:
        return {"admin": "Admin", "creator": "Creator", "creator_lite": "Creator Lite"}[self.value]


class Workspace(Base):
    __tablename__ = "workspace"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    plan: Mapped[str] = mapped_column(String(20), default=Plan.free.value)
    default_role: Mapped[str] = mapped_column(String(20), default=Role.creator_lite.value)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def is_enterprise(self) -> bool:
        return Plan.is_enterprise(self.plan)

    @property
    def plan_label(self) -> str:
        return Plan(self.plan).label

    def __repr__(self) -> str:
        return f"<Workspace {self.slug}>"
