"""Permanent deletion of a user's data, tracked in the database so the job that
does it (jobs.members.purge_user) can be killed and resumed at any point."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class PurgeState(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"

    @property
    def label(self) -> str:
        return {"queued": "Waiting to start", "running": "Deleting", "done": "Deleted",
                "failed": "Stopped with an error"}[self.value]


class UserPurge(Base):
    __tablename__ = "user_purge"
    __table_args__ = (Index("ix_user_purge_workspace_user", "workspace_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    # Not a foreign key: the user row is deleted at the end, this row stays as the record.
    user_id: Mapped[int]
    # What the admin saw while it runs; replaced by the pseudonym once done.
    user_label: Mapped[str] = mapped_column(String(254))
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # Transfer chosen: recordings go to transfer_to_id; if that member disappears
    # meanwhile the purge stops rather than delete what was meant to be kept.
    transfer_recordings: Mapped[bool] = mapped_column(default=False)
    transfer_to_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default=PurgeState.queued.value)
    # Rows handled so far, per step ({"recordings": 120, "scim_log": 40, ...}); what was found at the start.
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    expected: Mapped[dict] = mapped_column(JSON, default=dict)
    batches: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    @property
    def is_settled(self) -> bool:
        return self.state in (PurgeState.done.value, PurgeState.failed.value)

    @property
    def state_label(self) -> str:
        return PurgeState(self.state).label

    @property
    def total_done(self) -> int:
        return sum(self.counts.values())

    @property
    def total_expected(self) -> int:
        return sum(self.expected.values())

    @property
    def percent(self) -> int:
        if self.state == PurgeState.done.value:
            return 100
        expected = self.total_expected
        return min(99, int(100 * self.total_done / expected)) if expected else 0
