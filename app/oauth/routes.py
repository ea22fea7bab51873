"""/oauth/authorize (the consent page), /oauth/token and /oauth/revoke.

The consent page is a browser page (CSRF-protected, signs the admin in first);
the token and revocation endpoints are machine endpoints authenticated by the
client's secret (CSRF-exempt) and answer OAuth JSON errors.
"""
from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from app.extensions import csrf, db
from app.oauth import service
from app.oauth.server import WorkspaceGrant

bp = Blueprint("oauth", __name__, url_prefix="/oauth")


def _server():
    return current_app.extensions["gatehouse_oauth"]


class ConsentForm(FlaskForm):
    """Allow / Cancel on the consent page: CSRF only, the decision is the button."""


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    server = _server()
    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        return _authorization_error(server, error)
    if not current_user.is_authenticated:
        # Keep the whole authorize URL: the sign-in (password or SSO) comes back here.
        return redirect(url_for("auth.login", next=request.full_path))
    refusal = service.approval_refusal(current_user)
    if refusal:
        return render_template("oauth/refused.html", message=refusal, client=grant.client), 403
    form = ConsentForm()
    if request.method == "GET":
        return render_template("oauth/consent.html", form=form, client=grant.client, workspace=current_user.workspace,
                               scopes=(grant.request.scope or "").split(), redirect_uri=grant.redirect_uri)
    if not form.validate_on_submit():
        return render_template("oauth/consent.html", form=form, client=grant.client, workspace=current_user.workspace,
                               scopes=(grant.request.scope or "").split(), redirect_uri=grant.redirect_uri,
                               expired=True), 400
    grantor = None
    if request.form.get("decision") == "allow":
        grantor = WorkspaceGrant(current_user.workspace_id, current_user.id, current_user.email)
    response = server.create_authorization_response(grant=grant, grant_user=grantor)
    db.session.commit()
    return response


def _authorization_error(server, error: OAuth2Error):
    if getattr(error, "redirect_uri", None):
        # The client and its redirect URI are known good: tell the client (RFC 6749 §4.1.2.1).
        return server.handle_error_response(None, error)
    # Never redirect to an unverified URI: explain on our own page.
    return render_template("oauth/error.html", error=error.error, description=error.get_error_description()), 400


def _machine_endpoint(respond):
    """Run an Authlib endpoint; commit only what a successful call wrote, but keep
    security revocations (a replayed refresh token or code) even when it failed."""
    try:
        response = respond()
    except OAuth2Error as error:  # e.g. insecure transport, raised before Authlib's own handling
        response = _server().handle_error_response(None, error)
    except UnicodeDecodeError:  # Basic credentials that are not UTF-8: Authlib decodes them unguarded
        response = _server().handle_error_response(None, InvalidClientError(status_code=401))
    if response.status_code == 200:
        db.session.commit()
    else:
        db.session.rollback()
    if service.apply_flagged_revocations():
        db.session.commit()
    return response


@bp.post("/token")
@csrf.exempt
def token():
    return _machine_endpoint(lambda: _server().create_token_response())


@bp.post("/revoke")
@csrf.exempt
def revoke():
    return _machine_endpoint(lambda: _server().create_endpoint_response("revocation"))


def json_error(status: int, message: str):
    """Errors outside Authlib (405, 413, 500) on the machine endpoints, as OAuth JSON."""
    error = "invalid_request" if status < 500 else "server_error"
    response = jsonify(error=error, error_description=message)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


metadata_bp = Blueprint("oauth_metadata", __name__)


@metadata_bp.get("/.well-known/oauth-authorization-server")
def metadata():
    """RFC 8414 metadata, so a client can be configured from one URL."""
    from app.models.oauth import CLIENT_AUTH_METHODS, SUPPORTED_SCOPES
    base = current_app.config["BASE_URL"]
    return jsonify(
        issuer=base,
        authorization_endpoint=base + url_for("oauth.authorize"),
        token_endpoint=base + url_for("oauth.token"),
        revocation_endpoint=base + url_for("oauth.revoke"),
        scopes_supported=list(SUPPORTED_SCOPES),
        response_types_supported=["code"],
        grant_types_supported=["authorization_code", "refresh_token"],
        token_endpoint_auth_methods_supported=list(CLIENT_AUTH_METHODS),
        revocation_endpoint_auth_methods_supported=list(CLIENT_AUTH_METHODS),
        code_challenge_methods_supported=["S256"],
    )
