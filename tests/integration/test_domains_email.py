"""Verification by email: a real SMTP server captures the message, the link is
followed with a real client (no sign-in), and the admin's row changes."""
import datetime as dt
import re
from html import unescape

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import AuditEvent, Domain, OutboundEmail, utcnow
from tests.conftest import csrf_token_from, sign_in, sign_in_with_csrf

FRAGMENT = {"HX-Request": "true"}


def add_by_email(client, name="acme.test", inbox="hostmaster"):
    response = client.post("/settings/domains", data={"name": name, "method": "email", "inbox": inbox})
    assert response.status_code == 303, response.get_data(as_text=True)
    return db.session.scalar(select(Domain).where(Domain.name == name))


def link_in(smtp, to):
    (message,) = smtp.inbox.to(to)
    text = smtp.inbox.text(message)
    html = message.get_body(preferencelist=("html",)).get_content()
    link = re.search(r"https?://\S+/domains/verify/([\w-]+)", text)
    assert link and link.group(0) in html
    return message, "/domains/verify/" + link.group(1)


def test_email_link_verifies_after_confirming(mail_app, smtp, admin_client, app, jobs, workspace):
    domain = add_by_email(admin_client)
    row = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    assert "Pending validation" in row and "Sending a verification link to <strong>hostmaster@acme.test" in row
    poll = unescape(row.split('hx-get="', 1)[1].split('"', 1)[0])
    assert admin_client.get(poll, headers=FRAGMENT).status_code == 204
    jobs()  # the RQ job delivers the email
    assert admin_client.get(poll, headers=FRAGMENT).status_code == 200  # the open page learns it was sent
    message, path = link_in(smtp, "hostmaster@acme.test")
    assert message["Subject"] == "Verify acme.test for Acme on Gatehouse"
    assert "expires on" in smtp.inbox.text(message)
    row = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    assert "We emailed a verification link to <strong>hostmaster@acme.test</strong>" in row
    assert db.session.scalar(select(Domain.email_token_hash)) != path.rsplit("/", 1)[1]  # stored hashed

    stranger = app.test_client()  # the person at the inbox: not signed in
    page = stranger.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "acme.test" in html and "<strong>Acme</strong>" in html and "Verify acme.test for Acme" in html
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).status == "pending"  # a GET (mail scanner prefetch) verifies nothing

    done = stranger.post(path)
    assert done.status_code == 200 and "acme.test is verified" in done.get_data(as_text=True)
    db.session.expire_all()
    domain = db.session.get(Domain, domain.id)
    assert domain.status == "verified" and domain.verified_by == "hostmaster@acme.test (emailed link)"
    row = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    assert "Verified" in row and "hx-trigger" not in row
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.workspace_id == workspace.id)).all()
    assert "domain.email_sent" in actions and actions[-1] == "domain.verified"

    again = stranger.post(path)  # single use
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    assert stranger.get(path).status_code == 410


def test_expired_link(mail_app, smtp, admin_client, app, jobs):
    add_by_email(admin_client)
    jobs()
    _, path = link_in(smtp, "hostmaster@acme.test")
    db.session.execute(update(Domain).values(email_token_expires_at=utcnow() - dt.timedelta(minutes=1)))
    db.session.commit()
    page = app.test_client().get(path)
    assert page.status_code == 410 and "This link expired on" in page.get_data(as_text=True)
    assert app.test_client().post(path).status_code == 410
    assert db.session.scalar(select(Domain.status)) == "pending"


def test_unknown_and_replaced_links(mail_app, smtp, admin_client, app, jobs):
    domain = add_by_email(admin_client)
    jobs()
    _, first = link_in(smtp, "hostmaster@acme.test")
    assert app.test_client().get("/domains/verify/not-a-real-token").status_code == 404
    assert app.test_client().get("/domains/verify/" + "x" * 500).status_code == 404
    db.session.execute(update(OutboundEmail).values(created_at=utcnow() - dt.timedelta(minutes=2)))
    db.session.commit()
    assert admin_client.post(f"/settings/domains/{domain.id}/resend").status_code == 303
    jobs()
    assert len(smtp.inbox) == 2
    page = app.test_client().get(first)  # the older link no longer works
    assert page.status_code == 404 and "only the latest link works" in page.get_data(as_text=True)


def test_link_names_its_own_workspace_and_never_touches_another(mail_app, smtp, admin_client, app, jobs,
                                                                make_workspace):
    add_by_email(admin_client)
    jobs()
    _, path = link_in(smtp, "hostmaster@acme.test")
    globex = make_workspace("Globex", admin_email="admin@globex.test")
    globex_admin = app.test_client()
    sign_in(globex_admin, "admin@globex.test")
    page = globex_admin.get(path).get_data(as_text=True)
    assert "<strong>Acme</strong>" in page and "Globex" not in page.split('id="main"', 1)[1].split("</section>")[0]
    assert globex_admin.post(path).status_code == 200
    db.session.expire_all()
    (domain,) = db.session.scalars(select(Domain)).all()
    assert domain.workspace_id != globex.id and domain.status == "verified"


