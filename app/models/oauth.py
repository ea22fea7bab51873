"""OAuth 2.0 for SCIM ("Authenticate with Gatehouse"): the registered client
(Okta), the short-lived authorization codes and the tokens they turn into.

Every secret (client secret, code, access and refresh token) is stored as its
SHA-256 only and looked up by that hash; Authlib's SQLAlchemy mixins would keep
them in plain text, so these are our own typed models implementing Authlib's
ClientMixin / AuthorizationCodeMixin / TokenMixin by hand.
"""
from __future__ import annotations

import datetime as dt

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow
from app.security import secret_matches

# The scopes a SCIM connection can ask for: `scim` is the API itself; Okta adds
# `offline_access`, which we accept. Every approval gets a rotating refresh token
# either way (provisioning must outlive an hour-long access token), and the consent
# page says the connection lasts until an admin revokes it.
SCIM_SCOPE = "scim"
SUPPORTED_SCOPES = (SCIM_SCOPE, "offline_access")
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OAuthClient(ClientMixin, Base):
    """A confidential client registered by the operator (`flask oauth-client create`).

    Okta's client id and secret are the same for every customer: one row serves
    every workspace; which workspace a token belongs to is decided by the admin
    who approves on the consent page.
    """

    __tablename__ = "oauth_client"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # Matched exactly (no prefix or pattern matching): an open redirector here
    # would hand codes to an attacker.
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    allowed_scopes: Mapped[str] = mapped_column(String(200), default=" ".join(SUPPORTED_SCOPES))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # --- Authlib ClientMixin ---------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only when there is exactly one: with several, the client must say which.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = scope_to_list(self.allowed_scopes) or []
        if not scope:
            return SCIM_SCOPE if SCIM_SCOPE in allowed else ""
        requested = [s for s in scope_to_list(scope) if s in allowed]
        if SCIM_SCOPE not in requested and SCIM_SCOPE in allowed:
            requested.insert(0, SCIM_SCOPE)  # a provisioning token is always for SCIM
        return list_to_scope(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")

    def __repr__(self) -> str:
        return f"<OAuthClient {self.name} {self.client_id}>"


class OAuthAuthorizationCode(AuthorizationCodeMixin, Base):
    """A single-use code (10 minutes) binding a client to the approving admin's workspace."""

    __tablename__ = "oauth_authorization_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("oauth_client.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"), index=True)
    # The approving admin; kept for the audit trail only (SET NULL when purged).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    user_label: Mapped[str] = mapped_column(String(254), default="")
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(200), default="")
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    client: Mapped[OAuthClient] = relationship(lazy="joined")

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= utcnow()


class OAuthToken(TokenMixin, Base):
    """An access token and its refresh token, owned by a workspace.

    The token belongs to the workspace, not to the admin who approved it:
    `approved_by_id` is for the audit trail, so deactivating (or deleting) that
    admin never breaks provisioning. A refresh rotates the pair: the new row
    points at the old one (`rotated_from_id`), the old row is revoked, and every
    row of one approval shares `authorization_code_id` (the grant family), so a
    replayed old refresh token can revoke the whole family.
    """

    __tablename__ = "oauth_token"
    __table_args__ = (Index("ix_oauth_token_workspace_revoked", "workspace_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    client_id: Mapped[int] = mapped_column(ForeignKey("oauth_client.id", ondelete="CASCADE"), index=True)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"), index=True)
    approved_by_label: Mapped[str] = mapped_column(String(254), default="")
    authorization_code_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth_authorization_code.id", ondelete="SET NULL"), index=True)
    rotated_from_id: Mapped[int | None] = mapped_column(ForeignKey("oauth_token.id", ondelete="SET NULL"), index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    token_type: Mapped[str] = mapped_column(String(20), default="Bearer")
    scope: Mapped[str] = mapped_column(String(200), default="")
    # When the admin approved (copied along rotations): "connected since".
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_in: Mapped[int] = mapped_column(default=3600)
    refresh_expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    last_used_at: Mapped[dt.datetime | None]

    client: Mapped[OAuthClient] = relationship(lazy="joined")

    # --- Authlib TokenMixin ----------------------------------------------------------------
    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    @property
    def access_expires_at(self) -> dt.datetime:
        return self.access_expiry(self.issued_at, self.expires_in)

    @staticmethod
    def access_expiry(issued_at: dt.datetime, expires_in: int) -> dt.datetime:
        return issued_at + dt.timedelta(seconds=expires_in)

    def is_expired(self) -> bool:
        return self.access_expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_refresh_usable(self) -> bool:
        return (self.refresh_token_hash is not None and self.revoked_at is None
                and (self.refresh_expires_at is None or self.refresh_expires_at > utcnow()))

    def get_client(self) -> OAuthClient:
        return self.client

    def get_user(self):
        return None  # tokens belong to a workspace, see WorkspaceGrant in app.oauth.server

    def __repr__(self) -> str:
        return f"<OAuthToken {self.id} workspace={self.workspace_id}>"
