"""Settings → Security → Authorized domains, as an admin's browser (or htmx) sees it."""
import datetime as dt
import re
from html import unescape

import pytest
from sqlalchemy import select, update

from app.domains.service import add_domain
from app.extensions import db
from app.models import AuditEvent, Domain, OutboundEmail, utcnow
from tests.conftest import csrf_token_from, sign_in, sign_in_with_csrf

FRAGMENT = {"HX-Request": "true"}


def domains():
    db.session.expire_all()
    return db.session.scalars(select(Domain).order_by(Domain.id)).all()


def words(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_section_on_the_security_page(admin_client):
    html = admin_client.get("/settings/security").get_data(as_text=True)
    assert 'id="domains"' in html and "Authorized domains" in html
    assert "No domains yet" in html
    assert "Members outside your authorized domains" in html and "admin@acme.test" in html
    assert "Subdomains are covered by their verified parent" in html


def test_one_url_serves_page_and_list_fragment(admin_client):
    page = admin_client.get("/settings/domains")
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)
    fragment = admin_client.get("/settings/domains", headers=FRAGMENT)
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<div id="domain-list">')
    assert "HX-Request" in fragment.headers["Vary"]


def test_add_with_htmx_returns_the_section_with_the_new_row(admin_client):
    response = admin_client.post("/settings/domains", data={"name": "Bücher.example", "method": "dns",
                                                            "inbox": "admin"}, headers=FRAGMENT)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<section class="card" id="domains"')
    assert "bücher.example added" in html and "(xn--bcher-kva.example)" in html
    assert "_gatehouse-challenge.xn--bcher-kva.example" in html and 'data-copy="gatehouse-domain-verification=' in html
    assert "Hints for common DNS providers" in html
    name_field = re.search(r'<input[^>]*name="name"[^>]*>', html).group(0)
    assert "value=" not in name_field or 'value=""' in name_field  # emptied for the next one


@pytest.mark.parametrize("name, message", [
    ("gmail.com", "public email provider"),
    ("https://acme.com/", "without http://"),
    ("acme.com:8443", "without a port number"),
    ("203.0.113.9", "IP addresses cannot be authorized"),
    ("*.acme.com", "without a wildcard"),
    ("acme", "not a single word"),
    ("co.uk", "public suffix"),
    ("", "Enter a domain"),
])
def test_bad_domains_re_render_the_form_with_422(admin_client, name, message):
    for headers in (FRAGMENT, {}):
        response = admin_client.post("/settings/domains", data={"name": name, "method": "dns", "inbox": "admin"},
                                     headers=headers)
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert message in html and 'aria-invalid="true"' in html
        assert ("<html" in html) is not bool(headers)
    assert domains() == []


def test_domain_verified_elsewhere_refused_in_the_form(admin_client, make_workspace):
    globex = make_workspace("Globex", admin_email="admin@globex.test")
    add_domain(globex, "shared.test", verified=True)
    db.session.commit()
    response = admin_client.post("/settings/domains", data={"name": "sub.shared.test", "method": "dns",
                                                            "inbox": "admin"}, headers=FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "another workspace has already verified" in html and "Globex" not in html


def test_without_javascript_forms_post_and_redirect(admin_client):
    response = admin_client.post("/settings/domains", data={"name": "acme.test", "method": "dns", "inbox": "admin"})
    assert response.status_code == 303 and response.headers["Location"].endswith("/settings/security#domains")
    page = admin_client.get("/settings/security").get_data(as_text=True)
    assert "acme.test added" in page and "Pending validation" in page
    (domain,) = domains()
    page = admin_client.get(f"/settings/domains/{domain.id}")  # the row's URL, without htmx: the whole page
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True) and 'id="domain-list"' in page.get_data(
        as_text=True)
    assert admin_client.post(f"/settings/domains/{domain.id}/check").status_code == 303
    assert "Checking DNS for acme.test now" in admin_client.get("/settings/security").get_data(as_text=True)


