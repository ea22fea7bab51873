"""SAML endpoints (/sso/saml/<cid>/login, /acs, /metadata) and the
break-glass sign-in. Views are thin: the protocol is in app.sso.saml, the
rules in app.sso.signin / app.sso.policy / app.sso.recovery."""
from __future__ import annotations

import re

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.exceptions import NotFound

from app.audit.service import record
from app.auth.sessions import start_session
from app.extensions import csrf, db, limiter
from app.models import User, Workspace
from app.models.sso import CONNECTION_ID_PATTERN
from app.sso import browser, connections, recovery, saml, signin, sp
from app.sso.errors import SamlError, SamlErrorCode as E
from app.sso.forms import ActionForm, RecoverySignInForm
from app.urls import safe_next

bp = Blueprint("sso", __name__)
_CID = re.compile(CONNECTION_ID_PATTERN)


def _connection_or_404(cid: str):
    conn = connections.by_connection_id(cid) if _CID.match(cid) else None
    if conn is None:
        raise NotFound()
    return conn


@bp.route("/sso/saml/<cid>/login", methods=["GET", "POST"])
@limiter.limit("60 per minute")
def login(cid: str):
    """SP-initiated start: /login's home realm discovery and the Okta bookmark app land here.
    A start another site caused is confirmed first (app.sso.browser), by a POST back here."""
    conn = _connection_or_404(cid)
    if not conn.is_on:
        return _refusal_page(SamlError(E.connection_off))
    if not conn.is_configured:
        return _refusal_page(SamlError(E.not_configured))
    next_url = safe_next(request.values.get("next")) or safe_next(session.pop("next", None))
    if not browser.started_here() and conn.workspace_id not in browser.known_workspaces():
        return render_template("sso/continue.html", conn=conn, workspace=db.session.get(Workspace, conn.workspace_id),
                               next_url=next_url, form=ActionForm())
    browser_id, is_new = browser.browser_id()
    try:
        started = saml.start_login(conn, next_url=next_url, browser_id=browser_id)
    except SamlError as err:
        return _refusal_page(err)
    db.session.commit()
    return browser.with_browser_cookie(redirect(started.redirect_url, 303), browser_id, is_new)


@bp.post("/sso/saml/<cid>/acs")
@csrf.exempt  # the IdP posts here cross-site; the response's signature and the stored request protect it
@limiter.limit("600 per minute")  # per address: a company NAT signs many people in
def acs(cid: str):
    if not _CID.match(cid):
        raise NotFound()
    try:
        assertion = saml.consume_response(cid, request.form.get("SAMLResponse"), request.form.get("RelayState"),
                                          request.cookies.get(saml.BROWSER_COOKIE))
    except SamlError as err:
        return _refused(cid, err)
    req, conn = assertion.request, assertion.connection
    if req.is_test:
        return _test_result(cid, assertion)
    try:
        if not conn.is_on:
            raise SamlError(E.connection_off, "SSO was turned off during the sign-in")
        # The SSO policy (app.sso.policy) in full: this connection is on, the
        # email's domain is authorized (checked in resolve_user) and the member
        # is active — so sign_in_method(user) is `sso`, without asking again.
        result = signin.resolve_user(assertion, dry_run=False)
    except SamlError as err:
        err.connection, err.request, err.email = conn, req, err.email or assertion.nameid
        return _refused(cid, err, summary=assertion.summary)
    user = result.user
    start_session(user, method="sso", not_after=assertion.session_not_on_or_after)
    record(user.workspace_id, "auth.signed_in", actor=user, target=user, method="sso",
           connection_id=conn.connection_id)
    signin.log_attempt(conn.connection_id, conn.workspace_id, outcome="success", email=result.email, user=user,
                       summary={"issuer": assertion.summary.get("issuer"),
                                "assertion_id": assertion.assertion_id})
    response = browser.remember_workspace(redirect(safe_next(req.next_url) or url_for("main.library"), 303),
                                          conn.workspace_id)  # before the commit expires `conn`: no reload
    db.session.commit()
    return response


def _test_result(cid: str, assertion):
    """A test login: never signs in; records what was received and unlocks the switch."""
    req, conn = assertion.request, assertion.connection
    identity = signin.received_identity(assertion)
    try:
        if conn.metadata_url_unproven:  # a new metadata URL, set while the admin was at the IdP
            raise SamlError(E.metadata_not_fetched, f"metadata URL {conn.metadata_url} has not delivered yet")
        result = signin.resolve_user(assertion, dry_run=True)
    except SamlError as err:
        err.connection, err.request, err.email = conn, req, err.email or assertion.nameid
        err.details = {**err.details, "received_identity": identity}
        return _refused(cid, err, summary=assertion.summary)
    actor = db.session.get(User, req.started_by_id) if req.started_by_id else None
    live = connections.mark_tested(conn, actor=actor)
    log_id = signin.log_attempt(live.connection_id, live.workspace_id, outcome="success", email=result.email,
                                user=result.user, is_test=True,
                                details={"received_identity": identity, "would_create": result.created},
                                summary={"issuer": assertion.summary.get("issuer")})
    db.session.commit()
    return redirect(url_for("sso_admin.test_result", log_id=log_id), 303)


def _refused(cid: str, err: SamlError, summary: dict | None = None):
    conn = err.connection or signin.connection_for_log(cid)
    is_test, log_id = bool(err.request is not None and err.request.is_test), None
    if conn is not None:
        log_id = signin.log_attempt(conn.connection_id, conn.workspace_id, outcome="refused", email=err.email,
                                    is_test=is_test, error=err, summary=summary)
        if is_test:
            actor = db.session.get(User, err.request.started_by_id) if err.request.started_by_id else None
            record(conn.workspace_id, "sso.connection_tested", actor=actor, target=conn, outcome="failed",
                   error=err.code.value)
    db.session.commit()  # after validation, a refusal keeps the request consumed and the assertion used
    if log_id is not None and is_test:
        return redirect(url_for("sso_admin.test_result", log_id=log_id), 303)
    return _refusal_page(err)


def _refusal_page(err: SamlError):
    login_url = url_for("auth.login")
    template = "sso/unsolicited.html" if err.code is E.unsolicited else "sso/refused.html"
    return render_template(template, error=err, login_url=login_url), err.status


@bp.get("/sso/saml/<cid>/metadata")
def metadata(cid: str):
    conn = _connection_or_404(cid)
    return sp.sp_metadata_xml(conn), 200, {"Content-Type": "application/samlmetadata+xml; charset=utf-8",
                                           "Cache-Control": "public, max-age=300"}


@bp.route("/sso/recovery", methods=["GET", "POST"])
@limiter.limit("10 per 15 minutes", methods=["POST"],
               error_message="Too many recovery attempts. Wait 15 minutes and try again.")
def recovery_sign_in():
    """Break-glass: an admin signs in with password + a one-time recovery code."""
    form = RecoverySignInForm()
    if not form.validate_on_submit():
        return render_template("sso/recovery_sign_in.html", form=form), 422 if request.method == "POST" else 200
    try:
        user = recovery.sign_in_with_code(form.email.data, form.password.data, form.code.data)
    except recovery.RecoveryRefused as exc:
        db.session.rollback()
        form.code.errors.append(str(exc))
        return render_template("sso/recovery_sign_in.html", form=form), 422
    start_session(user, method="recovery")
    db.session.commit()
    return redirect(url_for("main.library"), 303)
