"""`flask scim-token create --workspace SLUG [--name NAME]`: prints only the token."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.cli import fail, note, require_workspace
from app.extensions import db

scim_token_cli = AppGroup("scim-token", help="Manage SCIM bearer tokens.")


@scim_token_cli.command("create")
@click.option("--workspace", "slug", required=True, help="Workspace slug.")
@click.option("--name", default="SCIM token", show_default=True, help="A name to recognise the token by.")
def create_command(slug: str, name: str):
    """Create a SCIM bearer token; prints it once (only its hash is kept)."""
    from app.scim.tokens import TokenError, create_token
    workspace = require_workspace(slug)
    try:
        token, secret = create_token(workspace, name, actor=None, actor_label="operator (CLI)")
        db.session.commit()
    except TokenError as exc:
        fail(str(exc))
    click.echo(secret)
    note(f"SCIM token {token.name!r} created for {workspace.slug}; SCIM base URL: "
         f"{current_app.config['BASE_URL']}/scim/v2")
