"""Who is calling the SCIM API: a static SCIM token, or whatever a registered
verifier accepts (the OAuth area registers its access tokens here)."""
from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import bindparam, select, update

from app.extensions import db
from app.models import Plan, ScimToken, Workspace, utcnow
from app.scim.tokens import TOKEN_PREFIX
from app.security import hash_secret, last_use_is_stale

MAX_BEARER_LENGTH = 512


@dataclass(frozen=True)
class ScimWorkspace:
    """What a SCIM request needs of its workspace. Plain values, read with the token in
    one statement: the service code never needs the ORM object."""
    id: int
    plan: str
    default_role: str

    @property
    def is_enterprise(self) -> bool:
        return Plan.is_enterprise(self.plan)


@dataclass(frozen=True)
class ScimPrincipal:
    workspace_id: int
    label: str  # shown in audit events and the request log, e.g. "SCIM: Okta"
    # The workspace when the check read it already (saves the request a query).
    workspace: ScimWorkspace | None = field(default=None, compare=False, repr=False)


# Built once (SQLAlchemy caches its compiled form), with the workspace's columns, and run on the
# session's connection: every SCIM request starts here, and the ORM's execute path (entities,
# identity map) cost more than the query itself.
_TOKEN_BY_HASH = (select(ScimToken.token_hash, ScimToken.name, ScimToken.revoked_at, ScimToken.last_used_at,
                         ScimToken.id, Workspace.id.label("workspace_id"), Workspace.plan, Workspace.default_role)
                  .join(Workspace, Workspace.id == ScimToken.workspace_id)
                  .where(ScimToken.token_hash == bindparam("digest")))
_STAMP_LAST_USE = (update(ScimToken).where(ScimToken.id == bindparam("token_id"))
                   .values(last_used_at=bindparam("now")))
_WORKSPACE = select(Workspace.id, Workspace.plan, Workspace.default_role).where(Workspace.id == bindparam("id"))


def workspace_of(workspace_id: int) -> ScimWorkspace | None:
    row = db.session.connection().execute(_WORKSPACE, {"id": workspace_id}).first()
    return ScimWorkspace(*row) if row is not None else None


BearerVerifier = Callable[[str], "ScimPrincipal | None"]
_verifiers: list[BearerVerifier] = []


def register_bearer_verifier(verifier: BearerVerifier) -> None:
    if verifier not in _verifiers:
        _verifiers.append(verifier)


def bearer_from_header(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials or len(credentials) > MAX_BEARER_LENGTH:
        return None
    return credentials


def authenticate(bearer: str | None) -> ScimPrincipal | None:
    if not bearer or len(bearer) > MAX_BEARER_LENGTH:
        return None
    if bearer.startswith(TOKEN_PREFIX):  # a static SCIM token; anything else is for the verifiers
        return _static_token(bearer)
    for verifier in list(_verifiers):
        principal = verifier(bearer)
        if principal is not None:
            return principal
    return None


def _static_token(bearer: str) -> ScimPrincipal | None:
    digest = hash_secret(bearer)
    connection = db.session.connection()
    token = connection.execute(_TOKEN_BY_HASH, {"digest": digest}).first()
    # The lookup is by hash (an index), and the final check is constant-time.
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        return None
    now = utcnow()
    if last_use_is_stale(token.last_used_at, now):
        # Committed with the request (or its log entry).
        connection.execute(_STAMP_LAST_USE, {"token_id": token.id, "now": now})
    return ScimPrincipal(token.workspace_id, f"SCIM: {token.name}",
                         ScimWorkspace(token.workspace_id, token.plan, token.default_role))
