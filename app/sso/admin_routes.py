"""Settings → Security → Single Sign-On: the admin's self-serve setup.

Each form posts here; HTMX requests get the re-rendered section (422 with the
error beside the form), plain posts the whole page."""
from __future__ import annotations

import functools

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, url_for
from flask_login import current_user

from app import once
from app.auth.decorators import admin_required
from app.auth.policy import can_sign_in
from app.auth.sessions import keep_this_session
from app.errors import abort_with
from app.extensions import db
from app.htmx import wants_fragment
from app.members.admin_rule import LastAdminError
from app.models import SamlLoginLog
from app.scoping import get_scoped_or_404
from app.sso import browser, connections, recovery, saml, signin
from app.sso.connections import ConnectionError_, untested_metadata_message
from app.sso.errors import SamlError, describe
from app.sso.forms import (ActionForm, CertificateForm, EnableForm, IdpForm, JitForm, ManualForm, MetadataUrlForm,
                           MetadataXmlForm)
from app.sso.metadata import MetadataError
from app.sso.section import render_section

bp = Blueprint("sso_admin", __name__, url_prefix="/settings/security/sso")


def enterprise_admin(view):
    @functools.wraps(view)
    @admin_required
    def wrapped(*args, **kwargs):
        if not current_user.workspace.is_enterprise:
            abort_with(403, "Single sign-on needs the Enterprise plan.")
        return view(*args, **kwargs)
    return wrapped


def _button(action, area: str):
    """A one-click button of the section: the form's CSRF, the service, the section again
    (a refusal is shown in `area` of the section)."""
    if not ActionForm().validate_on_submit():
        return _invalid(area, None, "The form expired; reload the page.", 400)
    try:
        action(current_user.workspace_id, actor=current_user)
    except ConnectionError_ as exc:
        return _invalid(area, None, str(exc))
    return _done()


def _done():
    db.session.commit()
    if wants_fragment():
        return render_section(current_user.workspace)
    return redirect(url_for("settings.security") + "#sso", 303)


def _invalid(key: str, form=None, message: str | None = None, status: int = 422):
    db.session.rollback()
    forms = {key: form} if form is not None else {}
    return render_section(current_user.workspace, status, error={key: message} if message else {}, forms=forms)


@bp.get("/section")
@enterprise_admin
def section():
    """The section itself: HTMX polls it while a metadata fetch runs."""
    return render_section(current_user.workspace)


@bp.post("/idp")
@enterprise_admin
def choose_idp():
    form = IdpForm()
    if not form.validate_on_submit():
        return _invalid("idp", form)
    connections.start_setup(current_user.workspace, form.idp.data, actor=current_user)
    return _done()


@bp.post("/metadata-url")
@enterprise_admin
def metadata_url():
    form = MetadataUrlForm()
    if not form.validate_on_submit():
        return _invalid("url", form)
    url = form.metadata_url.data.strip()
    if current_app.config["PRODUCTION"] and not url.lower().startswith("https://"):
        return _invalid("url", form, "The metadata URL must use https.")
    try:
        conn = connections.set_metadata_url(current_user.workspace_id, url, actor=current_user)
    except ConnectionError_ as exc:
        return _invalid("url", form, str(exc))
    db.session.flush()
    conn_pk = conn.id
    response = _done()
    from jobs.sso import enqueue_metadata_fetch
    enqueue_metadata_fetch(conn_pk)
    return response


@bp.post("/metadata-xml")
@enterprise_admin
def metadata_xml():
    form = MetadataXmlForm()
    if not form.validate_on_submit():
        return _invalid("xml", form)
    upload = form.metadata_file.data
    xml = upload.read(512 * 1024 + 1) if upload else (form.metadata_xml.data or "").encode()
    if not xml.strip():
        return _invalid("xml", form, "Choose the metadata file or paste its XML.")
    try:
        connections.configure_from_xml(current_user.workspace_id, xml, actor=current_user)
    except (MetadataError, ConnectionError_) as exc:
        return _invalid("xml", form, str(exc))
    return _done()


@bp.post("/manual")
@enterprise_admin
def manual():
    form = ManualForm()
    if not form.validate_on_submit():
        return _invalid("manual", form)
    try:
        connections.configure_manually(current_user.workspace_id, entity_id=form.entity_id.data,
                                       sso_url=form.sso_url.data, certificate_pem=form.certificate.data,
                                       actor=current_user)
    except (MetadataError, ConnectionError_) as exc:
        return _invalid("manual", form, str(exc))
    return _done()


@bp.post("/certificates")
@enterprise_admin
def add_certificate():
    form = CertificateForm()
    if not form.validate_on_submit():
        return _invalid("cert", form)
    try:
        connections.add_certificate(current_user.workspace_id, form.certificate.data, actor=current_user)
    except (MetadataError, ConnectionError_) as exc:
        return _invalid("cert", form, str(exc))
    return _done()


