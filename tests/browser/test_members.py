"""Member management in Chromium: the SCIM-managed override, and a permanent
deletion whose progress the page shows live while a real `rq worker` runs it."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from app.extensions import db
from app.models import Recording, User
from app.workspaces.service import create_workspace
from tests.browser.conftest import sign_in_with_password

PASSWORD = "admin-password-1"


def _seed(app) -> dict:
    with app.app_context():
        ws = create_workspace("Acme", "enterprise", "admin@acme.test", PASSWORD)
        people = {}
        for email, source, status in [("okta.user@acme.test", "scim", "active"),
                                      ("gone@acme.test", "password", "deactivated")]:
            user = User(workspace_id=ws.id, name=email.split("@")[0], role="creator", status=status, source=source)
            user.set_email(email)
            db.session.add(user)
            db.session.flush()
            people[email] = user.id
        db.session.add_all([Recording(workspace_id=ws.id, owner_id=people["gone@acme.test"], title=f"Rec {i}")
                            for i in range(30)])
        db.session.commit()
        return people


def test_scim_managed_member_needs_the_override(live_server, page: Page):
    people = _seed(live_server.app)
    sign_in_with_password(page, "admin@acme.test", PASSWORD, url=live_server.url)
    page.goto(f"{live_server.url}/settings/members")
    row = page.locator(f"#member-{people['okta.user@acme.test']}")
    expect(row.get_by_text("Managed by your identity provider")).to_be_visible()
    row.get_by_role("button", name="Deactivate").click()  # the browser refuses: the override is required
    expect(row.get_by_text("Active")).to_be_visible()
    row.get_by_label("Override the identity provider").check()
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    row.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_text("okta.user@acme.test is deactivated.")).to_be_visible()
    assert len(asked) == 1 and asked[0].startswith("Deactivate ") and "signed out everywhere" in asked[0]


def test_permanent_deletion_shows_live_progress(live_server, page: Page):
    people = _seed(live_server.app)
    sign_in_with_password(page, "admin@acme.test", PASSWORD, url=live_server.url)
    page.goto(f"{live_server.url}/settings/members")
    page.locator(f"#member-{people['gone@acme.test']}").get_by_role("link", name="Delete permanently…").click()
    expect(page.get_by_role("heading", name="Delete gone@acme.test permanently?")).to_be_visible()
    expect(page.get_by_text("30 recordings")).to_be_visible()
    page.get_by_label("Their recordings").select_option(label="Transfer them to Admin (admin@acme.test)")
    page.get_by_role("button", name="Delete gone@acme.test permanently").click()
    expect(page.get_by_text("Tick the box to confirm the permanent deletion.")).to_be_visible()
    page.get_by_label(re.compile("I understand")).check()
    page.get_by_role("button", name="Delete gone@acme.test permanently").click()
    expect(page.get_by_text("Waiting to start")).to_be_visible()

    live_server.start_worker()  # the page polls; the worker's progress shows up without a reload
    expect(page.get_by_text(re.compile(r"The member and their data are deleted"))).to_be_visible(timeout=30000)
    expect(page.get_by_text("30 of 30")).to_be_visible()
    with live_server.app.app_context():
        assert db.session.get(User, people["gone@acme.test"]) is None
        assert db.session.scalar(select(func.count()).select_from(Recording)
                                 .where(Recording.owner_id != people["gone@acme.test"])) == 30


def test_role_change_from_the_list(live_server, page: Page):
    """Picking a role in a row must not refresh the list (which put the old role back before Save)."""
    people = _seed(live_server.app)
    sign_in_with_password(page, "admin@acme.test", PASSWORD, url=live_server.url)
    page.goto(f"{live_server.url}/settings/members")
    row = page.locator(f"#member-{people['okta.user@acme.test']}")
    row.get_by_label("Role of okta.user@acme.test").select_option("creator_lite")
    page.wait_for_timeout(600)  # longer than the search box's debounce
    expect(row.get_by_label("Role of okta.user@acme.test")).to_have_value("creator_lite")
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_text("okta.user@acme.test is now Creator Lite.")).to_be_visible()
    with live_server.app.app_context():
        assert db.session.get(User, people["okta.user@acme.test"]).role == "creator_lite"
    row = page.locator(f"#member-{people['okta.user@acme.test']}")
    row.get_by_role("button", name="Save").click()  # nothing changed: said so, not "is now"
    expect(page.get_by_text("okta.user@acme.test is already Creator Lite.")).to_be_visible()
