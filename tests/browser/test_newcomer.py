"""The newcomer's path: sign in as the demo admin, see the library, open
Settings → Security, see the plan gate on a non-Enterprise workspace, sign out."""
from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from app.extensions import db
from app.seed import DEMO_EMAIL, DEMO_PASSWORD, seed_demo
from app.workspaces.service import create_workspace
from tests.browser.conftest import sign_in_with_password


def test_demo_admin_walks_the_product(live_server, page: Page):
    with live_server.app.app_context():
        seed_demo()
        db.session.commit()
    sign_in_with_password(page, DEMO_EMAIL, DEMO_PASSWORD, url=live_server.url)
    expect(page).to_have_url(re.compile(r"/library$"))
    expect(page.get_by_role("heading", name="Library")).to_be_visible()
    expect(page.get_by_role("cell", name="Quarterly roadmap walkthrough")).to_be_visible()

    page.get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/security$"))
    expect(page.get_by_role("link", name="Security")).to_have_attribute("aria-current", "page")
    if os.environ.get("GATEHOUSE_SCREENSHOTS"):
        Path("docs").mkdir(exist_ok=True)
        page.screenshot(path="docs/security-page.png", full_page=True)

    page.get_by_role("link", name="Members").click()
    expect(page.locator("#member-list").get_by_text("grace@acme.test", exact=True)).to_be_visible()
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="auth.signed_in")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.goto(f"{live_server.url}/library")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_security_is_locked_on_a_business_plan(live_server, page: Page):
    with live_server.app.app_context():
        create_workspace("Small Co", "business", "owner@small.test", "small-password-1")
        db.session.commit()
    sign_in_with_password(page, "owner@small.test", "small-password-1", url=live_server.url)
    page.goto(f"{live_server.url}/settings/security")
    expect(page.get_by_role("heading", name=re.compile("need the Enterprise plan"))).to_be_visible()
    expect(page.get_by_text("Small Co is on the Business plan")).to_be_visible()
    expect(page.get_by_text("Single sign-on (SAML)")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Start SSO setup|Save", re.I))).to_have_count(0)
