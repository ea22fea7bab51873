"""SAML single sign-on: connections, their certificates, in-flight requests,
the replay cache, the login log and break-glass recovery codes."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow

CONNECTION_ID_PATTERN = r"^\d{4}-[a-z]{5}\d{4}$"


class IdpKind(str, enum.Enum):
    okta = "okta"
    entra = "entra"
    google = "google"
    onelogin = "onelogin"
    custom = "custom"

    @property
    def label(self) -> str:
        return {"okta": "Okta", "entra": "Microsoft Entra ID", "google": "Google Workspace",
                "onelogin": "OneLogin", "custom": "Other SAML 2.0 provider"}[self.value]


class ConnectionState(str, enum.Enum):
    draft = "draft"      # configured (or being configured), never passed a test
    tested = "tested"    # a test login succeeded; SSO can be turned on
    on = "on"            # members sign in through it

    @property
    def label(self) -> str:
        return {"draft": "Draft", "tested": "Tested", "on": "On"}[self.value]


class SsoConnection(Base):
    """One live connection per workspace, plus at most one staged draft that
    shares its Connection ID (so the IdP app needs no change while switching)."""

    __tablename__ = "sso_connection"
    __table_args__ = (
        Index("uq_sso_connection_cid_staged", "connection_id", "is_staged", unique=True),
        Index("uq_sso_connection_workspace_staged", "workspace_id", "is_staged", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[str] = mapped_column(String(14))
    is_staged: Mapped[bool] = mapped_column(Boolean, default=False)
    idp_kind: Mapped[str] = mapped_column(String(20), default=IdpKind.okta.value)
    idp_entity_id: Mapped[str | None] = mapped_column(String(1024))
    sso_url: Mapped[str | None] = mapped_column(String(2048))
    metadata_url: Mapped[str | None] = mapped_column(String(2048))
    metadata_xml: Mapped[str | None] = mapped_column(Text, deferred=True)  # not needed to sign in
    # Metadata fetch by the background job: pending / ok / failed, and why.
    metadata_status: Mapped[str | None] = mapped_column(String(20))
    metadata_error: Mapped[str | None] = mapped_column(String(500))
    metadata_fetched_at: Mapped[dt.datetime | None]
    state: Mapped[str] = mapped_column(String(20), default=ConnectionState.draft.value)
    jit_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    jit_role: Mapped[str] = mapped_column(String(20), default="creator_lite")
    tested_at: Mapped[dt.datetime | None]
    enabled_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    certificates: Mapped[list[SsoCertificate]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", order_by="SsoCertificate.not_after.desc()")

    @property
    def idp_label(self) -> str:
        return IdpKind(self.idp_kind).label

    @property
    def is_on(self) -> bool:
        return self.state == ConnectionState.on.value

    @property
    def is_configured(self) -> bool:
        return bool(self.idp_entity_id and self.sso_url and self.certificates)

    @property
    def metadata_url_unproven(self) -> bool:
        """A metadata URL that has not delivered metadata yet (its first fetch is pending or
        failed): what a test would test is not what the URL will bring, so no test counts."""
        return bool(self.metadata_url) and self.metadata_fetched_at is None

    @property
    def name(self) -> str:  # audit labels
        return f"SSO connection {self.connection_id}" + (" (draft)" if self.is_staged else "")

    def __repr__(self) -> str:
        return f"<SsoConnection {self.connection_id}{' staged' if self.is_staged else ''} {self.state}>"


class SsoCertificate(Base):
    """An IdP signing certificate; several at once during a rotation."""

    __tablename__ = "sso_certificate"
    __table_args__ = (Index("uq_sso_certificate_conn_fp", "connection_pk", "fingerprint", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    connection_pk: Mapped[int] = mapped_column(ForeignKey("sso_connection.id", ondelete="CASCADE"), index=True)
    pem: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(95))  # SHA-256, colon-separated hex
    subject: Mapped[str] = mapped_column(String(500), default="")
    not_before: Mapped[dt.datetime | None]
    not_after: Mapped[dt.datetime]
    source: Mapped[str] = mapped_column(String(20), default="manual")  # metadata / upload / manual
    expiry_warned_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    connection: Mapped[SsoConnection] = relationship(back_populates="certificates")

    @property
    def name(self) -> str:
        return f"certificate {self.fingerprint[:23]}…"


class SamlRequest(Base):
    """An AuthnRequest we sent, looked up by its RelayState when the IdP posts
    back (the SameSite=Lax session cookie is not sent on that cross-site POST).
    Single use: deleted when a response consumes it."""

    __tablename__ = "saml_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    connection_pk: Mapped[int] = mapped_column(ForeignKey("sso_connection.id", ondelete="CASCADE"), index=True)
    request_id: Mapped[str] = mapped_column(String(100))
    relay_state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    next_url: Mapped[str | None] = mapped_column(String(2000))
    browser_binding_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class SamlReplay(Base):
    """Assertion ids already accepted, kept until they could no longer be valid."""

    __tablename__ = "saml_replay"
    __table_args__ = (Index("uq_saml_replay_issuer_assertion", "issuer", "assertion_id", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(1024))
    assertion_id: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class SamlLoginLog(Base):
    """One SAML sign-in attempt, for admins: never the raw assertion, only a
    short trace."""

    __tablename__ = "saml_login_log"
    __table_args__ = (Index("ix_saml_login_log_ws_at", "workspace_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(String(14))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    email: Mapped[str | None] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"), index=True)
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(20))  # success / refused
    error_code: Mapped[str | None] = mapped_column(String(40))
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # expected vs received, attributes on a test
    trace: Mapped[str | None] = mapped_column(String(2000))

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"


class RecoveryCode(Base):
    """Break-glass: an admin signs in with password + one of these when the IdP is broken."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None]