def test_link_refused_when_another_workspace_verified_first(mail_app, smtp, admin_client, app, jobs, make_workspace):
    from app.domains.service import add_domain
    add_by_email(admin_client)
    jobs()
    _, path = link_in(smtp, "hostmaster@acme.test")
    globex = make_workspace("Globex", admin_email="admin@globex.test")
    add_domain(globex, "acme.test", verified=True)
    db.session.commit()
    response = app.test_client().post(path)
    assert response.status_code == 409 and "another workspace has already verified it" in response.get_data(
        as_text=True)
    assert sorted(db.session.scalars(select(Domain.status))) == ["pending", "verified"]


def test_resend_refused_once_another_workspace_verified_the_domain(mail_app, smtp, admin_client, make_workspace,
                                                                   jobs):
    """As Restart and Switch method are: its inbox is not mailed again on this workspace's behalf,
    and the row says why instead of offering the button."""
    from app.domains.service import add_domain
    domain = add_by_email(admin_client, inbox="admin")
    jobs()
    age_emails()  # the once-a-minute limit is not what refuses
    add_domain(make_workspace("Globex", admin_email="admin@globex.test"), "acme.test", verified=True)
    db.session.commit()
    why = "Another workspace has verified acme.test (or a parent or subdomain of it) since; it cannot be verified here."
    row = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    assert why in row and "Resend email" not in row and "We emailed a verification link" not in row
    response = admin_client.post(f"/settings/domains/{domain.id}/resend", headers=FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and why in html and "Globex" not in html
    jobs()
    assert len(smtp.inbox.to("admin@acme.test")) == 1
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail).where(
        OutboundEmail.to == "admin@acme.test")) == 1


def test_record_missing_and_failed_emails_link_to_the_domains(mail_app, smtp, admin_client, dns_zone, jobs):
    from app.domains import verification
    from jobs.domains import sweep_domains

    def check_now(**values):
        db.session.execute(update(Domain).values(next_check_at=utcnow() - dt.timedelta(seconds=1), **values))
        db.session.commit()
        sweep_domains()
        jobs()

    admin_client.post("/settings/domains", data={"name": "acme.test", "method": "dns", "inbox": "admin"})
    domain = db.session.scalar(select(Domain))
    dns_zone.txt[domain.record_name] = [domain.record_value]
    jobs()
    dns_zone.txt.clear()
    check_now()  # the record is gone: a warning
    check_now(record_missing_since=utcnow() - verification.GRACE)  # still gone 3 days later: failed
    warning, failure = smtp.inbox.to("admin@acme.test")
    assert "Action needed" in warning["Subject"] and "is no longer verified" in failure["Subject"]
    url = "http://localhost/settings/security#domains"
    for message in (warning, failure):
        assert url in smtp.inbox.text(message)
        assert f'<a href="{url}">Settings → Security → Authorized domains</a>' in message.get_body(
            preferencelist=("html",)).get_content()


def test_smtp_failure_is_retried_and_shown_on_the_row(app, admin_client, jobs):
    from tests.support.servers import free_port
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nobody listening
    domain = add_by_email(admin_client)
    jobs()
    row = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    assert "email not sent yet: the mail server refused the connection (we will retry)" in row
    assert 'hx-trigger="every 3s"' in row


def test_resend_is_rate_limited(mail_app, smtp, admin_client, jobs):
    domain = add_by_email(admin_client)
    response = admin_client.post(f"/settings/domains/{domain.id}/resend", headers=FRAGMENT)
    assert response.status_code == 422
    assert f"An email was sent to {domain.inbox_address} less than a minute ago" in response.get_data(as_text=True)
    for _ in range(4):
        db.session.execute(update(OutboundEmail).values(created_at=utcnow() - dt.timedelta(minutes=5)))
        db.session.commit()
        assert admin_client.post(f"/settings/domains/{domain.id}/resend", headers=FRAGMENT).status_code == 200
    db.session.execute(update(OutboundEmail).values(created_at=utcnow() - dt.timedelta(minutes=5)))
    db.session.commit()
    response = admin_client.post(f"/settings/domains/{domain.id}/resend", headers=FRAGMENT)
    assert response.status_code == 422 and f"5 emails were sent to {domain.inbox_address} today" in response.get_data(as_text=True)


