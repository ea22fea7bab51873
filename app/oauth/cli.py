"""`flask oauth-client ...`: register the OAuth client Okta uses (one for every customer)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from app.cli import fail, note
from app.extensions import db
from app.oauth import clients

oauth_client_cli = AppGroup("oauth-client", help="Manage OAuth clients (Okta's \"Authenticate with Gatehouse\").")


@oauth_client_cli.command("create")
@click.option("--name", required=True, help="A name for the client, e.g. okta.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="A callback URL, matched exactly; repeat for each of Okta's documented callback URLs.")
def create_client_command(name: str, redirect_uris: tuple[str, ...]):
    """Register a client; prints `client_id=<id>` and `client_secret=<secret>`.

    The secret is shown once and stored hashed. Re-running with an existing
    --name fails and changes nothing (the secret Okta holds must not change
    under every customer's feet): add callback URLs to an existing client with
    `oauth-client add-redirect-uri --name NAME --redirect-uri URI`.
    """
    try:
        client, secret = clients.create_client(name, list(redirect_uris))
        db.session.commit()
    except clients.OAuthClientError as exc:
        fail(str(exc))
    click.echo(f"client_id={client.client_id}")
    click.echo(f"client_secret={secret}")
    note("The client secret is shown once; give it to Okta (OIN submission) and keep no other copy.")


@oauth_client_cli.command("add-redirect-uri")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
def add_redirect_uri_command(name: str, redirect_uris: tuple[str, ...]):
    """Add callback URLs to an existing client (its id and secret stay); prints every URL it now accepts."""
    try:
        client = clients.add_redirect_uris(name, list(redirect_uris))
        db.session.commit()
    except clients.OAuthClientError as exc:
        fail(str(exc))
    for uri in client.redirect_uris:
        click.echo(uri)