@bp.post("/certificates/<fingerprint>/remove")
@enterprise_admin
def remove_certificate(fingerprint: str):
    if not ActionForm().validate_on_submit():
        return _invalid("cert", None, "The form expired; reload the page.", 400)
    try:
        connections.remove_certificate(current_user.workspace_id, fingerprint, actor=current_user)
    except ConnectionError_ as exc:
        return _invalid("cert", None, str(exc))
    return _done()


@bp.post("/jit")
@enterprise_admin
def jit():
    form = JitForm()
    if not form.validate_on_submit():
        return _invalid("jit", form)
    try:
        connections.set_jit(current_user.workspace_id, enabled=bool(form.jit_enabled.data), role=form.jit_role.data,
                            actor=current_user)
    except ConnectionError_ as exc:
        return _invalid("jit", form, str(exc))
    return _done()


@bp.post("/draft/discard")
@enterprise_admin
def discard_draft():
    return _button(connections.discard_draft, "draft")


@bp.post("/cancel")
@enterprise_admin
def cancel_setup():
    return _button(connections.cancel_setup, "toggle")


@bp.post("/test")
@enterprise_admin
def start_test():
    """SP-initiated login marked as a test, of the draft if there is one. A full
    navigation (not HTMX): the browser goes to the IdP and comes back."""
    if not ActionForm().validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    workspace_id = current_user.workspace_id
    conn = connections.staged_connection(workspace_id) or connections.live_connection(workspace_id)
    if conn is None or not conn.is_configured:
        return _invalid("test", None, "Give Gatehouse your IdP's metadata before testing.")
    if conn.metadata_url_unproven:
        return _invalid("test", None, untested_metadata_message(conn))
    browser_id, is_new = browser.browser_id()
    try:
        started = saml.start_login(conn, is_test=True, started_by=current_user, browser_id=browser_id)
    except SamlError as err:
        return _invalid("test", None, err.reason)
    db.session.commit()
    response = redirect(started.redirect_url, 303)
    if wants_fragment():  # htmx would follow the redirect by XHR: make it navigate instead
        response = make_response("", 204)
        response.headers["HX-Redirect"] = started.redirect_url
    return browser.with_browser_cookie(response, browser_id, is_new)


@bp.get("/tests/<int:log_id>")
@enterprise_admin
def test_result(log_id: int):
    entry = get_scoped_or_404(SamlLoginLog, current_user.workspace_id, log_id)
    title, fix = describe(entry.error_code) if entry.error_code else (None, None)
    live = connections.live_connection(current_user.workspace_id)
    return render_template("sso/test_result.html", entry=entry, title=title, fix=fix, live=live)


@bp.get("/preview")
@enterprise_admin
def preview():
    """Who turning SSO on affects, by name, before the admin confirms."""
    live = connections.live_connection(current_user.workspace_id)
    if live is None:
        return redirect(url_for("settings.security"), 303)
    affected = connections.lockout_preview(current_user.workspace_id)
    return render_template("sso/preview.html", live=live, affected=affected, form=EnableForm(formdata=None))


@bp.post("/enable")
@enterprise_admin
def enable():
    form = EnableForm()
    live = connections.live_connection(current_user.workspace_id)
    affected = connections.lockout_preview(current_user.workspace_id)
    if not form.validate_on_submit():
        return render_template("sso/preview.html", live=live, affected=affected, form=form), 422
    try:
        connections.enable(current_user.workspace_id, actor=current_user)
    except (ConnectionError_, LastAdminError) as exc:
        db.session.rollback()
        return render_template("sso/preview.html", live=live, affected=affected, form=form, error=str(exc)), 422
    admin = current_user._get_current_object()
    db.session.flush()  # the sign-in policy reads the connection's new state from the database
    if can_sign_in(admin):  # an admin SSO now blocks (outside the authorized domains) is signed out too
        keep_this_session(admin)
    codes = recovery.generate(current_user) if recovery.unused_count(current_user) == 0 else None
    db.session.commit()
    if codes:
        return _show_codes(codes, just_enabled=True)
    return redirect(url_for("settings.security") + "#sso", 303)


@bp.post("/disable")
@enterprise_admin
def disable():
    return _button(connections.disable, "toggle")


@bp.post("/recovery-codes")
@enterprise_admin
def recovery_codes():
    if not ActionForm().validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    live = connections.live_connection(current_user.workspace_id)
    if live is None or not live.is_on:
        return _invalid("recovery", None, "Recovery codes are for when SSO is on.")
    if not once.redeem("recovery-codes"):
        flash(once.REPEATED, "warning")
        return redirect(url_for("settings.security", _anchor="sso"), 303)
    codes = recovery.generate(current_user)
    db.session.commit()
    return _show_codes(codes)


def _show_codes(codes: list[str], just_enabled: bool = False):
    response = make_response(render_template("sso/recovery_codes.html", codes=codes, just_enabled=just_enabled))
    response.headers["Cache-Control"] = "no-store"  # shown once: never cached, never in history
    return response


@bp.get("/log")
@enterprise_admin
def login_log():
    entries = signin.recent_log(current_user.workspace_id, limit=100)
    return render_template("sso/log.html", entries=entries, describe=describe)
