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
  then consumed (single use: app.sso.redemption) and must not be expired;
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
from sqlalchemy import delete

from app.emails import InvalidEmail, normalize_address
from app.extensions import db
from app.models import SamlReplay, SamlRequest, SsoConnection, User, utcnow
from app.security import hash_secret, new_secret
from app.sso import checks, redemption
from app.sso.errors import SamlError, SamlErrorCode as E
from app.sso.redemption import REQUEST_TTL, Member  # noqa: F401 (Member: part of this module's interface)
from app.sso.sp import EMAIL_FORMAT, clock_skew, request_data, saml_settings, sp_urls

EMAIL_LIKE_FORMATS = {EMAIL_FORMAT, "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"}
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


def _claimed_email(nameid: str | None) -> str | None:
    try:
        return normalize_address(nameid) if nameid else None
    except InvalidEmail:
        return None


def consume_response(connection_id: str, saml_response: str | None, relay_state: str | None,
                     browser_id: str | None) -> Assertion:
    """Validate a posted response end to end; raise SamlError (typed) on any refusal.

    The caller commits: the consumed request and the replay-cache row go with the
    session, or with the log row of a refusal that came after validation; a refusal
    before or during validation uses neither up (app.sso.redemption)."""
    response = _parse(saml_response)
    summary = checks.summarize(response.document)
    now = utcnow()
    redeemed = redemption.redeem(relay_state, _claimed_email(summary["nameid"]), summary, now)
    if redeemed is None:
        if not summary["in_response_to"]:
            raise SamlError(E.unsolicited, "no InResponseTo and no known RelayState")
        raise SamlError(E.request_unknown, "RelayState unknown, expired or already used",
                        {"received": summary["in_response_to"]})
    req, conn = redeemed.request, redeemed.connection
    try:
        try:
            nameid_data, attributes, assertion_id, session_limit = _validate(
                response, saml_response, summary, redeemed, connection_id, browser_id, now)
        except SamlError as err:
            if err.code is E.request_expired:
                redemption.consume_expired(redeemed)  # used up all the same
            else:  # a response refused before it proved valid uses nothing up
                redemption.release(redeemed)
            raise
        member = redemption.use_once(redeemed, assertion_id, summary)
    except SamlError as err:
        err.connection, err.request = conn, req  # logged for the workspace whose sign-in it was
        raise
    return Assertion(
        connection=conn, request=req, nameid=(nameid_data.get("Value") or "").strip(),
        nameid_format=nameid_data.get("Format"), attributes=attributes, assertion_id=assertion_id,
        session_not_on_or_after=(dt.datetime.fromtimestamp(session_limit, dt.timezone.utc)
                                 if session_limit else None),
        summary=summary, claimed_member=member)


def _validate(response: OneLogin_Saml2_Response, saml_response: str, summary: dict,
              redeemed: redemption.Redeemed, connection_id: str, browser_id: str | None, now: dt.datetime):
    """Our checks and python3-saml's, in order; the valid assertion's NameID, attributes, id and
    SessionNotOnOrAfter."""
    req, conn = redeemed.request, redeemed.connection
    if conn.connection_id != connection_id:
        raise SamlError(E.wrong_connection, "posted to another connection's ACS",
                        {"expected": conn.connection_id, "received": connection_id})
    if req.expires_at <= now:
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
        return (response.get_nameid_data(), response.get_attributes(), response.get_assertion_id(),
                response.get_session_not_on_or_after())
    except Exception as exc:  # noqa: BLE001
        raise SamlError(E.invalid, f"{type(exc).__name__}: {str(exc)[:200]}") from exc


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
