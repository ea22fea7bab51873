"""`flask --app wsgi sso-connection create --workspace SLUG --idp KIND --metadata FILE_OR_URL [--enable]`."""
from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from app.cli import fail, note, require_workspace
from app.extensions import db
from app.members.admin_rule import LastAdminError
from app.models import utcnow
from app.models.sso import IdpKind
from app.sso import connections
from app.sso.connections import ConnectionError_
from app.sso.metadata import MetadataError, fetch_metadata, parse_metadata

sso_cli = AppGroup("sso-connection", help="Manage SAML SSO connections.")


@sso_cli.command("create")
@click.option("--workspace", "slug", required=True, help="The workspace's slug.")
@click.option("--idp", type=click.Choice([k.value for k in IdpKind]), required=True)
@click.option("--metadata", "source", required=True, help="IdP metadata: a file path or an https URL.")
@click.option("--enable", is_flag=True, help="Operator override: turn SSO on without the test step (audited).")
def create_command(slug, idp, source, enable):
    """Create the workspace's SSO connection; prints its Connection ID."""
    workspace = require_workspace(slug)
    if not workspace.is_enterprise:
        fail("single sign-on needs the Enterprise plan")
    existing = connections.live_connection(workspace.id)
    if existing is not None:
        fail(f"workspace {slug!r} already has an SSO connection ({existing.connection_id})")
    is_url = source.lower().startswith(("https://", "http://"))
    try:
        if is_url:
            xml = fetch_metadata(source, production=current_app.config["PRODUCTION"])
        else:
            path = Path(source)
            if not path.is_file():
                fail(f"metadata file not found: {source}")
            xml = path.read_bytes()
        parse_metadata(xml)  # refuse bad metadata before writing anything
        conn = connections.start_setup(workspace, idp, actor=None)
        conn = connections.configure_from_xml(workspace.id, xml, actor=None, source="metadata")
        if is_url:
            conn.metadata_url, conn.metadata_status, conn.metadata_fetched_at = source, "ok", utcnow()
        if enable:
            connections.enable(workspace.id, actor=None, override=True)
            note("SSO is on (operator override, without a test login).")
        db.session.commit()
    except MetadataError as exc:
        fail(f"metadata: {exc}")
    except (ConnectionError_, LastAdminError) as exc:
        fail(str(exc))
    click.echo(conn.connection_id)
