"""Static SCIM bearer tokens: made here, shown once, stored hashed, revocable."""
from __future__ import annotations

from sqlalchemy import func, select

from app.audit.service import record
from app.extensions import db
from app.models import ScimToken, User, Workspace, utcnow
from app.scoping import get_scoped, scoped
from app.security import hash_secret, new_secret

TOKEN_PREFIX = "ghscim_"


class TokenError(ValueError):
    pass


def create_token(workspace: Workspace, name: str, *, actor: User | None,
                 actor_label: str | None = None) -> tuple[ScimToken, str]:
    """A new token; returns (row, secret). The secret is never stored: show it once."""
    if not workspace.is_enterprise:
        raise TokenError("SCIM provisioning needs the Enterprise plan.")
    name = (name or "").strip()
    if not name:
        raise TokenError("Give the token a name (e.g. Okta).")
    if len(name) > 100:
        raise TokenError("The token name is longer than 100 characters.")
    if db.session.scalar(select(ScimToken.id).where(ScimToken.workspace_id == workspace.id,
                                                    ScimToken.revoked_at.is_(None),
                                                    func.lower(ScimToken.name) == name.lower())):
        raise TokenError(f"A token named “{name}” is already in use: pick another name, so the two can be "
                         "told apart (in the request log too), or revoke the old one first.")
    secret = TOKEN_PREFIX + new_secret(32)
    token = ScimToken(workspace_id=workspace.id, name=name, token_hash=hash_secret(secret),
                      created_by=actor.id if actor is not None else None)
    db.session.add(token)
    db.session.flush()
    record(workspace.id, "scim.token_created", actor=actor, actor_label=actor_label, target=token,
           target_type="scim_token", target_label=name)
    return token, secret


def revoke_token(workspace_id: int, token_id: int, *, actor: User | None, actor_label: str | None = None) -> ScimToken:
    token = get_scoped(ScimToken, workspace_id, token_id)
    if token is None:
        raise TokenError("No such SCIM token in this workspace.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(workspace_id, "scim.token_revoked", actor=actor, actor_label=actor_label, target=token,
               target_type="scim_token", target_label=token.name)
    return token


def list_tokens(workspace_id: int, *, include_revoked: bool = False) -> list[ScimToken]:
    query = scoped(ScimToken, workspace_id)
    if not include_revoked:
        query = query.where(ScimToken.revoked_at.is_(None))
    return list(db.session.scalars(query.order_by(ScimToken.created_at.desc(), ScimToken.id.desc())))


__all__ = ["TokenError", "create_token", "list_tokens", "revoke_token", "select"]
