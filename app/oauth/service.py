"""Rules of the OAuth connection: who may approve, codes, tokens. Never commits;
the views commit once per request.

Tokens are found by the SHA-256 of the presented value (app.security), so the
database never holds a usable secret.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app, g
from sqlalchemy import bindparam, or_, select, update

from app.audit.service import record
from app.extensions import db
from app.models import Plan, User, UserStatus, Workspace, utcnow
from app.models.oauth import OAuthAuthorizationCode, OAuthClient, OAuthToken
from app.security import hash_secret, last_use_is_stale
from app.urls import external_url

CODE_LIFETIME = dt.timedelta(minutes=10)
DEAD_TOKEN_RETENTION = dt.timedelta(days=90)  # revoked tokens stay this long: a replay is still recognised


# --- who may approve ------------------------------------------------------------------------

def workspace_can_connect(workspace_id: int) -> bool:
    workspace = db.session.get(Workspace, workspace_id)
    return workspace is not None and workspace.is_enterprise


def approval_refusal(user: User) -> str | None:
    """Why this signed-in user cannot connect their workspace, or None if they can."""
    if user.status != UserStatus.active.value:
        return "Your account is not active."
    if not user.workspace.is_enterprise:
        return (f"{user.workspace.name} is on the {user.workspace.plan_label} plan. Provisioning needs the "
                f"Enterprise plan, so it cannot be connected to your identity provider.")
    if not user.is_admin:
        return (f"Only admins of {user.workspace.name} can connect provisioning. You are a "
                f"{user.role_label}; ask an admin to click “Authenticate with Gatehouse” in Okta.")
    return None


def approver_still_may_connect(code: OAuthAuthorizationCode) -> bool:
    """A code is exchanged after consent: its approver must still be an active admin of an
    Enterprise workspace then (deactivated or demoted meanwhile: refused)."""
    approver = db.session.get(User, code.user_id) if code.user_id else None
    return approver is not None and approver.workspace_id == code.workspace_id and approval_refusal(approver) is None


# --- authorization codes --------------------------------------------------------------------

def save_authorization_code(code: str, *, client: OAuthClient, workspace_id: int, user_id: int | None,
                            user_label: str, redirect_uri: str, scope: str, code_challenge: str | None,
                            code_challenge_method: str | None) -> OAuthAuthorizationCode:
    item = OAuthAuthorizationCode(
        code_hash=hash_secret(code), client_id=client.id, workspace_id=workspace_id, user_id=user_id,
        user_label=user_label, redirect_uri=redirect_uri, scope=scope, code_challenge=code_challenge or None,
        code_challenge_method=(code_challenge_method or "S256") if code_challenge else None,
        expires_at=utcnow() + CODE_LIFETIME)
    db.session.add(item)
    db.session.flush()
    record(workspace_id, "provisioning.oauth_approved", actor=db.session.get(User, user_id) if user_id else None,
           actor_label=user_label or None, target_type="oauth_client", target_id=str(client.id),
           target_label=client.name, scope=scope)
    return item


def find_authorization_code(code: str, client: OAuthClient) -> OAuthAuthorizationCode | None:
    item = db.session.scalar(select(OAuthAuthorizationCode).where(
        OAuthAuthorizationCode.code_hash == hash_secret(code), OAuthAuthorizationCode.client_id == client.id))
    if item is None or item.is_expired:
        return None
    return item


def mark_code_used(item: OAuthAuthorizationCode) -> None:
    from authlib.oauth2.rfc6749.errors import InvalidGrantError
    # Conditional, so two concurrent exchanges of one code cannot both win.
    claimed = db.session.execute(update(OAuthAuthorizationCode).where(
        OAuthAuthorizationCode.id == item.id, OAuthAuthorizationCode.used_at.is_(None)).values(used_at=utcnow()))
    if claimed.rowcount != 1:
        raise InvalidGrantError("Invalid 'code' in request.")


def revoke_code_family(item: OAuthAuthorizationCode, *, reason: str) -> None:
    _flag_revocation("code", item.id, reason)


# --- tokens ---------------------------------------------------------------------------------

def _refresh_lifetime() -> dt.timedelta:
    # Long-lived and sliding: Okta refreshes only when it has provisioning work to do.
    return dt.timedelta(days=int(current_app.config.get("OAUTH_REFRESH_TOKEN_TTL_DAYS", 365)))


def save_token(token: dict, *, client: OAuthClient, workspace_id: int, approved_by_id: int | None,
               approved_by_label: str, authorization_code_id: int | None,
               rotated_from: OAuthToken | None) -> OAuthToken:
    now = utcnow()
    row = OAuthToken(
        workspace_id=workspace_id, client_id=client.id, approved_by_id=approved_by_id,
        approved_by_label=approved_by_label, authorization_code_id=authorization_code_id,
        rotated_from_id=rotated_from.id if rotated_from else None,
        access_token_hash=hash_secret(token["access_token"]),
        refresh_token_hash=hash_secret(token["refresh_token"]) if token.get("refresh_token") else None,
        token_type=token.get("token_type", "Bearer"), scope=token.get("scope") or "",
        granted_at=rotated_from.granted_at if rotated_from else now, issued_at=now,
        expires_in=int(token.get("expires_in") or 3600),
        refresh_expires_at=now + _refresh_lifetime() if token.get("refresh_token") else None,
        last_used_at=rotated_from.last_used_at if rotated_from else None)
    db.session.add(row)
    if rotated_from is None:
        # The approver is the actor (by id, so purging them pseudonymises this event too).
        approver = db.session.get(User, approved_by_id) if approved_by_id else None
        record(workspace_id, "provisioning.oauth_connected", actor=approver,
               actor_label=f"{approved_by_label} (via {client.name})"[:254], target_type="oauth_client",
               target_id=str(client.id), target_label=client.name, scope=row.scope)
    return row


def find_by_refresh_token(refresh_token: str) -> OAuthToken | None:
    if not refresh_token or len(refresh_token) > 512:
        return None
    return db.session.scalar(select(OAuthToken).where(OAuthToken.refresh_token_hash == hash_secret(refresh_token)))


def find_any_token(value: str, hint: str | None) -> OAuthToken | None:
    if not value or len(value) > 512:
        return None
    digest = hash_secret(value)
    by_access = OAuthToken.access_token_hash == digest
    by_refresh = OAuthToken.refresh_token_hash == digest
    # The hint only orders the search (RFC 7009 §2.1): a wrong hint still finds the token.
    return db.session.scalar(select(OAuthToken).where(or_(by_access, by_refresh)))


def was_rotated(token: OAuthToken) -> bool:
    return token.revoked_reason == "rotated" or db.session.scalar(
        select(OAuthToken.id).where(OAuthToken.rotated_from_id == token.id)) is not None


def revoke_token(token: OAuthToken, *, reason: str) -> None:
    """Revoke one row; conditional, so two refreshes racing on one token cannot both rotate it."""
    from authlib.oauth2.rfc6749.errors import InvalidGrantError
    result = db.session.execute(update(OAuthToken).where(OAuthToken.id == token.id, OAuthToken.revoked_at.is_(None))
                                .values(revoked_at=utcnow(), revoked_reason=reason))
    if result.rowcount != 1:
        raise InvalidGrantError()
    db.session.expire(token, ["revoked_at", "revoked_reason"])


def _family_clause(token: OAuthToken):
    if token.authorization_code_id is not None:
        return OAuthToken.authorization_code_id == token.authorization_code_id
    return OAuthToken.id == token.id


def revoke_family(token: OAuthToken, *, reason: str, actor: User | None = None,
                  actor_label: str | None = None) -> int:
    """Revoke every live token of one approval (one "connection")."""
    now = utcnow()
    count = db.session.execute(update(OAuthToken).where(_family_clause(token), OAuthToken.revoked_at.is_(None))
                               .values(revoked_at=now, revoked_reason=reason)).rowcount
    if count:
        record(token.workspace_id, "provisioning.oauth_revoked", actor=actor,
               actor_label=actor_label or (None if actor else "system"), target_type="workspace",
               target_id=str(token.workspace_id), reason=reason)
    return count


def _flag_revocation(kind: str, row_id: int, reason: str) -> None:
    """A security revocation (replayed refresh token, reused code) found while the
    request itself fails: the view rolls the request back, then applies these."""
    g.setdefault("oauth_revocations", []).append((kind, row_id, reason))


def flag_family_revocation(token: OAuthToken, *, reason: str) -> None:
    _flag_revocation("token", token.id, reason)


REPLAY_EXPLANATIONS = {
    "refresh_reused": "A refresh token that had already been replaced was presented again. That happens when a copy "
                      "of it exists outside your identity provider, so the connection was revoked to be safe.",
    "code_reused": "An authorization code was presented twice. That happens when a copy of it exists outside your "
                   "identity provider, so the connection was revoked to be safe.",
}


def apply_flagged_revocations() -> int:
    revoked = 0
    for kind, row_id, reason in g.pop("oauth_revocations", []):
        if kind == "code":
            first = db.session.scalar(select(OAuthToken).where(OAuthToken.authorization_code_id == row_id)
                                      .order_by(OAuthToken.id))
        else:
            first = db.session.get(OAuthToken, row_id)
        if first is not None:
            count = revoke_family(first, reason=reason)
            if count:
                _tell_admins(first, reason)
            revoked += count
    return revoked


def _tell_admins(token: OAuthToken, reason: str) -> None:
    """Provisioning stopped without anyone clicking anything: say so, and how to reconnect."""
    from app.members.service import notify_admins
    workspace = db.session.get(Workspace, token.workspace_id)
    notify_admins(token.workspace_id, f"Provisioning for {workspace.name} was disconnected", "oauth_connection_revoked",
                  client_name=token.client.name, reason_text=REPLAY_EXPLANATIONS.get(reason, ""),
                  settings_url=external_url("settings.security") + "#provisioning")


# --- using tokens (SCIM) --------------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedToken:
    workspace_id: int
    label: str
    plan: str  # the workspace's, read with the token: the SCIM request needs them next
    default_role: str


# Every SCIM request from Okta runs this: the token, its client's name and the workspace in
# one statement, built once, run on the session's connection (plain columns: the ORM's execute
# path, entities and identity map, cost more than the query itself).
_ACCESS_TOKEN = (select(OAuthToken.id, OAuthToken.revoked_at, OAuthToken.issued_at, OAuthToken.expires_in,
                        OAuthToken.last_used_at,
                        OAuthToken.workspace_id, OAuthClient.name.label("client_name"), Workspace.plan,
                        Workspace.default_role)
                 .join(OAuthClient, OAuthClient.id == OAuthToken.client_id)
                 .join(Workspace, Workspace.id == OAuthToken.workspace_id)
                 .where(OAuthToken.access_token_hash == bindparam("digest")))
_STAMP_LAST_USE = update(OAuthToken).where(OAuthToken.id == bindparam("token_id")).values(last_used_at=bindparam("now"))


def verify_access_token(bearer: str) -> VerifiedToken | None:
    """The workspace an access token provisions, or None (unknown, expired, revoked, not Enterprise)."""
    if not bearer or len(bearer) > 512:
        return None
    connection = db.session.connection()
    token = connection.execute(_ACCESS_TOKEN, {"digest": hash_secret(bearer)}).first()
    now = utcnow()
    if (token is None or token.revoked_at is not None or not Plan.is_enterprise(token.plan)
            or OAuthToken.access_expiry(token.issued_at, token.expires_in) <= now):
        return None
    if last_use_is_stale(token.last_used_at, now):
        connection.execute(_STAMP_LAST_USE, {"token_id": token.id, "now": now})
    return VerifiedToken(token.workspace_id, f"OAuth: {token.client_name}"[:100], token.plan, token.default_role)


# --- the provisioning page ------------------------------------------------------------------

@dataclass(frozen=True)
class Connection:
    token_id: int
    client_name: str
    approved_by: str
    connected_at: dt.datetime
    last_used_at: dt.datetime | None
    refresh_expires_at: dt.datetime | None


def connections(workspace_id: int) -> list[Connection]:
    """Live OAuth connections: one per approval, shown through its newest token."""
    now = utcnow()
    rows = db.session.scalars(select(OAuthToken).where(
        OAuthToken.workspace_id == workspace_id, OAuthToken.revoked_at.is_(None),
        or_(OAuthToken.refresh_expires_at.is_(None), OAuthToken.refresh_expires_at > now))
        .order_by(OAuthToken.granted_at.desc(), OAuthToken.id.desc())).all()
    seen, result = set(), []
    for row in rows:
        family = row.authorization_code_id or -row.id
        if family in seen:
            continue
        if row.refresh_token_hash is None and row.is_expired():
            continue
        seen.add(family)
        result.append(Connection(row.id, row.client.name, row.approved_by_label, row.granted_at, row.last_used_at,
                                 row.refresh_expires_at))
    return result


def last_revocation(workspace_id: int) -> OAuthToken | None:
    """The most recent connection that ended, to explain a disconnected state."""
    return db.session.scalar(select(OAuthToken).where(
        OAuthToken.workspace_id == workspace_id, OAuthToken.revoked_at.is_not(None),
        OAuthToken.revoked_reason != "rotated").order_by(OAuthToken.revoked_at.desc()).limit(1))


def revoke_connection(workspace_id: int, token_id, *, actor: User) -> bool:
    from app.scoping import get_scoped
    token = get_scoped(OAuthToken, workspace_id, token_id)
    if token is None:
        return False
    return revoke_family(token, reason="revoked_by_admin", actor=actor) > 0


def forget_approver(workspace_id: int, user_id: int, batch_size: int) -> int:
    """Purge step: keep the workspace's tokens working, drop who approved them."""
    ids = db.session.scalars(select(OAuthToken.id).where(
        OAuthToken.workspace_id == workspace_id, OAuthToken.approved_by_id == user_id).limit(batch_size)).all()
    codes = db.session.scalars(select(OAuthAuthorizationCode.id).where(
        OAuthAuthorizationCode.workspace_id == workspace_id, OAuthAuthorizationCode.user_id == user_id)
        .limit(batch_size)).all()
    if ids:
        db.session.execute(update(OAuthToken).where(OAuthToken.id.in_(ids))
                           .values(approved_by_id=None, approved_by_label="Deleted user"))
    if codes:
        db.session.execute(update(OAuthAuthorizationCode).where(OAuthAuthorizationCode.id.in_(codes))
                           .values(user_id=None, user_label="Deleted user"))
    return len(ids) + len(codes)


def prune(now: dt.datetime | None = None) -> dict:
    """Housekeeping: codes never exchanged, and tokens long dead. A code that
    produced tokens stays while they do: it names their family."""
    from sqlalchemy import delete, exists
    now = now or utcnow()
    unused_codes = db.session.execute(delete(OAuthAuthorizationCode).where(
        OAuthAuthorizationCode.expires_at < now - dt.timedelta(days=1),
        ~exists().where(OAuthToken.authorization_code_id == OAuthAuthorizationCode.id))).rowcount
    dead = or_(OAuthToken.revoked_at < now - DEAD_TOKEN_RETENTION,
               OAuthToken.refresh_expires_at < now - DEAD_TOKEN_RETENTION)
    dead_tokens = db.session.execute(delete(OAuthToken).where(dead)).rowcount
    return {"codes": unused_codes, "tokens": dead_tokens}
