"""The SAML protocol, on python3-saml plus what it leaves to the service provider.

python3-saml (strict mode) checks: version and ID, Success status, exactly one
assertion, which elements are signed (and that the references point at them:
signature wrapping), XML schema, InResponseTo *if present*, one Conditions
element with NotBefore/NotOnOrAfter (± ALLOWED_CLOCK_DRIFT), one
AuthnStatement, Destination (prefix match, only if present), Audience (only
if an AudienceRestriction is present), Issuer, SessionNotOnOrAfter, a bearer
SubjectConfirmation (Recipient by substring), a signed assertion and the
signature against our certificates. It refuses DTDs and entities by raising.

What we add here, check by check:
- responses without InResponseTo are refused (unsolicited), and
  InResponseTo must equal the request stored under this RelayState, which is
  then consumed (single use) and must not be expired;
- the attempt is tied to the browser that started it (login CSRF) where the
  binding cookie can be sent (see `BROWSER_COOKIE` below);
- an Audience is required and must be our entity id; the Recipient must equal
  our ACS URL exactly; a Destination, when present, must equal it exactly;
- our own time window with a configurable skew (the library's is a
  process-wide class constant, set once from the same config at start-up), so
  that diagnostics can show the clock difference;
- each assertion id is accepted once (replay cache in the database);
- malformed input (bad base64, broken XML, DOCTYPE) becomes a typed 400;
- the NameID must be an email on an authorized domain of the workspace.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import lazyload

from app.emails import InvalidEmail, normalize_address
from app.extensions import db
from app.models import SamlReplay, SamlRequest, SsoConnection, User, utcnow
from app.security import hash_secret, new_secret
from app.sso import checks, policy
from app.sso.errors import SamlError, SamlErrorCode as E
from app.sso.sp import EMAIL_FORMAT, clock_skew, request_data, saml_settings, sp_urls

EMAIL_LIKE_FORMATS = {EMAIL_FORMAT, "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"}
REQUEST_TTL = dt.timedelta(minutes=10)
MAX_RESPONSE_CHARS = 256 * 1024  # base64 of a response; real ones are a few KB

# Login CSRF: the browser that starts a sign-in gets a random id in this
# cookie, and the stored request keeps its hash; the ACS refuses a response
# arriving in a browser with another id. The session cookie can't do this: it
# is SameSite=Lax and is not sent on the IdP's cross-site POST. This cookie is
# SameSite=None so it *is* sent on that POST — and browsers accept
# SameSite=None only with Secure, so the binding applies on https (production).
# On plain-http development origins no cookie could ride the POST, so
# requests made there carry no binding and are checked by RelayState alone.
# The __Host- prefix makes browsers refuse it from a sibling subdomain (which
# could otherwise plant its own id): Secure, Path=/ and no Domain are required.
# A start that another site's link caused is the other half: app.sso.browser.
BROWSER_COOKIE = "__Host-gatehouse_saml_browser"


# --- starting a sign-in -----------------------------------------------------------------------

@dataclass
class StartedLogin:
    redirect_url: str
    request: SamlRequest


def start_login(conn: SsoConnection, *, is_test: bool = False, next_url: str | None = None,
                started_by: User | None = None, browser_id: str | None = None) -> StartedLogin:
    """An AuthnRequest by HTTP-Redirect; its id is stored server-side under a
    random RelayState (the caller commits)."""
    relay_state = new_secret(24)
    auth = OneLogin_Saml2_Auth(request_data(f"/sso/saml/{conn.connection_id}/login"), saml_settings(conn))
    url = auth.login(return_to=relay_state)
    req = SamlRequest(workspace_id=conn.workspace_id, connection_pk=conn.id, request_id=auth.get_last_request_id(),
                      relay_state_hash=hash_secret(relay_state), is_test=is_test,
                      started_by_id=started_by.id if started_by else None, next_url=next_url,
                      browser_binding_hash=hash_secret(browser_id) if browser_id else None,
                      expires_at=utcnow() + REQUEST_TTL)
    db.session.add(req)
    return StartedLogin(url, req)


# --- the assertion consumer service -----------------------------------------------------------

@dataclass(frozen=True)
class Member:
    """The authorized member with `email` (None: nobody), as read with the stored request."""

    email: str
    user: User | None


@dataclass
class Assertion:
    """What a valid response told us."""

    connection: SsoConnection
    request: SamlRequest
    nameid: str
    nameid_format: str | None
    attributes: dict
    assertion_id: str
    session_not_on_or_after: dt.datetime | None
    summary: dict = field(default_factory=dict)
    claimed_member: Member | None = None  # read with the request (app.sso.signin decides if it applies)


def _parse(saml_response: str | None) -> OneLogin_Saml2_Response:
    """Decode and parse, before we know the connection (settings come later).

    python3-saml raises on bad base64, broken XML and DOCTYPE/entities
    (DTDForbidden, EntitiesForbidden): all of it is a typed 400, never a 500.
    An encrypted assertion would need settings here; we don't support those."""
    if not saml_response:
        raise SamlError(E.malformed, "no SAMLResponse in the POST")
    if len(saml_response) > MAX_RESPONSE_CHARS:
        raise SamlError(E.too_large, f"SAMLResponse of {len(saml_response)} characters")
    try:
        return OneLogin_Saml2_Response(None, saml_response)
    except Exception as exc:  # noqa: BLE001
        raise SamlError(E.malformed, f"{type(exc).__name__}: {str(exc)[:200]}") from exc


