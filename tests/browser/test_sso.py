"""SAML SSO in Chromium, the whole round trip: /login → email → IdP page →
POST back to the ACS → library. The IdP is a small web app of its own on
`localhost` while Gatehouse is on `127.0.0.1`: two different sites, so the
POST to the ACS is a real cross-site POST (the Lax session cookie stays home)."""
from __future__ import annotations

import base64
import re
import threading
import zlib
from html import escape

import pytest
from flask import Flask, request
from lxml import etree
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from app.extensions import db
from app.workspaces.service import create_workspace
from tests.support.saml_idp import TestIdp, encode
from tests.browser.conftest import sign_in_with_password

PASSWORD = "acme-admin-password"


class IdpApp:
    """A tiny IdP: shows who you are about to sign in as, then posts a signed
    response back to the SP's ACS with a Continue button."""

    def __init__(self):
        self.app = Flask("test-idp")
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://localhost:{self.server.server_port}"
        self.idp = TestIdp(entity_id=f"{self.url}/metadata", sso_url=f"{self.url}/sso")
        self.audience = None
        self.app.add_url_rule("/sso", "sso", self.sso)
        self.app.add_url_rule("/approve", "approve", self.approve, methods=["POST"])
        self.app.add_url_rule("/unsolicited", "unsolicited", self.unsolicited)
        self.app.add_url_rule("/dashboard", "dashboard", self.dashboard)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sso(self):
        xml = zlib.decompress(base64.b64decode(request.args["SAMLRequest"]), -15)
        authn = etree.fromstring(xml)
        fields = {"request_id": authn.get("ID"), "acs": authn.get("AssertionConsumerServiceURL"),
                  "relay_state": request.args.get("RelayState", "")}
        hidden = "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in fields.items())
        return (f'<h1>Test IdP</h1><form method="post" action="/approve">{hidden}'
                '<label>Email <input name="email" value="ada@acme.test"></label>'
                '<button type="submit">Sign in to Test IdP</button></form>')

    def _post_back(self, acs: str, response, relay_state: str | None):
        relay = f'<input type="hidden" name="RelayState" value="{escape(relay_state)}">' if relay_state else ""
        return (f'<form method="post" action="{escape(acs)}"><input type="hidden" name="SAMLResponse" '
                f'value="{encode(response)}">{relay}<button type="submit">Continue to Gatehouse</button></form>')

    def approve(self):
        form = request.form
        response = self.idp.response(audience=self.audience, acs_url=form["acs"], in_response_to=form["request_id"],
                                     email=form["email"], attributes={"firstName": ["Ada"], "lastName": ["L"]})
        return self._post_back(form["acs"], response, form["relay_state"])

    def unsolicited(self):
        acs = request.args["acs"]
        response = self.idp.response(audience=self.audience, acs_url=acs, in_response_to=None, email="ada@acme.test")
        return self._post_back(acs, response, None)

    def dashboard(self):
        """Okta's end-user dashboard: the bookmark app is a plain link to the SP-initiated start."""
        return f'<h1>My apps</h1><a href="{escape(request.args["start"])}">Gatehouse</a>'

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def idp_app():
    idp = IdpApp()
    yield idp
    idp.stop()


@pytest.fixture
def acme(live_server, idp_app):
    """Acme with acme.test verified, Ada as a member, and SSO on through the IdP app."""
    from app.domains.service import add_domain
    from app.sso import connections
    from tests.conftest import PASSWORD as MEMBER_PASSWORD
    with live_server.app.app_context():
        workspace = create_workspace("Acme", "enterprise", "admin@acme.test", PASSWORD)
        add_domain(workspace, "acme.test", verified=True)
        from app.models import User
        ada = User(workspace_id=workspace.id, name="Ada Lovelace", role="creator")
        ada.set_email("ada@acme.test")
        from app.auth.service import set_password
        set_password(ada, MEMBER_PASSWORD)
        db.session.add(ada)
        conn = connections.start_setup(workspace, "okta", actor=None)
        connections.configure_from_xml(workspace.id, idp_app.idp.metadata(), actor=None)
        cid = conn.connection_id
        db.session.commit()
    idp_app.audience = f"{live_server.url}/sso/saml/{cid}/metadata"
    return cid


def enable(live_server):
    from app.sso import connections
    with live_server.app.app_context():
        from app.models import Workspace
        workspace = db.session.scalar(db.select(Workspace))
        connections.enable(workspace.id, actor=None, override=True)
        db.session.commit()


