"""Who is calling the SCIM API: a static SCIM token, or whatever a registered
verifier accepts (the OAuth area registers its access tokens here)."""
from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import bindparam, select

from app.extensions import db
from app.models import ScimToken, Workspace, utcnow
from app.scim.tokens import TOKEN_PREFIX
from app.security import hash_secret

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
MAX_BEARER_LENGTH = 512


@dataclass(frozen=True)
class ScimPrincipal:
    workspace_id: int
    label: str  # shown in audit events and the request log, e.g. "SCIM: Okta"
    # The Workspace row when the check loaded it already (saves the request a query).
    workspace: Workspace | None = field(default=None, compare=False, repr=False)


# Built once (SQLAlchemy caches its compiled form); the workspace comes along, so the
# request's db.session.get(Workspace) needs no second query.
_TOKEN_BY_HASH = (select(ScimToken, Workspace).join(Workspace, Workspace.id == ScimToken.workspace_id)
                  .where(ScimToken.token_hash == bindparam("digest")))

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
    row = db.session.execute(_TOKEN_BY_HASH, {"digest": digest}).first()
    token = row[0] if row is not None else None
    # The lookup is by hash (an index), and the final check is constant-time.
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now  # committed with the request (or its log entry)
    return ScimPrincipal(token.workspace_id, f"SCIM: {token.name}", row[1])
