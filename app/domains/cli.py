"""`flask --app wsgi domain add --workspace SLUG DOMAIN [--method dns|email] [--verified]`."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from app.cli import fail, require_workspace
from app.domains.service import INBOXES, DomainError, add_collision_message, add_domain
from app.extensions import db

domain_cli = AppGroup("domain", help="Manage authorized domains.")


@domain_cli.command("add")
@click.option("--workspace", "slug", required=True, help="The workspace's slug.")
@click.argument("name")
@click.option("--method", type=click.Choice(["dns", "email"]), default="dns", show_default=True)
@click.option("--inbox", type=click.Choice(INBOXES),
              default="admin", show_default=True, help="For --method email: who gets the link.")
@click.option("--verified", is_flag=True, help="Operator override: verified at once, without proof (audited).")
def add_command(slug, name, method, inbox, verified):
    """Add DOMAIN; prints `<domain> <status>`, and for DNS the record to publish."""
    workspace = require_workspace(slug)
    try:
        domain = add_domain(workspace, name, method, inbox=inbox, verified=verified)
        db.session.commit()
    except DomainError as exc:
        fail(str(exc))
    except IntegrityError:
        db.session.rollback()
        fail(add_collision_message(workspace.id, name))
    click.echo(f"{domain.name} {domain.status}")
    if domain.method == "dns" and domain.status == "pending":
        click.echo(f"{domain.record_name} TXT {domain.record_value}")