def test_email_first_login_through_the_idp_lands_in_the_library(live_server, idp_app, acme, page: Page):
    enable(live_server)
    assert live_server.url.startswith("http://127.0.0.1:") and idp_app.url.startswith("http://localhost:")
    acs_requests = []
    page.on("request", lambda r: acs_requests.append(r) if r.url.endswith("/acs") else None)

    page.goto(f"{live_server.url}/login")
    page.get_by_label("Work email").fill("ada@acme.test")
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(idp_app.url)}/sso\?SAMLRequest="))
    page.get_by_role("button", name="Sign in to Test IdP").click()
    page.get_by_role("button", name="Continue to Gatehouse").click()  # the cross-site POST to the ACS

    expect(page).to_have_url(f"{live_server.url}/library")
    expect(page.locator(".whoami")).to_contain_text("ada@acme.test")
    (acs,) = acs_requests
    assert acs.method == "POST" and acs.headers.get("origin") == idp_app.url


def test_password_step_is_refused_and_offers_sso(live_server, idp_app, acme, page: Page):
    enable(live_server)
    from tests.conftest import PASSWORD as MEMBER_PASSWORD
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Work email").fill("admin@elsewhere.example")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Enter your password")).to_be_visible()
    # A password form kept from before SSO was turned on: the password step itself refuses.
    page.evaluate("document.querySelector('input[name=email]').value = 'ada@acme.test'")
    page.get_by_label("Password", exact=True).fill(MEMBER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body")).to_contain_text("requires single sign-on")
    page.get_by_role("link", name="Continue with SSO").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(idp_app.url)}/sso\?"))


def test_idp_initiated_response_gets_the_explaining_page(live_server, idp_app, acme, page: Page):
    enable(live_server)
    page.goto(f"{idp_app.url}/unsolicited?acs={live_server.url}/sso/saml/{acme}/acs")
    page.get_by_role("button", name="Continue to Gatehouse").click()
    expect(page.get_by_role("heading", name="Start signing in from Gatehouse")).to_be_visible()
    expect(page.locator("body")).to_contain_text("bookmark app")
    page.get_by_role("link", name="Go to the sign-in page").click()
    expect(page).to_have_url(f"{live_server.url}/login")


def test_okta_bookmark_asks_once_which_workspace_then_goes_straight_through(live_server, idp_app, acme,
                                                                           page: Page):
    """A start another site's link caused (login CSRF: it could be an attacker's workspace) is
    confirmed once in each browser; after a sign-in there, the bookmark goes straight to the IdP."""
    enable(live_server)
    dashboard = f"{idp_app.url}/dashboard?start={live_server.url}/sso/saml/{acme}/login"
    page.goto(dashboard)
    page.get_by_role("link", name="Gatehouse").click()
    expect(page.get_by_role("heading", name="Sign in to Acme?")).to_be_visible()
    page.get_by_role("button", name="Continue to Okta").click()
    page.get_by_role("button", name="Sign in to Test IdP").click()
    page.get_by_role("button", name="Continue to Gatehouse").click()
    expect(page).to_have_url(f"{live_server.url}/library")

    page.goto(dashboard)
    page.get_by_role("link", name="Gatehouse").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(idp_app.url)}/sso\?SAMLRequest="))


def test_admin_tests_the_connection_and_the_switch_unlocks(live_server, idp_app, acme, page: Page):
    sign_in_with_password(page, "admin@acme.test", PASSWORD, url=live_server.url)
    page.goto(f"{live_server.url}/settings/security")
    section = page.locator("#sso")
    expect(section.locator("#sso-connection-id")).to_have_text(acme)
    expect(section.get_by_role("button", name="Turn SSO on")).to_be_disabled()
    section.get_by_role("button", name="Test connection").click()
    page.get_by_label("Email").fill("admin@acme.test")
    page.get_by_role("button", name="Sign in to Test IdP").click()
    page.get_by_role("button", name="Continue to Gatehouse").click()
    expect(page.get_by_role("heading", name="Test succeeded")).to_be_visible()
    expect(page.locator(".sso-test-result")).to_contain_text("admin@acme.test")
    page.get_by_role("link", name="Review and turn SSO on").click()
    expect(page.locator("#sso-affected")).to_contain_text("Ada Lovelace")
    page.get_by_label("I have reviewed who will be affected").check()
    page.get_by_role("button", name="Turn SSO on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
