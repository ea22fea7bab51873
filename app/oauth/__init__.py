"""OAuth 2.0 for SCIM ("Authenticate with Gatehouse") and the Provisioning
section of Settings → Security."""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from app.errors import api_error_renderers
    from app.members.purge import register_purge_step
    from app.oauth import cli, provisioning, routes, service
    from app.oauth.server import create_server

    app.extensions["gatehouse_oauth"] = create_server(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(routes.metadata_bp)
    app.register_blueprint(provisioning.bp)
    app.cli.add_command(cli.oauth_client_cli)
    for path in ("/oauth/token", "/oauth/revoke"):
        api_error_renderers[path] = routes.json_error
    provisioning.register_section_once()
    register_purge_step("oauth_approvals", service.forget_approver)
    _register_scim_verifier()


def _register_scim_verifier() -> None:
    """OAuth access tokens authenticate SCIM requests, beside the static tokens."""
    from app.oauth.service import verify_access_token
    from app.scim.auth import ScimPrincipal, ScimWorkspace, register_bearer_verifier

    def verify(bearer: str):
        found = verify_access_token(bearer)
        if found is None:
            return None
        return ScimPrincipal(found.workspace_id, found.label,
                             ScimWorkspace(found.workspace_id, found.plan, found.default_role))

    register_bearer_verifier(verify)
