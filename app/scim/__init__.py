"""SCIM 2.0 provisioning (RFC 7643/7644) under /scim/v2.

Layers: schema.py / filters.py / patch.py / resources.py speak the protocol;
users.py / groups.py / tokens.py / requestlog.py hold the rules and storage;
web.py and routes.py are the thin Flask adapter; auth.py says who is calling.
"""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from app.errors import api_error_renderers
    from app.members.purge import register_purge_step
    from app.scim import cli, purge, web
    from app.scim import routes  # noqa: F401 - its endpoints register themselves on web.bp

    app.register_blueprint(web.bp)
    api_error_renderers["/scim/v2"] = web.render_error
    app.cli.add_command(cli.scim_token_cli)
    register_purge_step("scim_request_log", purge.request_log_entries)
    register_purge_step("scim_group_memberships", purge.group_memberships)
    register_purge_step("scim_detachment", purge.detachment)
    # No step for the stored userName: it goes with the user row (ON DELETE CASCADE), after
    # the purge's final pass, which still needs it to find log entries naming them by it.
