"""A pending domain's row polls itself every 3 s while the Security page is open. The polls
are nobody's activity: they must not keep an idle session alive. A poll refused for good
(signed out, no longer an admin) reloads the page, rather than flash the refusal every 3 s.
And the poll that brings a new status tells screen readers too."""
from html import unescape

from app.domains import verification
from app.domains.service import add_domain
from app.extensions import db
from app.models import utcnow

FRAGMENT = {"HX-Request": "true"}


def poll_url(client) -> str:
    """The row's own poll, as the Security page writes it."""
    page = client.get("/settings/security").get_data(as_text=True)
    assert 'hx-trigger="every 3s"' in page
    return unescape(page.split('hx-get="', 1)[1].split('"', 1)[0])


def away_for(client, seconds: int) -> None:
    with client.session_transaction() as s:
        s["seen_at"] -= seconds
        s["auth_at"] -= seconds


def pending_domain(workspace):
    domain = add_domain(workspace, "acme.test")
    db.session.commit()
    return domain


def test_polls_do_not_keep_an_idle_session_alive(app, admin_client, workspace):
    pending_domain(workspace)
    poll, idle = poll_url(admin_client), app.config["SESSION_IDLE_TIMEOUT"]
    away_for(admin_client, idle - 30)
    for _ in range(3):  # the open page keeps polling while nobody is at the keyboard
        assert admin_client.get(poll, headers=FRAGMENT).status_code == 204
    away_for(admin_client, 60)  # idle for longer than the limit now, polls or not
    response = admin_client.get("/settings/members")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


def test_an_idle_session_ends_at_the_next_poll_which_sends_the_page_to_sign_in(app, admin_client, workspace):
    pending_domain(workspace)
    poll, idle = poll_url(admin_client), app.config["SESSION_IDLE_TIMEOUT"]
    away_for(admin_client, idle - 30)
    assert admin_client.get(poll, headers=FRAGMENT).status_code == 204
    away_for(admin_client, 60)
    response = admin_client.get(poll, headers=FRAGMENT)
    assert response.status_code == 401 and response.headers["HX-Redirect"] == "/login"
    assert admin_client.get("/library").status_code == 302


def test_a_click_in_the_row_still_counts_as_activity(app, admin_client, workspace):
    domain = pending_domain(workspace)
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    away_for(admin_client, idle - 30)
    response = admin_client.post(f"/settings/domains/{domain.id}/check", headers=FRAGMENT)  # "Re-check now"
    assert response.status_code == 200 and "Checking DNS for acme.test now" in response.get_data(as_text=True)
    away_for(admin_client, 60)
    assert admin_client.get("/settings/members").status_code == 200


def test_a_demoted_admins_open_page_reloads_instead_of_flashing_403_every_3_seconds(admin_client, workspace, admin,
                                                                                   make_user):
    domain = pending_domain(workspace)
    make_user(workspace, "boss@acme.test", role="admin")
    poll = poll_url(admin_client)
    admin.role = "creator"  # demoted by the other admin meanwhile
    db.session.commit()
    response = admin_client.get(poll, headers=FRAGMENT)
    assert response.status_code == 403
    assert response.headers["HX-Refresh"] == "true" and "HX-Retarget" not in response.headers
    reloaded = admin_client.get("/settings/security")  # what the reload shows: the page says why, and polls nothing
    assert reloaded.status_code == 403 and "You don&#39;t have access" in reloaded.get_data(as_text=True)
    assert "hx-trigger" not in reloaded.get_data(as_text=True)
    # A click is answered in the flash area, as before: the admin sees the message where they acted.
    clicked = admin_client.post(f"/settings/domains/{domain.id}/check", headers=FRAGMENT)
    assert clicked.status_code == 403
    assert clicked.headers["HX-Retarget"] == "#flash" and "HX-Refresh" not in clicked.headers


def test_a_status_change_is_announced_in_a_live_region_the_swap_keeps(admin_client, workspace):
    """The row is replaced on each change (its poll URL changes with it), so a role="status" inside
    it would be a new live region every time, which screen readers don't announce; the list's
    region stays, and the poll that brings the new status also fills it."""
    domain = pending_domain(workspace)
    page = admin_client.get("/settings/security").get_data(as_text=True)
    region = '<p id="domain-status-live" class="visually-hidden" role="status"></p>'
    assert page.count(region) == 1 and page.index(region) < page.index('<ul class="domain-list"')
    poll = poll_url(admin_client)
    verification.mark_verified(domain, how="dns", actor_label="DNS check", now=utcnow())
    db.session.commit()
    response = admin_client.get(poll, headers=FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-status="verified"' in html
    assert '<p id="domain-status-live" hx-swap-oob="innerHTML">acme.test: Verified</p>' in html
    assert "hx-swap-oob" not in admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(
        as_text=True)  # a row fetched without a status change announces nothing
