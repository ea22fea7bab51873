"""Operator commands. stdout carries only the requested values, one per line;
anything for a human goes to stderr; on error: exit 1, one line on stderr,
nothing written (see README, "CLI")."""
from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from app.extensions import db
from app.security import new_secret


class CliError(click.ClickException):
    """One-line reason on stderr, exit 1."""

    def show(self, file=None):
        click.echo(f"Error: {self.message}", err=True)


def fail(message: str):
    db.session.rollback()
    raise CliError(message)


def note(message: str) -> None:
    click.echo(message, err=True)


workspace_cli = AppGroup("workspace", help="Manage workspaces.")


@workspace_cli.command("create")
@click.argument("name")
@click.option("--plan", type=click.Choice(["free", "business", "enterprise"]), required=True)
@click.option("--admin-email", required=True)
@click.option("--admin-password", default=None, help="Generated and shown on stderr when omitted.")
def create_workspace_command(name, plan, admin_email, admin_password):
    """Create a workspace and its first admin; prints the slug."""
    from app.workspaces.service import WorkspaceError, create_workspace
    generated = admin_password is None
    password = admin_password or new_secret(12)
    try:
        workspace = create_workspace(name, plan, admin_email, password)
        db.session.commit()
    except WorkspaceError as exc:
        fail(str(exc))
    click.echo(workspace.slug)
    if generated:
        note(f"Admin password (shown once): {password}")


@click.command("seed-demo")
def seed_demo_command():
    """Create the demo workspace when the database is empty."""
    from app.seed import DEMO_EMAIL, DEMO_PASSWORD, seed_demo
    created = seed_demo()
    db.session.commit()
    note("Demo workspace created." if created else "Database not empty: demo not seeded.")
    note(f"Demo admin: {DEMO_EMAIL} / {DEMO_PASSWORD}")


def register_cli(app: Flask) -> None:
    app.cli.add_command(workspace_cli)
    app.cli.add_command(seed_demo_command)


def require_workspace(slug: str):
    from app.workspaces.service import get_by_slug
    workspace = get_by_slug(slug)
    if workspace is None:
        fail(f"no workspace with slug {slug!r}")
    return workspace


__all__ = ["CliError", "fail", "note", "require_workspace", "sys"]