def test_remove_confirm_says_what_happens_to_sso(admin_client, workspace, make_user):
    domain = add_domain(workspace, "acme.test", verified=True)
    make_user(workspace, "grace@acme.test", name="Grace Hopper")
    db.session.commit()
    page = admin_client.get(f"/settings/domains/{domain.id}/remove").get_data(as_text=True)
    assert "no longer be authorized" in page and "blocked from signing in" in page
    assert "signed out of the sessions they have open" in page
    assert "Grace Hopper" in page and "2 members would be affected" in page
    response = admin_client.post(f"/settings/domains/{domain.id}/remove")
    assert response.status_code == 303
    assert ("acme.test removed. SSO is not enforced, so passwords keep working; once it is turned on, the 2 members "
            "whom only it covered will be blocked from signing in.") in admin_client.get(
        "/settings/security").get_data(as_text=True)
    assert domains() == []
    assert db.session.scalar(select(AuditEvent.action).order_by(AuditEvent.id.desc()).limit(1)) == "domain.removed"


def test_pending_domain_removal_says_it_changes_nothing(admin_client, workspace):
    domain = add_domain(workspace, "acme.test")
    db.session.commit()
    page = admin_client.get(f"/settings/domains/{domain.id}/remove").get_data(as_text=True)
    assert "changes nothing for SSO enforcement" in page


def test_switch_method_refused_on_a_verified_domain(admin_client, workspace):
    domain = add_domain(workspace, "acme.test", verified=True)
    db.session.commit()
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "email", "inbox": "admin"},
                                 headers=FRAGMENT)
    assert response.status_code == 422 and "already verified; remove it first" in response.get_data(as_text=True)
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "pigeon"},
                                 headers=FRAGMENT)
    assert response.status_code == 422 and "Choose how to verify" in response.get_data(as_text=True)


def test_outside_members_panel_fragment(admin_client, workspace, make_user):
    make_user(workspace, "linus@freelance.test", name="Linus Contractor")
    add_domain(workspace, "acme.test", verified=True)
    db.session.commit()
    html = admin_client.get("/settings/domains/outside-members", headers=FRAGMENT).get_data(as_text=True)
    assert "Linus Contractor" in html and "linus@freelance.test" in html and "admin@acme.test" not in html
    assert 'href="/settings/members?q=linus@freelance.test"' in html


def test_outside_members_panel_offers_only_what_an_admin_can_do(admin_client, workspace, make_user):
    """Gatehouse has no way to edit a member's email: the address changes at the IdP (SCIM brings it)."""
    make_user(workspace, "linus@freelance.test")
    text = words(admin_client.get("/settings/domains/outside-members", headers=FRAGMENT).get_data(as_text=True))
    assert ("Verify their email domain above, or change their address at your identity provider (SCIM "
            "provisioning brings the new address here); or deactivate them, or revoke their invitation, in member "
            "management") in text
    assert "change their email" not in text


def added_row(client, name: str) -> str:
    response = client.post("/settings/domains", data={"name": name, "method": "dns", "inbox": "admin"},
                           headers=FRAGMENT)
    assert response.status_code == 200
    return words(response.get_data(as_text=True))


def test_provider_hints_for_a_subdomain_name_the_registrable_zone(admin_client):
    """Providers host eu.acme.co.uk's records in the acme.co.uk zone, and append the zone to the name."""
    text = added_row(admin_client, "eu.acme.co.uk")
    assert "Name _gatehouse-challenge.eu.acme.co.uk Copy" in text  # the full name, for the record's check
    assert ("Cloudflare : acme.co.uk → DNS → Records → Add record, type TXT, name _gatehouse-challenge.eu "
            "(Cloudflare adds the domain).") in text
    assert ("Amazon Route 53 : Hosted zones → acme.co.uk → Create record, type TXT, record name "
            "_gatehouse-challenge.eu , value in double quotes.") in text
    assert "host _gatehouse-challenge.eu (without the domain; they add it)" in text
    assert "in the zone acme.co.uk, record set name _gatehouse-challenge.eu , type TXT" in text
    assert ("If eu.acme.co.uk has a DNS zone of its own (delegated from acme.co.uk), create the record there "
            "instead, with the name _gatehouse-challenge .") in text
    assert "Hosted zones → eu.acme.co.uk" not in text and "name _gatehouse-challenge (" not in text


