from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

from app.auth.decorators import admin_required
from app.settings.sections import security_sections

bp = Blueprint("settings", __name__, url_prefix="/settings")

# What each locked section would need, for the plan gate.
LOCKED_FEATURES = [
    ("Single sign-on (SAML)", "Members sign in through Okta, Microsoft Entra ID, Google Workspace or any SAML 2.0 provider."),
    ("Authorized domains", "Prove your company owns its email domains, so SSO applies to everyone on them."),
    ("Provisioning (SCIM)", "Create, update and deactivate members automatically from your identity provider."),
]


@bp.get("")
@admin_required
def index():
    return redirect(url_for("settings.security"))


@bp.get("/security")
@admin_required
def security():
    workspace = current_user.workspace
    sections = []
    if workspace.is_enterprise:
        sections = [(s, s.context(workspace)) for s in security_sections()]
    return render_template("settings/security.html", workspace=workspace, sections=sections,
                           locked_features=LOCKED_FEATURES)
