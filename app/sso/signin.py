"""After a valid SAML response: who is signing in, may they, and the login log."""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from app.audit.service import record
from app.deferred_writes import insert_at_commit
from app.emails import InvalidEmail, normalize_address
from app.extensions import db
from app.scoping import scoped
from app.models import SamlLoginLog, SsoConnection, User, UserSource, UserStatus, utcnow
from app.sso.errors import SamlError, SamlErrorCode as E
from app.sso.policy import authorized_member, domain_authorized
from app.sso.saml import EMAIL_LIKE_FORMATS, Assertion

TRACE_LIMIT = 2000
# Details come partly from what was posted (an unsigned InResponseTo, attributes): each value
# and list is cut, so no entry can be made large, whoever posts.
DETAIL_TEXT_LIMIT = 512
DETAIL_ITEMS_LIMIT = 100
ATTRIBUTE_NAMES = {
    "email": ("email", "Email", "mail", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"),
    "first_name": ("firstName", "first_name", "givenName",
                   "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"),
    "last_name": ("lastName", "last_name", "surname", "sn",
                  "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"),
    "groups": ("groups", "Groups", "memberOf", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"),
}


def _attr(attributes: dict, key: str) -> list[str]:
    for name in ATTRIBUTE_NAMES[key]:
        if attributes.get(name):
            return [str(v) for v in attributes[name]]
    return []


def received_identity(assertion: Assertion) -> dict:
    """What a test result shows: NameID, email, name, groups."""
    first, last = _attr(assertion.attributes, "first_name"), _attr(assertion.attributes, "last_name")
    return {"nameid": assertion.nameid, "nameid_format": assertion.nameid_format,
            "email": (_attr(assertion.attributes, "email") or [assertion.nameid])[0],
            "name": " ".join(p for p in (first[:1] + last[:1]) if p) or None,
            "groups": _attr(assertion.attributes, "groups")}


@dataclass
class SignInResult:
    user: User | None          # None on a test of a user JIT would create
    email: str
    created: bool = False


def resolve_user(assertion: Assertion, *, dry_run: bool) -> SignInResult:
    """Match the NameID (an email) to a member of the connection's workspace,
    case-insensitively; JIT-create when the admin allows it (not on dry runs)."""
    conn = assertion.connection
    if assertion.nameid_format and assertion.nameid_format not in EMAIL_LIKE_FORMATS:
        raise SamlError(E.nameid_not_email, "NameID format is not emailAddress",
                        {"expected": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                         "received": assertion.nameid_format}, email=assertion.nameid)
    try:
        email = normalize_address(assertion.nameid)
    except InvalidEmail as exc:
        raise SamlError(E.nameid_not_email, f"NameID {assertion.nameid[:100]!r} is not an email",
                        {"expected": "an email address", "received": assertion.nameid[:254]},
                        email=assertion.nameid[:254]) from exc
    claimed = assertion.claimed_member
    # The member read with the request, if that read asked for this very address (a NameID the
    # unvalidated read could not parse, or read otherwise, is looked up again).
    user = claimed.user if claimed is not None and claimed.email == email else authorized_member(
        conn.workspace_id, email)
    if user is None and not domain_authorized(conn.workspace_id, email):
        raise SamlError(E.domain_not_authorized, f"{email.rpartition('@')[2]} is not verified for the workspace",
                        {"received": email.rpartition("@")[2]}, email=email)
    if user is None:
        if not conn.jit_enabled:
            raise SamlError(E.user_unknown, f"no member {email} and JIT creation is off", email=email)
        if dry_run:
            return SignInResult(None, email, created=True)
        identity = received_identity(assertion)
        # Names come from the IdP as given: cut to the columns' sizes (PostgreSQL would refuse longer).
        user = User(workspace_id=conn.workspace_id, name=(identity["name"] or "")[:200], role=conn.jit_role,
                    status=UserStatus.active.value, source=UserSource.sso_jit.value)
        user.set_email(email)
        first, last = (_attr(assertion.attributes, "first_name") or [None])[0], \
            (_attr(assertion.attributes, "last_name") or [None])[0]
        user.given_name, user.family_name = (first or None) and first[:100], (last or None) and last[:100]
        try:
            # A savepoint: losing the race to the same new person's other sign-in undoes this
            # insert only, so the request stays consumed and the assertion used.
            with db.session.begin_nested():
                db.session.add(user)
        except IntegrityError as exc:
            raise SamlError(E.concurrent, f"{email} created concurrently", email=email) from exc
        record(conn.workspace_id, "member.created_by_sso", actor_label="SSO (just-in-time)", target=user,
               role=user.role)
        return SignInResult(user, email, created=True)
    if user.status == UserStatus.deactivated.value:
        raise SamlError(E.user_deactivated, f"{email} is deactivated", email=email)
    if user.status == UserStatus.invited.value and not dry_run:
        # The IdP proved who they are: an SSO sign-in accepts the invitation.
        user.status = UserStatus.active.value
        record(conn.workspace_id, "member.invitation_accepted", actor=user, target=user, method="sso")
    return SignInResult(user, email)


def trace_of(summary: dict | None, reason: str = "") -> str:
    """A short, size-limited trace for admins: never the raw assertion."""
    parts = {"reason": reason[:400]} if reason else {}
    if summary:
        parts.update({k: v for k, v in summary.items() if v})
    return json.dumps(parts, default=str)[:TRACE_LIMIT]


_INSERT_LOG_ENTRY = insert(SamlLoginLog.__table__)


def log_attempt(connection_id: str, workspace_id: int, *, outcome: str, email: str | None = None,
                user: User | None = None, is_test: bool = False, error: SamlError | None = None,
                details: dict | None = None, summary: dict | None = None) -> int | None:
    """Add the attempt to the connection's login log, in the caller's transaction. Every
    sign-in writes one, so it is inserted at commit with the sign-in's other bookkeeping
    rows (app/deferred_writes.py). A test's entry is inserted at once instead: its result
    page is that entry, and its id (returned) is the page's address."""
    row = {"workspace_id": workspace_id, "connection_id": connection_id, "outcome": outcome,
           "email": (email or None) and email[:254], "user_id": user.id if user else None, "is_test": is_test,
           "error_code": error.code.value if error else None,
           "details": _bounded(details if details is not None else (error.details if error else {})),
           "trace": trace_of(summary, error.reason if error else ""), "created_at": utcnow()}
    if not is_test:
        insert_at_commit(db.session, SamlLoginLog.__table__, row)
        return None
    with db.session.no_autoflush:  # like audit events: the caller's changes flush where the caller flushes
        return db.session.execute(_INSERT_LOG_ENTRY, row).inserted_primary_key[0]


def _bounded(details: dict) -> dict:
    """`details` as JSON, with every string and list cut to the limits above."""
    def cut(value):
        if isinstance(value, str):
            return value if len(value) <= DETAIL_TEXT_LIMIT else value[:DETAIL_TEXT_LIMIT - 1] + "…"
        if isinstance(value, dict):
            return {cut(str(k)): cut(v) for k, v in list(value.items())[:DETAIL_ITEMS_LIMIT]}
        if isinstance(value, list):
            return [cut(v) for v in value[:DETAIL_ITEMS_LIMIT]]
        return value
    return cut(json.loads(json.dumps(details or {}, default=str)))


def recent_log(workspace_id: int, limit: int = 50) -> list[SamlLoginLog]:
    return list(db.session.scalars(scoped(SamlLoginLog, workspace_id)
                                   .order_by(SamlLoginLog.created_at.desc(), SamlLoginLog.id.desc()).limit(limit)))


def connection_for_log(connection_id: str) -> SsoConnection | None:
    return db.session.scalar(select(SsoConnection).where(SsoConnection.connection_id == connection_id)
                             .order_by(SsoConnection.is_staged))