def test_no_way_around_the_email_limit(mail_app, smtp, admin_client):
    """Removing and adding the domain again, or flipping inboxes: one inbox still gets at
    most one verification email a minute from one workspace."""
    assert admin_client.post("/settings/domains", data={"name": "acme.test", "method": "email",
                                                       "inbox": "admin"}).status_code in (200, 303)
    domain = db.session.scalar(select(Domain))
    admin_client.post(f"/settings/domains/{domain.id}/remove", data={"confirm": "y"})
    assert db.session.scalar(select(Domain)) is None
    response = admin_client.post("/settings/domains", data={"name": "acme.test", "method": "email", "inbox": "admin"},
                                 headers=FRAGMENT)
    assert response.status_code == 422
    assert "An email was sent to admin@acme.test less than a minute ago" in response.get_data(as_text=True)
    assert db.session.scalar(select(Domain)) is None  # refused whole: no domain without its email
    # Another inbox is another person: it gets its email, and flipping back to admin@ does not.
    assert admin_client.post("/settings/domains", data={"name": "acme.test", "method": "email",
                                                       "inbox": "postmaster"}).status_code in (200, 303)
    domain = db.session.scalar(select(Domain))
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "email", "inbox": "admin"},
                                 headers=FRAGMENT)
    assert response.status_code == 422 and "less than a minute ago" in response.get_data(as_text=True)
    sent = db.session.scalars(select(OutboundEmail.to).where(OutboundEmail.template == "domain_verification")).all()
    assert sorted(sent) == ["admin@acme.test", "postmaster@acme.test"]


def age_emails(minutes=5):
    db.session.execute(update(OutboundEmail).values(created_at=utcnow() - dt.timedelta(minutes=minutes)))
    db.session.commit()


def send_verification_emails(workspace, count, inbox="admin", name="acme.test"):
    """`count` verification emails from `workspace` to one inbox, a few minutes apart."""
    from app.domains.service import add_domain, resend_email, switch_method
    domain = db.session.scalar(select(Domain).where(Domain.workspace_id == workspace.id, Domain.name == name))
    for _ in range(count):
        age_emails()
        if domain is None:
            domain = add_domain(workspace, name, "email", inbox=inbox)
        elif domain.email_inbox != inbox:
            switch_method(domain, "email", actor=None, inbox=inbox)
        else:
            resend_email(domain, actor=None)
        db.session.commit()
    age_emails()


def add_error(client, inbox="admin", name="acme.test"):
    response = client.post("/settings/domains", data={"name": name, "method": "email", "inbox": inbox},
                           headers=FRAGMENT)
    errors = re.findall(r'<p class="error"[^>]*>([^<]*)</p>', response.get_data(as_text=True))
    return response.status_code, errors


@pytest.mark.postgres
def test_another_workspace_cannot_use_up_our_verification_emails(mail_app, smtp, admin_client, make_workspace,
                                                                  workspace):
    """The per-minute and per-day limits count one workspace's emails to one inbox: a workspace
    that sent all it may to every inbox at acme.test takes none of ours, and its last email,
    seconds ago, is not told to us."""
    from app.domains.service import INBOXES, DomainError, resend_email
    intruder = make_workspace("Intruder", admin_email="admin@intruder.test")
    for inbox in INBOXES:
        send_verification_emails(intruder, 5, inbox=inbox)
    with pytest.raises(DomainError, match="5 emails were sent to webmaster@acme.test today"):
        resend_email(db.session.scalar(select(Domain).where(Domain.workspace_id == intruder.id)), actor=None)
    db.session.rollback()
    db.session.execute(update(OutboundEmail).where(OutboundEmail.to == "admin@acme.test")
                       .values(created_at=utcnow()))  # the intruder's latest just went out
    db.session.commit()
    assert add_error(admin_client) == (200, [])
    domain = db.session.scalar(select(Domain).where(Domain.workspace_id == workspace.id))
    assert domain.status == "pending" and domain.email_inbox == "admin"
    ours = db.session.scalars(select(OutboundEmail).where(OutboundEmail.workspace_id == workspace.id)).all()
    assert [m.to for m in ours] == ["admin@acme.test"]


