"""Authorized domains: a workspace proves it owns an email domain by a DNS TXT
record or by a link mailed to an inbox at the domain (see DESIGN.md,
"Domain verification")."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow

RECORD_PREFIX = "_gatehouse-challenge"
OPERATOR = "operator (CLI)"  # verified_by of an operator override
VALUE_PREFIX = "gatehouse-domain-verification"


class DomainStatus(str, enum.Enum):
    pending = "pending"
    verified = "verified"
    expired = "expired"  # no proof within 7 days; can be restarted
    failed = "failed"  # was verified, its record disappeared past the grace period

    @property
    def label(self) -> str:
        return {"pending": "Pending validation", "verified": "Verified", "expired": "Expired",
                "failed": "Failed"}[self.value]


class DomainMethod(str, enum.Enum):
    dns = "dns"
    email = "email"

    @property
    def label(self) -> str:
        return {"dns": "DNS TXT record", "email": "Email"}[self.value]


class Domain(Base):
    __tablename__ = "domain"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        # A domain is verified for at most one workspace: the first to verify wins,
        # even when two checks race.
        Index("uq_domain_verified_name", "name", unique=True,
              sqlite_where=text("status = 'verified'"), postgresql_where=text("status = 'verified'")),
        Index("ix_domain_due", "next_check_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(253))  # lowercase ASCII (punycode for IDN)
    # acme.co.uk for eu.acme.co.uk: overlapping names (equal, parent, subdomain) share it,
    # so "verified elsewhere?" is one index look-up, not a scan.
    registrable: Mapped[str] = mapped_column(String(253), index=True)
    method: Mapped[str] = mapped_column(String(10), default=DomainMethod.dns.value)
    status: Mapped[str] = mapped_column(String(10), default=DomainStatus.pending.value)

    # DNS method: the value is public (it is published in DNS) and stored as is.
    txt_value: Mapped[str] = mapped_column(String(64))
    # Email method: the inbox's local part, and the link's secret as SHA-256.
    email_inbox: Mapped[str | None] = mapped_column(String(20))
    email_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    email_token_expires_at: Mapped[dt.datetime | None]
    email_token_used_at: Mapped[dt.datetime | None]

    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)  # this round of verification; +7 days = expiry
    scheduled_checks: Mapped[int] = mapped_column(default=0)  # position in the backoff schedule
    next_check_at: Mapped[dt.datetime | None]
    check_requested_at: Mapped[dt.datetime | None]  # "check now" clicked, result not in yet
    last_checked_at: Mapped[dt.datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(16))  # see app.domains.dns_check.Outcome
    last_detail: Mapped[str | None] = mapped_column(Text)  # what we found, in plain words
    last_records: Mapped[list | None] = mapped_column(JSON)  # the TXT records we saw
    record_missing_since: Mapped[dt.datetime | None]  # a verified domain whose record went away
    failure_held_at: Mapped[dt.datetime | None]  # failing it would lock every admin out (see verification.fail)

    verified_at: Mapped[dt.datetime | None]
    verified_by: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    @property
    def status_label(self) -> str:
        return DomainStatus(self.status).label

    @property
    def method_label(self) -> str:
        return DomainMethod(self.method).label

    @property
    def is_verified(self) -> bool:
        return self.status == DomainStatus.verified.value

    @property
    def is_operator_verified(self) -> bool:
        """Verified on an operator's word (CLI override): there is no record or inbox to re-check."""
        return self.is_verified and self.verified_by == OPERATOR

    @property
    def record_name(self) -> str:
        return f"{RECORD_PREFIX}.{self.name}"

    @property
    def record_value(self) -> str:
        return f"{VALUE_PREFIX}={self.txt_value}"

    @property
    def inbox_address(self) -> str | None:
        return f"{self.email_inbox}@{self.name}" if self.email_inbox else None

    @property
    def inbox_display(self) -> str | None:
        """The inbox as people read it (the mail itself goes to the ASCII form)."""
        return f"{self.email_inbox}@{self.display_name}" if self.email_inbox else None

    @property
    def display_name(self) -> str:
        """The name as people read it (Unicode for internationalised names)."""
        from app.domains.names import to_unicode
        return to_unicode(self.name)

    def __repr__(self) -> str:
        return f"<Domain {self.id} {self.name} {self.status}>"
