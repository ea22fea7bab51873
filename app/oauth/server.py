"""The Authlib authorization server, wired to our hashed-secret models.

Authlib does the protocol (parameter checks, redirect-URI matching, PKCE,
error responses); `app.oauth.service` holds our rules (who may approve, how
tokens are stored, rotated and revoked). Widened from Authlib's defaults:
client_secret_post *and* client_secret_basic on every grant and on revocation
(Okta may use either).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import current_app, request

from app.models.oauth import CLIENT_AUTH_METHODS, SUPPORTED_SCOPES, OAuthAuthorizationCode, OAuthClient, OAuthToken
from app.oauth import clients, service


@dataclass(frozen=True)
class WorkspaceGrant:
    """The "resource owner" Authlib passes around: the workspace being connected,
    and who approved it (for the audit trail only)."""

    workspace_id: int
    approved_by_id: int | None
    approved_by_label: str
    authorization_code_id: int | None = None
    rotated_from: OAuthToken | None = None

    def get_user_id(self):
        return self.approved_by_id


class PublicOriginRequest(FlaskOAuth2Request):
    """The request URL as the client sees it: BASE_URL's origin, not the Host
    header (behind a TLS-terminating proxy Flask sees http://...). Authlib
    refuses plain http except on loopback (InsecureTransportError)."""

    def __init__(self, flask_request):
        base, own = urlsplit(current_app.config["BASE_URL"]), urlsplit(flask_request.url)
        public_url = own._replace(scheme=base.scheme, netloc=base.netloc).geturl()
        OAuth2Request.__init__(self, method=flask_request.method, uri=public_url, headers=flask_request.headers)
        self._request = flask_request
        self.payload = FlaskOAuth2Payload(flask_request)


class S256CodeChallenge(CodeChallenge):
    """PKCE, optional for our confidential client, S256 only when used (RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        return super().validate_code_challenge(grant, redirect_uri)


class GatehouseAuthorizationServer(AuthorizationServer):
    def create_oauth2_request(self, req):
        return PublicOriginRequest(request)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    def save_authorization_code(self, code: str, req) -> OAuthAuthorizationCode:
        grant: WorkspaceGrant = req.user
        # redirect_uri "" when the request omitted it (one registered URI): then the
        # token request needn't repeat it either (RFC 6749 §4.1.3).
        return service.save_authorization_code(
            code, client=req.client, workspace_id=grant.workspace_id, user_id=grant.approved_by_id,
            user_label=grant.approved_by_label, redirect_uri=req.payload.redirect_uri or "",
            scope=req.scope or "", code_challenge=req.payload.data.get("code_challenge"),
            code_challenge_method=req.payload.data.get("code_challenge_method"))

    def query_authorization_code(self, code: str, client: OAuthClient):
        found = service.find_authorization_code(code, client)
        if found is not None and found.used_at is not None:
            # RFC 6749 §4.1.2: a code used twice is refused, and what it produced revoked.
            service.revoke_code_family(found, reason="code_reused")
            return None
        return found

    def delete_authorization_code(self, authorization_code: OAuthAuthorizationCode) -> None:
        service.mark_code_used(authorization_code)

    def authenticate_user(self, authorization_code: OAuthAuthorizationCode) -> WorkspaceGrant | None:
        if not service.approver_still_may_connect(authorization_code):  # also: the workspace is still Enterprise
            return None
        return WorkspaceGrant(authorization_code.workspace_id, authorization_code.user_id,
                              authorization_code.user_label, authorization_code.id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh returns a new refresh token

    def authenticate_refresh_token(self, refresh_token: str) -> OAuthToken | None:
        token = service.find_by_refresh_token(refresh_token)
        if token is None:
            return None
        if not token.is_refresh_usable():
            if service.was_rotated(token):
                # An old refresh token came back: someone kept a copy. Revoke the
                # whole approval (RFC 9700 §4.14.2); the admin reconnects.
                service.flag_family_revocation(token, reason="refresh_reused")
            return None
        return token

    def authenticate_user(self, refresh_token: OAuthToken) -> WorkspaceGrant | None:
        if not service.workspace_can_connect(refresh_token.workspace_id):
            return None
        return WorkspaceGrant(refresh_token.workspace_id, refresh_token.approved_by_id,
                              refresh_token.approved_by_label, refresh_token.authorization_code_id,
                              rotated_from=refresh_token)

    def revoke_old_credential(self, refresh_token: OAuthToken) -> None:
        service.revoke_token(refresh_token, reason="rotated")


class TokenRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> OAuthToken | None:
        return service.find_any_token(token_string, token_type_hint)

    def authenticate_token(self, req, client):
        try:
            return super().authenticate_token(req, client)
        except InvalidGrantError:
            return None  # RFC 7009 §2.2: a token that isn't this client's is "invalid": answer 200, revoke nothing

    def revoke_token(self, token: OAuthToken, req) -> None:
        service.revoke_family(token, reason="revoked_by_client", actor_label=f"{req.client.name} (OAuth client)")


def _query_client(client_id: str) -> OAuthClient | None:
    return clients.find_client(client_id)


def _save_token(token: dict, req) -> None:
    grant: WorkspaceGrant = req.user
    service.save_token(token, client=req.client, workspace_id=grant.workspace_id,
                       approved_by_id=grant.approved_by_id, approved_by_label=grant.approved_by_label,
                       authorization_code_id=grant.authorization_code_id, rotated_from=grant.rotated_from)


def _expires_in(client, grant_type: str) -> int:
    return int(current_app.config.get("OAUTH_ACCESS_TOKEN_TTL", 3600))


def create_server(app) -> GatehouseAuthorizationServer:
    app.config.setdefault("OAUTH2_SCOPES_SUPPORTED", list(SUPPORTED_SCOPES))
    app.config.setdefault("OAUTH2_REFRESH_TOKEN_GENERATOR", True)
    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", "app.oauth.server._expires_in")
    server = GatehouseAuthorizationServer(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=False)])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(TokenRevocation)
    return server
