"""Settings → Security → Provisioning: the SCIM base URL, the OAuth connection
(who connected, when, last used; revoke), static bearer tokens as an
alternative, and the SCIM request log."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import StringField
from wtforms.validators import DataRequired, Length, Regexp

from app import once
from app.auth.decorators import admin_required
from app.errors import abort_with
from app.extensions import db
from app.models import Workspace
from app.oauth import service
from app.scim import tokens as scim_tokens
from app.settings.sections import Section, register_section

bp = Blueprint("provisioning", __name__, url_prefix="/settings/security/provisioning")

LOG_PREVIEW = 10
LOG_PAGE_SIZE = 50


class TokenForm(FlaskForm):
    name = StringField("Token name", validators=[DataRequired("Give the token a name, e.g. “Entra ID”."),
                                                  Length(max=100),
                                                  Regexp(r"^[^\x00]*$", message="The name has a NUL character.")],
                       description="Where it will be used, so you know which one to revoke later.")


class ActionForm(FlaskForm):
    """A button that changes something: CSRF only."""


def scim_base_url() -> str:
    return current_app.config["BASE_URL"] + "/scim/v2"


def _active_tokens(workspace_id: int) -> list:
    return scim_tokens.list_tokens(workspace_id)


def _log_query(workspace_id: int):
    from app.models.scim import ScimRequestLog
    return select(ScimRequestLog).where(ScimRequestLog.workspace_id == workspace_id)


def section_context(workspace: Workspace) -> dict:
    from app.models.scim import ScimRequestLog
    log_rows = db.session.scalars(_log_query(workspace.id).order_by(ScimRequestLog.created_at.desc(),
                                                                    ScimRequestLog.id.desc()).limit(LOG_PREVIEW)).all()
    return {
        "scim_base_url": scim_base_url(),
        "connections": service.connections(workspace.id),
        "last_revocation": service.last_revocation(workspace.id),
        "tokens": _active_tokens(workspace.id),
        "log_rows": log_rows,
    }


def register_section_once() -> None:
    register_section(Section("provisioning", "Provisioning (SCIM)", "provisioning/_section.html",
                             context=section_context, order=30))


def _require_enterprise() -> Workspace:
    workspace = current_user.workspace
    if not workspace.is_enterprise:
        abort_with(403, f"Provisioning needs the Enterprise plan; {workspace.name} is on {workspace.plan_label}.")
    return workspace


def _back():
    return redirect(url_for("settings.security", _anchor="provisioning"), 303)


@bp.post("/oauth/<int:token_id>/revoke")
@admin_required
def revoke_connection(token_id: int):
    workspace = _require_enterprise()
    if not ActionForm().validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    if not service.revoke_connection(workspace.id, token_id, actor=current_user):
        abort_with(404, "That connection does not exist or was already revoked.")
    db.session.commit()
    flash("The OAuth connection is revoked. Okta can no longer provision until an admin clicks "
          "“Authenticate with Gatehouse” again.", "success")
    return _back()


@bp.post("/tokens")
@admin_required
def create_token():
    workspace = _require_enterprise()
    form = TokenForm()
    if not form.validate_on_submit():
        return _no_store(render_template("provisioning/token_new.html", form=form), 422)
    if not once.redeem("scim-token"):
        flash(once.REPEATED, "warning")
        return redirect(url_for("provisioning.new_token"), 303)
    try:
        _, secret = scim_tokens.create_token(workspace, form.name.data, actor=current_user)
    except scim_tokens.TokenError as exc:
        db.session.rollback()
        form.name.errors.append(str(exc))
        return _no_store(render_template("provisioning/token_new.html", form=form), 422)
    db.session.commit()
    # Shown once: never cached, never kept in htmx's history snapshot (hx-history="false" in the page).
    return _no_store(render_template("provisioning/token_created.html", name=form.name.data.strip(), secret=secret,
                                     scim_base_url=scim_base_url()), 200)


@bp.get("/tokens/new")
@admin_required
def new_token():
    _require_enterprise()
    return render_template("provisioning/token_new.html", form=TokenForm())


@bp.post("/tokens/<int:token_id>/revoke")
@admin_required
def revoke_token(token_id: int):
    workspace = _require_enterprise()
    if not ActionForm().validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    try:
        scim_tokens.revoke_token(workspace.id, token_id, actor=current_user)
    except scim_tokens.TokenError:
        abort_with(404, "That token does not exist in this workspace.")
    db.session.commit()
    flash("The token is revoked; requests that use it are refused from now on.", "success")
    return _back()


@bp.get("/log")
@admin_required
def request_log():
    workspace = _require_enterprise()
    from app.models.scim import ScimRequestLog
    try:
        page = max(1, min(int(request.args.get("page", 1)), 100000))
    except ValueError:
        page = 1
    query = _log_query(workspace.id)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.order_by(ScimRequestLog.created_at.desc(), ScimRequestLog.id.desc())
                              .limit(LOG_PAGE_SIZE).offset((page - 1) * LOG_PAGE_SIZE)).all()
    return render_template("provisioning/log.html", rows=rows, total=total, page=page, page_size=LOG_PAGE_SIZE)


def _no_store(body: str, status: int):
    response = make_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