# The statements every sign-in runs are built once: for a one-row statement, building it
# and its cache key costs about as much Python as running it (profiled on the ACS).
_REQUEST_CONNECTION_AND_MEMBER = (
    select(SamlRequest, SsoConnection, User)
    .join(SsoConnection, SsoConnection.id == SamlRequest.connection_pk)
    .outerjoin(User, policy.IS_AUTHORIZED_MEMBER_OF_CONNECTION)
    .options(lazyload(User.workspace))  # a sign-in never reads it: no join for it
    .where(SamlRequest.relay_state_hash == bindparam("relay_state_hash")))
_CONSUME_REQUEST = delete(SamlRequest).where(SamlRequest.id == bindparam("request_pk"))
_REMEMBER_ASSERTION = insert(SamlReplay.__table__)
_MEMBER_STATUS = select(User.__table__.c.status).where(User.__table__.c.id == bindparam("member_pk"))
# All three in one statement (PostgreSQL): the replay-cache row; the request, deleted in a WITH;
# and the member read with it, locked (FOR SHARE) until the commit. It returns how many
# requests it deleted (0: another POST consumed it meanwhile) and the member's status now.
_consumed = (delete(SamlRequest.__table__).where(SamlRequest.__table__.c.id == bindparam("request_pk"))
             .returning(SamlRequest.__table__.c.id).cte("consumed"))
_member_now = _MEMBER_STATUS.with_for_update(read=True).cte("member_now")
_REMEMBER_AND_CONSUME = (insert(SamlReplay.__table__).add_cte(_consumed).add_cte(_member_now)
                         .returning(select(func.count()).select_from(_consumed).scalar_subquery(),
                                    select(_member_now.c.status).scalar_subquery()))


@dataclass
class _Redeemed:
    request: SamlRequest
    connection: SsoConnection
    member: Member | None  # None: the NameID as posted is no email, so nobody was looked up


def _redeem_relay_state(relay_state: str | None, claimed_email: str | None) -> _Redeemed | None:
    """The stored request and its connection, in one query; and, in the same query, the
    member the response claims to be (`claimed_email`, from the NameID before validation).
    A valid response names that member nearly always: their own look-up would be another
    round trip on every sign-in. Nothing is decided on it before validation."""
    if not relay_state or len(relay_state) > 200:
        return None
    row = db.session.execute(_REQUEST_CONNECTION_AND_MEMBER, {"relay_state_hash": hash_secret(relay_state),
                                                              **policy.member_parameters(claimed_email)}).first()
    if row is None:
        return None
    # Only read from here on, and deleted by a statement: detached, its loaded values outlive a
    # rollback (the replay refusal's), even once a concurrent POST of the same response has
    # consumed the row, where reloading it would fail.
    db.session.expunge(row[0])
    return _Redeemed(row[0], row[1], Member(claimed_email, row[2]) if claimed_email else None)


def _claimed_email(nameid: str | None) -> str | None:
    try:
        return normalize_address(nameid) if nameid else None
    except InvalidEmail:
        return None