def test_provider_hints_for_a_registrable_domain(admin_client):
    text = added_row(admin_client, "acme.co.uk")
    assert "name _gatehouse-challenge (Cloudflare adds the domain)" in text
    assert "Hosted zones → acme.co.uk → Create record, type TXT, record name _gatehouse-challenge ," in text
    assert "host _gatehouse-challenge (without the domain; they add it)" in text
    assert "delegated" not in text


def accessible_names(html: str) -> list[str]:
    """The buttons' and button-links' names as a screen reader reads them (visually hidden text included)."""
    found = re.findall(r'<button[^>]*>(.*?)</button>|<a class="button[^"]*"[^>]*>(.*?)</a>|<summary[^>]*>(.*?)'
                       r'</summary>', html, re.S)
    return [words("".join(parts)) for parts in found]


def test_row_buttons_name_the_domain_they_act_on(admin_client, workspace):
    add_domain(workspace, "acme.test")
    add_domain(workspace, "acme.org", "email", inbox="admin")
    expired = add_domain(workspace, "acme.net")
    expired.status = "expired"
    db.session.commit()
    html = admin_client.get("/settings/domains", headers=FRAGMENT).get_data(as_text=True)  # the list
    assert ".visually-hidden {" in admin_client.get("/static/css/app.css").get_data(as_text=True)
    names = accessible_names(html)
    for name in ("Copy the TXT record name for acme.test", "Copy the TXT record value for acme.test",
                 "acme.test: Re-check now", "acme.test: Remove…", "acme.test: Refresh",
                 "acme.test: Switch method", "acme.test: Switch and restart",
                 "acme.org: Resend email", "acme.org: Remove…", "acme.net: Restart verification"):
        assert name in names
    assert "Copy" not in names and "Re-check now" not in names and "Remove…" not in names  # none left unnamed
    # Sighted admins still see "Copy": the rest is for screen readers.
    assert 'Copy<span class="visually-hidden"> the TXT record name for acme.test</span></button>' in html


# --- access -----------------------------------------------------------------------------------------

ACTIONS = ["check", "resend", "restart", "method", "remove"]


def test_a_row_removed_elsewhere_disappears_from_an_open_page(admin_client, workspace):
    domain = add_domain(workspace, "acme.test")
    db.session.commit()
    poll = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    poll_url = unescape(poll.split('hx-get="', 1)[1].split('"', 1)[0])
    admin_client.post(f"/settings/domains/{domain.id}/remove")
    response = admin_client.get(poll_url, headers=FRAGMENT)
    assert response.status_code == 200 and response.get_data(as_text=True) == ""  # outerHTML swap: row gone
    assert response.headers["HX-Trigger"] == "domains-changed"
    assert admin_client.get(f"/settings/domains/{domain.id}").status_code == 404


def test_switch_to_an_unknown_inbox_is_refused(admin_client, workspace):
    domain = add_domain(workspace, "acme.test")
    db.session.commit()
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "email", "inbox": "ceo"},
                                 headers=FRAGMENT)
    assert response.status_code == 422 and "Choose the inbox" in response.get_data(as_text=True)
    assert domains()[0].method == "dns"


def test_other_workspaces_domains_are_404(admin_client, make_workspace):
    globex = make_workspace("Globex", admin_email="admin@globex.test")
    theirs = add_domain(globex, "globex.test")
    db.session.commit()
    assert admin_client.get(f"/settings/domains/{theirs.id}").status_code == 404
    assert admin_client.get(f"/settings/domains/{theirs.id}", headers=FRAGMENT).get_data(as_text=True) == ""
    for action in ACTIONS:
        assert admin_client.post(f"/settings/domains/{theirs.id}/{action}").status_code == 404
    assert domains()[0].status == "pending"


