"""Okta's "Authenticate with Gatehouse", end to end: an Authlib OAuth client
(playing Okta) sends the admin's Chromium to the consent page, the admin signs
in, sees which workspace will be connected and allows it; the client receives
the code on its callback, exchanges it, calls SCIM, refreshes and revokes."""
from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from playwright.sync_api import Page, expect

from app.extensions import db
from app.workspaces.service import create_workspace
from tests.browser.conftest import sign_in_with_password

PASSWORD = "admin-password-1"


class Callback(BaseHTTPRequestHandler):
    """Okta's callback URL: remembers what it was sent, says so."""

    received: list[str] = []

    def do_GET(self):
        Callback.received.append(self.path)
        body = b"<!doctype html><title>Okta</title><h1>Authenticated with Gatehouse</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def okta_callback():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Callback.received = []
    yield f"http://localhost:{server.server_port}/admin/app/cpc/gatehouse/oauth/callback"
    server.shutdown()


@pytest.fixture
def okta_client(live_server, okta_callback) -> tuple[str, str]:
    """The Acme workspace, and Okta's OAuth client registered by the operator: (client id, secret)."""
    from app.oauth import clients
    with live_server.app.app_context():
        create_workspace("Acme", "enterprise", "admin@acme.test", PASSWORD)
        client, secret = clients.create_client("okta", [okta_callback])
        db.session.commit()
        return client.client_id, secret


def test_admin_connects_okta_through_the_consent_page(live_server, page: Page, okta_callback, okta_client):
    client_id, secret = okta_client
    okta = OAuth2Session(client_id, secret, scope="scim offline_access", redirect_uri=okta_callback,
                         token_endpoint_auth_method="client_secret_post", code_challenge_method="S256")
    verifier = "v" * 20 + "x" * 30
    url, state = okta.create_authorization_url(f"{live_server.url}/oauth/authorize", code_verifier=verifier)

    page.goto(url)
    expect(page).to_have_url(re.compile(r"/login"))  # signed out: sign in first, then back to consent
    sign_in_with_password(page, "admin@acme.test", PASSWORD)

    expect(page.get_by_role("heading", name="Connect Acme to Okta?")).to_be_visible()
    expect(page.get_by_text("admin@acme.test").first).to_be_visible()
    page.get_by_role("button", name="Allow and connect Acme").click()
    expect(page.get_by_role("heading", name="Authenticated with Gatehouse")).to_be_visible()
    assert page.url.startswith(okta_callback) and f"state={state}" in page.url

    token = okta.fetch_token(f"{live_server.url}/oauth/token", authorization_response=page.url,
                             code_verifier=verifier)
    assert token["refresh_token"] and "scim" in token["scope"]
    users = requests.get(f"{live_server.url}/scim/v2/Users", timeout=10,
                         headers={"Authorization": f"Bearer {token['access_token']}"})
    assert users.status_code == 200 and "admin@acme.test" in users.text

    # Okta refreshes with client_secret_basic here: both methods work on every grant.
    basic = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_basic")
    refreshed = basic.refresh_token(f"{live_server.url}/oauth/token", refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    with pytest.raises(Exception):  # the rotated-out refresh token is refused
        basic.refresh_token(f"{live_server.url}/oauth/token", refresh_token=token["refresh_token"])

    # The admin sees the connection (and, after the replay above, that it was revoked for safety).
    page.goto(f"{live_server.url}/settings/security#provisioning")
    section = page.locator("#provisioning")
    expect(section.get_by_text("Not connected")).to_be_visible()
    expect(section.get_by_text("an old refresh token was used again")).to_be_visible()


def test_admin_revokes_the_connection_from_settings(live_server, page: Page, okta_callback, okta_client):
    client_id, secret = okta_client
    okta = OAuth2Session(client_id, secret, scope="scim offline_access", redirect_uri=okta_callback)
    url, _ = okta.create_authorization_url(f"{live_server.url}/oauth/authorize")
    page.goto(url)
    sign_in_with_password(page, "admin@acme.test", PASSWORD)
    page.get_by_role("button", name="Allow and connect Acme").click()
    expect(page.get_by_role("heading", name="Authenticated with Gatehouse")).to_be_visible()
    token = okta.fetch_token(f"{live_server.url}/oauth/token", authorization_response=page.url)

    page.goto(f"{live_server.url}/settings/security#provisioning")
    section = page.locator("#provisioning")
    expect(section.get_by_text("approved by")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    section.get_by_role("button", name="Revoke OAuth connection").click()
    expect(page.get_by_text("The OAuth connection is revoked")).to_be_visible()
    users = requests.get(f"{live_server.url}/scim/v2/Users", timeout=10,
                         headers={"Authorization": f"Bearer {token['access_token']}"})
    assert users.status_code == 401
