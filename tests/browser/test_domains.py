"""Authorized domains in Chromium: rows go from pending to verified while the
admin watches, with no page reload — by the scheduled DNS sweep and a real
worker against a real DNS server, and by the emailed link through real SMTP."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from app.extensions import db, rq
from app.models import Domain, utcnow
from app.workspaces.service import create_workspace
from jobs.domains import sweep_domains
from tests.browser.conftest import wait_until
from tests.browser.conftest import sign_in_with_password

PASSWORD = "acme-admin-password"


@pytest.fixture
def live_server_config(dns_server, smtp):
    dns_server.reset()
    return {"DNS_NAMESERVERS": dns_server.nameservers, "SMTP_URL": smtp.url}


@pytest.fixture
def admin_page(live_server, page: Page) -> Page:
    with live_server.app.app_context():
        create_workspace("Acme", "enterprise", "admin@acme.test", PASSWORD)
        db.session.commit()
    sign_in_with_password(page, "admin@acme.test", PASSWORD, url=live_server.url)
    expect(page).to_have_url(re.compile(r"/library$"))
    page.goto(f"{live_server.url}/settings/security")
    page.evaluate("window.notReloaded = true")  # gone if the page reloads
    return page


def domain_status(app) -> str | None:
    with app.app_context():  # a fresh session each time
        return db.session.scalar(select(Domain.status))


def add_domain(page: Page, name: str, method: str, inbox: str = "admin", javascript: bool = True) -> None:
    section = page.locator("#domains")
    section.get_by_label("Domain", exact=True).fill(name)
    section.get_by_role("radio", name="DNS TXT record" if method == "dns" else "Email to an inbox at the domain").check()
    if method == "email":
        section.get_by_label("Inbox (for email)").select_option(inbox)
    elif javascript:  # only the email method has an inbox to pick (without JS it stays shown)
        expect(section.get_by_label("Inbox (for email)")).to_be_hidden()
    section.get_by_role("button", name="Add domain").click()


def test_dns_pending_to_verified_by_the_scheduled_sweep(live_server, admin_page: Page, dns_server):
    page = admin_page
    add_domain(page, "acme.test", "dns")
    row = page.locator(".domain-row", has_text="acme.test")
    expect(row.locator(".status")).to_have_text("Pending validation")
    expect(row).to_contain_text("_gatehouse-challenge.acme.test")
    expect(page.locator("#outside-members")).to_contain_text("admin@acme.test")

    with live_server.app.app_context():
        rq.connection.flushall()  # the immediate check is lost: only the sweep can verify now
        domain = db.session.scalar(select(Domain))
        expect(row.get_by_role("button", name="Copy").last).to_have_attribute("data-copy", domain.record_value)
        value = [domain.record_value[:25], domain.record_value[25:]]  # split into two strings
        dns_server.txt[domain.record_name] = [value]
        db.session.execute(update(Domain).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))
        db.session.commit()
        assert sweep_domains()["due"] == 1
    live_server.start_worker()

    expect(row.locator(".status")).to_have_text("Verified", timeout=20_000)
    expect(row).to_contain_text("by DNS check")
    expect(row).not_to_have_attribute("hx-trigger", re.compile("."))  # settled: it stopped polling
    expect(page.locator("#outside-members")).to_contain_text("Every active and invited member")
    assert page.evaluate("window.notReloaded") is True


def test_dns_wrong_record_shows_what_was_found_live(live_server, admin_page: Page, dns_server):
    page = admin_page
    dns_server.txt["_gatehouse-challenge.acme.test"] = ["gatehouse-domain-verification=typo"]
    live_server.start_worker()
    add_domain(page, "acme.test", "dns")
    row = page.locator(".domain-row", has_text="acme.test")
    expect(row).to_contain_text("but none is gatehouse-domain-verification=", timeout=20_000)
    expect(row.locator(".found-records")).to_contain_text("gatehouse-domain-verification=typo")
    with live_server.app.app_context():
        domain = db.session.scalar(select(Domain))
        dns_server.txt[domain.record_name] = [domain.record_value]
    row.get_by_role("button", name="Re-check now").click()
    expect(row.locator(".status")).to_have_text("Verified", timeout=20_000)
    assert page.evaluate("window.notReloaded") is True


def test_email_link_flips_the_admins_open_page(live_server, admin_page: Page, browser, smtp):
    page = admin_page
    live_server.start_worker()
    add_domain(page, "acme.test", "email", inbox="postmaster")
    row = page.locator(".domain-row", has_text="acme.test")
    expect(row.locator(".status")).to_have_text("Pending validation")
    expect(row).to_contain_text("We emailed a verification link to postmaster@acme.test", timeout=20_000)

    message = wait_until(lambda: smtp.inbox.to("postmaster@acme.test"), timeout=20)[0]
    link = re.search(r"https?://\S+/domains/verify/[\w-]+", smtp.inbox.text(message)).group(0)
    assert link.startswith(live_server.url)

    stranger = browser.new_context().new_page()  # the person at the inbox: not signed in
    stranger.goto(link)
    expect(stranger.get_by_role("heading", name="Verify acme.test")).to_be_visible()
    expect(stranger.locator("#main")).to_contain_text("The workspace Acme on Gatehouse asks to confirm")
    stranger.get_by_role("button", name="Verify acme.test for Acme").click()
    expect(stranger.get_by_role("heading", name="acme.test is verified")).to_be_visible()
    stranger.context.close()

    expect(row.locator(".status")).to_have_text("Verified", timeout=10_000)
    expect(row).to_contain_text("postmaster@acme.test (emailed link)")
    assert page.evaluate("window.notReloaded") is True


def test_without_javascript_forms_work_and_a_reload_shows_the_new_state(live_server, browser, dns_server):
    with live_server.app.app_context():
        create_workspace("Acme", "enterprise", "admin@acme.test", PASSWORD)
        db.session.commit()
    page = browser.new_context(java_script_enabled=False).new_page()
    sign_in_with_password(page, "admin@acme.test", PASSWORD, url=live_server.url)
    page.goto(f"{live_server.url}/settings/security")
    add_domain(page, "acme.test", "dns", javascript=False)  # a plain form POST, then a redirect back
    expect(page.locator("#flash")).to_contain_text("acme.test added")
    row = page.locator(".domain-row", has_text="acme.test")
    expect(row.locator(".status")).to_have_text("Pending validation")

    with live_server.app.app_context():
        domain = db.session.scalar(select(Domain))
        dns_server.txt[domain.record_name] = [domain.record_value]
    row.get_by_role("button", name="Re-check now").click()
    expect(page.locator("#flash")).to_contain_text("Checking DNS for acme.test now")
    live_server.start_worker()
    wait_until(lambda: domain_status(live_server.app) == "verified", timeout=20)
    row.get_by_role("link", name="Refresh").click()  # no JavaScript: the admin reloads
    expect(page.locator(".domain-row", has_text="acme.test").locator(".status")).to_have_text("Verified")
    page.context.close()