def test_members_who_are_not_admins_get_403(client, workspace, make_user):
    domain = add_domain(workspace, "acme.test")
    db.session.commit()
    make_user(workspace, "creator@acme.test", role="creator")
    sign_in(client, "creator@acme.test")
    assert client.get("/settings/domains").status_code == 403
    assert client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).status_code == 403
    assert client.post("/settings/domains", data={"name": "evil.test", "method": "dns"}).status_code == 403
    for action in ACTIONS:
        assert client.post(f"/settings/domains/{domain.id}/{action}").status_code == 403
    assert [d.name for d in domains()] == ["acme.test"]


def test_signed_out_htmx_poll_gets_401_with_redirect(client, workspace):
    domain = add_domain(workspace, "acme.test")
    db.session.commit()
    response = client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT)
    assert response.status_code == 401 and response.headers["HX-Redirect"] == "/login"


def test_non_enterprise_workspaces_see_it_locked(client, make_workspace):
    make_workspace("Small", plan="business", admin_email="admin@small.test")
    sign_in(client, "admin@small.test")
    page = client.get("/settings/security").get_data(as_text=True)
    assert "Security features need the Enterprise plan" in page and 'id="domains"' not in page
    response = client.post("/settings/domains", data={"name": "small.test", "method": "dns"})
    assert response.status_code == 403 and "Authorized domains need the Enterprise plan" in response.get_data(
        as_text=True)
    assert client.get("/settings/domains").status_code == 403
    assert domains() == []


# --- CSRF on every action -----------------------------------------------------------------------

@pytest.mark.csrf
@pytest.mark.parametrize("action, data", [
    ("add", {"name": "new.test", "method": "dns", "inbox": "admin"}),
    ("check", {}), ("resend", {}), ("restart", {}), ("method", {"method": "email", "inbox": "admin"}),
    ("remove", {}),
])
def test_every_action_needs_the_csrf_token(client, admin, workspace, action, data):
    dns_domain = add_domain(workspace, "acme.test")
    email_domain = add_domain(workspace, "acme.org", "email", inbox="admin")
    dns_domain.status = "expired"
    db.session.execute(update(OutboundEmail).values(created_at=utcnow() - dt.timedelta(minutes=5)))  # resend allowed
    db.session.commit()
    sign_in_with_csrf(client, admin.email)
    target = email_domain if action == "resend" else dns_domain
    url = "/settings/domains" if action == "add" else f"/settings/domains/{target.id}/{action}"
    before = [(d.name, d.status, d.method, d.check_requested_at, d.email_token_hash) for d in domains()]
    for headers in ({}, FRAGMENT, {**FRAGMENT, "X-CSRFToken": "forged"}):
        response = client.post(url, data=data, headers=headers)
        assert response.status_code == 400, (headers, response.get_data(as_text=True)[:300])
        assert "form has expired" in response.get_data(as_text=True)
    assert [(d.name, d.status, d.method, d.check_requested_at, d.email_token_hash) for d in domains()] == before
    token = csrf_token_from(client.get("/settings/security").get_data(as_text=True))
    response = client.post(url, data=data, headers={**FRAGMENT, "X-CSRFToken": token})
    assert response.status_code in (200, 303), response.get_data(as_text=True)[:500]
    assert [(d.name, d.status, d.method, d.check_requested_at, d.email_token_hash) for d in domains()] != before


# --- switching method -------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["expired", "pending"])
def test_switch_method_refused_once_another_workspace_verified_the_domain(admin_client, workspace, make_workspace,
                                                                          status):
    """As Restart is: switching would start a round that cannot succeed, and email the inbox of a
    domain another workspace owns, naming this workspace."""
    domain = add_domain(workspace, "acme.test")
    domain.status = status
    db.session.commit()
    add_domain(make_workspace("Globex", admin_email="admin@globex.test"), "acme.test", verified=True)
    db.session.commit()
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "email", "inbox": "admin"},
                                 headers=FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert ("Another workspace has verified acme.test (or a parent or subdomain of it) since; it cannot be verified "
            "here.") in html and "Globex" not in html
    (ours,) = [d for d in domains() if d.workspace_id == workspace.id]
    assert (ours.status, ours.method) == (status, "dns")
    assert db.session.scalar(select(OutboundEmail.id)) is None  # nobody at acme.test was emailed