@pytest.mark.postgres
def test_one_inbox_gets_at_most_20_verification_emails_a_day_from_all_workspaces(mail_app, smtp, admin_client, app,
                                                                                  make_workspace, workspace):
    """Each workspace within its own 5 a day, together they reach the inbox's cap: then nobody
    may send it more today, and the refusal tells nothing of who sent what."""
    send_verification_emails(workspace, 1)  # one of ours
    for i, count in enumerate((5, 5, 5, 4)):  # 19 from four other workspaces
        send_verification_emails(make_workspace(f"W{i}", admin_email=f"admin@w{i}.test"), count)
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 20

    domain = db.session.scalar(select(Domain).where(Domain.workspace_id == workspace.id))
    response = admin_client.post(f"/settings/domains/{domain.id}/resend", headers=FRAGMENT)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert ("No more verification emails can go to admin@acme.test today. Try again tomorrow, pick another inbox, "
            "or verify by DNS instead.") in html
    for revealing in ("workspace", "less than a minute", "emails were sent", "20", "19"):
        assert revealing not in html.split('role="alert">', 1)[1].split("</p>", 1)[0]
    make_workspace("Newcomer", admin_email="admin@newcomer.test")  # has sent nothing: refused all the same
    newcomer = app.test_client()
    sign_in(newcomer, "admin@newcomer.test")
    assert add_error(newcomer) == (422, [
        "No more verification emails can go to admin@acme.test today. Try again tomorrow, pick another inbox, "
        "or verify by DNS instead."])
    # Another inbox at the domain is another person, with its own 20.
    response = admin_client.post(f"/settings/domains/{domain.id}/method",
                                 data={"method": "email", "inbox": "postmaster"}, headers=FRAGMENT)
    assert response.status_code == 200 and "Email to postmaster@acme.test" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 21


def test_an_expired_link_says_so_after_the_sweep(mail_app, smtp, admin_client, app, jobs):
    """The sweep expires the domain; the link's holder is still told it expired, and when,
    not that it never existed; and it verifies nothing."""
    from jobs.domains import sweep_domains
    domain = add_by_email(admin_client)
    jobs()
    _, path = link_in(smtp, "hostmaster@acme.test")
    db.session.execute(update(Domain).values(email_token_expires_at=utcnow() - dt.timedelta(minutes=1)))
    db.session.commit()
    assert sweep_domains()["expired"] == 1
    db.session.expire_all()
    expires_on = db.session.get(Domain, domain.id).email_token_expires_at
    assert db.session.get(Domain, domain.id).status == "expired"
    for response in (app.test_client().get(path), app.test_client().post(path)):
        html = response.get_data(as_text=True)
        assert response.status_code == 410
        assert (f"This link expired on {expires_on:%Y-%m-%d}. Ask an admin of Acme to send a new one from "
                "Settings → Security.") in html
        assert "not valid" not in html
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).status == "expired"
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "domain.verified")) == 0
    # Restarted: a new email, and the old link is the replaced one.
    age_emails()
    assert admin_client.post(f"/settings/domains/{domain.id}/restart").status_code == 303
    response = app.test_client().get(path)
    assert response.status_code == 404 and "only the latest link works" in response.get_data(as_text=True)


def test_switching_to_email_and_back(mail_app, smtp, admin_client, jobs, workspace):
    response = admin_client.post("/settings/domains", data={"name": "acme.test", "method": "dns", "inbox": "admin"})
    domain = db.session.scalar(select(Domain))
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "email", "inbox": "webmaster"},
                                 headers=FRAGMENT)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Email to webmaster@acme.test" in html and "Resend email" in html
    jobs()
    link_in(smtp, "webmaster@acme.test")
    response = admin_client.post(f"/settings/domains/{domain.id}/method", data={"method": "dns"}, headers=FRAGMENT)
    assert "_gatehouse-challenge.acme.test" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).email_token_hash is None  # the emailed link is void
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.action == "domain.method_changed")).all()
    assert len(actions) == 2


@pytest.mark.csrf
def test_confirm_page_post_needs_its_csrf_token(mail_app, smtp, client, admin, app, jobs):
    admin_client = sign_in_with_csrf(client, admin.email)
    token = csrf_token_from(admin_client.get("/settings/security").get_data(as_text=True))
    admin_client.post("/settings/domains", data={"name": "acme.test", "method": "email", "inbox": "admin",
                                                 "csrf_token": token})
    jobs()
    _, path = link_in(smtp, "admin@acme.test")
    stranger = app.test_client()
    refused = stranger.post(path)
    assert refused.status_code == 400 and "form has expired" in refused.get_data(as_text=True)
    page = stranger.get(path).get_data(as_text=True)
    assert stranger.post(path, data={"csrf_token": csrf_token_from(page)}).status_code == 200


def test_idn_domain_mail_goes_to_the_ascii_address_and_reads_in_unicode(mail_app, smtp, admin_client, jobs):
    response = admin_client.post("/settings/domains", data={"name": "Bücher.example", "method": "email",
                                                            "inbox": "postmaster"})
    assert response.status_code == 303
    domain = db.session.scalar(select(Domain))
    jobs()
    message, _ = link_in(smtp, "postmaster@xn--bcher-kva.example")
    assert message["Subject"] == "Verify bücher.example for Acme on Gatehouse"
    row = admin_client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)
    assert "We emailed a verification link to <strong>postmaster@bücher.example</strong>" in row