def consume_response(connection_id: str, saml_response: str | None, relay_state: str | None,
                     browser_id: str | None) -> Assertion:
    """Validate a posted response end to end; raise SamlError (typed) on any refusal.

    The caller commits: the consumed request and the replay-cache row go with
    the session (or the refusal's log row) in one transaction."""
    response = _parse(saml_response)
    summary = checks.summarize(response.document)
    redeemed = _redeem_relay_state(relay_state, _claimed_email(summary["nameid"]))
    if redeemed is None:
        if not summary["in_response_to"]:
            raise SamlError(E.unsolicited, "no InResponseTo and no known RelayState")
        raise SamlError(E.request_unknown, "RelayState unknown, expired or already used",
                        {"received": summary["in_response_to"]})
    req, conn = redeemed.request, redeemed.connection
    if conn.connection_id != connection_id:  # logged for the workspace whose sign-in it was
        raise SamlError(E.wrong_connection, "posted to another connection's ACS",
                        {"expected": conn.connection_id, "received": connection_id}, connection=conn, request=req)
    try:
        if req.expires_at <= utcnow():
            _consume(req)
            raise SamlError(E.request_expired, "the sign-in request expired")
        if req.browser_binding_hash is not None and (
                not browser_id or hash_secret(browser_id) != req.browser_binding_hash):
            raise SamlError(E.other_browser, "browser binding cookie missing or different")
        if not summary["in_response_to"]:
            raise SamlError(E.unsolicited, "the response has no InResponseTo",
                            {"expected": req.request_id, "received": "(none)"})
        if summary["in_response_to"] != req.request_id:
            raise SamlError(E.in_response_to_mismatch, "InResponseTo differs from the stored request",
                            {"expected": req.request_id, "received": summary["in_response_to"]})
        if not (conn.idp_entity_id and conn.sso_url):
            raise SamlError(E.not_configured, "connection has no IdP configuration")
        response._settings = saml_settings(conn)  # no certificate: not_configured
        checks.validate_schema(response.document)
        path = f"/sso/saml/{conn.connection_id}/acs"
        try:
            response.is_valid(request_data(path, post={"SAMLResponse": saml_response}), req.request_id,
                              raise_exceptions=True)
        except ValidationError as exc:
            raise checks.library_error(exc, summary, conn, sp_urls(conn.connection_id), clock_skew()) from exc
        except Exception as exc:  # noqa: BLE001 - xmlsec/lxml errors inside validation
            raise SamlError(E.invalid, f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        checks.check_recipients(summary, sp_urls(conn.connection_id))
        checks.check_time_window(summary, clock_skew())
        try:
            nameid_data = response.get_nameid_data()
            attributes = response.get_attributes()
            assertion_id = response.get_assertion_id()
            session_limit = response.get_session_not_on_or_after()
        except Exception as exc:  # noqa: BLE001
            raise SamlError(E.invalid, f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        member = _use_once(req, conn, assertion_id, summary, redeemed.member)
    except SamlError as err:
        err.connection, err.request = conn, req
        raise
    return Assertion(
        connection=conn, request=req, nameid=(nameid_data.get("Value") or "").strip(),
        nameid_format=nameid_data.get("Format"), attributes=attributes, assertion_id=assertion_id,
        session_not_on_or_after=(dt.datetime.fromtimestamp(session_limit, dt.timezone.utc)
                                 if session_limit else None),
        summary=summary, claimed_member=member)


def _consume(req: SamlRequest) -> bool:
    """Delete the stored request; False if it was gone already."""
    return db.session.execute(_CONSUME_REQUEST, {"request_pk": req.id},
                              execution_options={"synchronize_session": False}).rowcount == 1


def _use_once(req: SamlRequest, conn: SsoConnection, assertion_id: str, summary: dict,
              member: Member | None) -> Member | None:
    """Remember the assertion in the replay cache and consume the request, or neither; and
    return `member` as it is now.

    The replay cache's unique index decides, at its insert: no look-up first that a
    concurrent POST could slip past (on PostgreSQL the second waits for the first to
    commit). Then the request is deleted; if a concurrent POST of another response
    consumed it first, this one is refused. The member was read before the response was
    validated: if their status has changed since (deactivated by SCIM meanwhile, say),
    their row is read again. PostgreSQL does it all in one statement (one round trip on
    every sign-in), which also locks the member's row until the commit, so that no change
    lands between this check and the sign-in; SQLite, which allows no DELETE inside a
    WITH, in three (and lets no other writer in once this transaction has written)."""
    limits = [t for t in (checks.parse_time(summary["not_on_or_after"]),
                          checks.parse_time(summary["scd_not_on_or_after"])) if t]
    row = {"workspace_id": conn.workspace_id, "issuer": (summary["issuer"] or conn.idp_entity_id or "")[:1024],
           "assertion_id": assertion_id[:256],
           "expires_at": (max(limits) if limits else utcnow() + REQUEST_TTL) + dt.timedelta(seconds=clock_skew())}
    member_pk = member.user.id if member is not None and member.user is not None else None
    try:
        if db.session.get_bind().dialect.name == "postgresql":
            deleted, status = db.session.execute(_REMEMBER_AND_CONSUME,
                                                 {**row, "request_pk": req.id, "member_pk": member_pk}).one()
            consumed = deleted == 1
        else:
            db.session.execute(_REMEMBER_ASSERTION, row)
            consumed = _consume(req)
            status = db.session.scalar(_MEMBER_STATUS, {"member_pk": member_pk}) if member_pk else None
    except IntegrityError as exc:
        db.session.rollback()
        raise SamlError(E.replay, f"assertion {assertion_id} already used") from exc
    if not consumed:
        raise SamlError(E.request_unknown, "the request was consumed concurrently")
    if member_pk is not None and status != member.user.status:
        try:
            db.session.refresh(member.user)
        except InvalidRequestError:  # deleted meanwhile
            return Member(member.email, None)
    return member


def purge_expired() -> int:
    """Housekeeping: expired requests and replay entries."""
    now = utcnow()
    n = db.session.execute(delete(SamlRequest).where(SamlRequest.expires_at < now - REQUEST_TTL)).rowcount
    n += db.session.execute(delete(SamlReplay).where(SamlReplay.expires_at < now)).rowcount
    return n


def configure_library(app) -> None:
    """python3-saml's clock drift is a class constant (process-wide): set it once
    from config; our own window check uses the same value and explains failures.
    Its schema check (always on in strict mode) and its XPaths get compiled-once caches."""
    checks.install_library_caches()
    OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT = int(app.config.get("SAML_CLOCK_SKEW_SECONDS", 120))