def test_switching_to_the_method_already_in_use_says_what_it_is_waiting_for(admin_client, workspace):
    dns = add_domain(workspace, "acme.test")
    by_email = add_domain(workspace, "acme.org", "email", inbox="postmaster")
    expired = add_domain(workspace, "acme.net")
    expired.status = "expired"
    db.session.commit()

    def error(domain, **data):
        response = admin_client.post(f"/settings/domains/{domain.id}/method", data=data, headers=FRAGMENT)
        assert response.status_code == 422
        return re.search(r'<p class="error" role="alert">([^<]*)</p>', response.get_data(as_text=True)).group(1)

    assert error(dns, method="dns") == "acme.test is already waiting for verification by DNS TXT record."
    assert error(by_email, method="email", inbox="postmaster") == (
        "acme.org is already waiting for verification by email to postmaster@acme.org.")
    assert error(expired, method="dns") == (
        "acme.net is already set to be verified by DNS TXT record: press “Restart verification” to try again.")
    assert [d.status for d in domains()] == ["pending", "pending", "expired"]


# --- an add that collides at the last moment ----------------------------------------------------------

@pytest.mark.postgres
def test_a_double_submitted_add_says_it_is_already_in_the_list(db_backend, admin_client, workspace, monkeypatch):
    """The second of two identical posts passes the checks while the first commits, and hits
    the (workspace, name) unique constraint: no other workspace is involved, and none is blamed."""
    from app.domains import service
    from app.models import Domain as DomainRow
    checked = service.verified_domain_covering

    def first_post_commits_meanwhile(workspace_id, name):
        if not db.session.scalar(select(DomainRow.id)):
            db.session.add(DomainRow(workspace_id=workspace_id, name=name, registrable=name, txt_value="x" * 32))
            db.session.commit()
        return checked(workspace_id, name)
    monkeypatch.setattr(service, "verified_domain_covering", first_post_commits_meanwhile)
    response = admin_client.post("/settings/domains", data={"name": "acme.test", "method": "dns", "inbox": "admin"},
                                 headers=FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "acme.test is already in this workspace&#39;s list: another request added it at the same moment." in html
    assert "Another workspace" not in html and "another workspace" not in html
    assert [d.name for d in domains()] == ["acme.test"]
    assert 'id="domain-1"' in html  # the list shows the row that won


@pytest.mark.parametrize("who", ["this workspace", "another workspace"])
def test_cli_add_that_collides_at_the_last_moment_says_with_what(app, workspace, make_workspace, monkeypatch, who):
    """`domain add --verified` while the same name is added to this workspace (a second
    command), or verified by another: the unique constraints refuse it, and the CLI tells which."""
    from app.domains import verification
    from app.models import Domain as DomainRow
    globex = make_workspace("Globex", admin_email="admin@globex.test")
    owner = workspace if who == "this workspace" else globex
    real, calls = verification.conflicting_domain, []

    def committed_meanwhile(name, workspace_id):
        calls.append(name)
        if len(calls) == 1:
            db.session.add(DomainRow(workspace_id=owner.id, name=name, registrable=name, txt_value="x" * 32,
                                     status="verified"))
            db.session.commit()
        return None if len(calls) <= 2 else real(name, workspace_id)  # add_domain's two checks miss it
    monkeypatch.setattr(verification, "conflicting_domain", committed_meanwhile)
    result = app.test_cli_runner().invoke(args=["domain", "add", "--workspace", workspace.slug, "acme.com",
                                                "--verified"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == ("Error: " + (
        "acme.com is already in this workspace's list: another request added it at the same moment."
        if who == "this workspace" else
        "acme.com cannot be added: another workspace verified it (or a parent or subdomain of it) at the same "
        "moment. If your organization owns it, contact support."))
    assert [(d.workspace_id, d.status) for d in domains()] == [(owner.id, "verified")]
