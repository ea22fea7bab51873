"""SAML single sign-on: self-serve connections (Settings → Security), the
SP-initiated login and hardened ACS under /sso/saml/<cid>/, enforcement and
home realm discovery for /login, break-glass recovery codes, the login log."""
from __future__ import annotations

import os

from flask import Flask


def register(app: Flask) -> None:
    from app.auth.policy import register_sso_policy
    from app.auth.service import register_home_realm_discovery
    from app.members.purge import register_purge_step
    from app.settings.sections import Section, register_section
    from app.sso import admin_routes, policy, routes, saml
    from app.sso.cli import sso_cli
    from app.sso.purge import delete_login_log

    # Clock skew allowed between the IdP and us (NotBefore/NotOnOrAfter), in seconds.
    app.config.setdefault("SAML_CLOCK_SKEW_SECONDS", int(os.environ.get("SAML_CLOCK_SKEW_SECONDS", "120")))
    saml.configure_library(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(admin_routes.bp)
    app.cli.add_command(sso_cli)
    register_section(Section("sso", "Single sign-on", "sso/_section.html", _section_context, order=10))
    register_sso_policy(policy.sso_policy)
    register_home_realm_discovery(policy.home_realm)
    register_purge_step("saml_login_log", delete_login_log)


def _section_context(workspace):
    from app.sso.section import context
    return context(workspace)
