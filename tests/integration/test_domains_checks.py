"""DNS checks end to end: a real DNS server, real RQ jobs, the admin's page."""
import datetime as dt

import pytest
from sqlalchemy import select, update

from app.domains import verification
from app.extensions import db, rq
from app.models import AuditEvent, Domain, utcnow
from jobs.domains import sweep_domains

FRAGMENT = {"HX-Request": "true"}


def add(client, name="acme.test", **data):
    response = client.post("/settings/domains", data={"name": name, "method": "dns", "inbox": "admin", **data})
    assert response.status_code == 303, response.get_data(as_text=True)
    return db.session.scalar(select(Domain).where(Domain.name == name))


def row_html(client, domain):
    return client.get(f"/settings/domains/{domain.id}", headers=FRAGMENT).get_data(as_text=True)


def reload(domain):
    db.session.expire_all()
    return db.session.get(Domain, domain.id)


def make_due(domain, **values):
    db.session.execute(update(Domain).where(Domain.id == domain.id)
                       .values(next_check_at=utcnow() - dt.timedelta(seconds=1), **values))
    db.session.commit()


def audit_actions(workspace):
    return [e.action for e in db.session.scalars(select(AuditEvent).where(AuditEvent.workspace_id == workspace.id)
                                                 .order_by(AuditEvent.id))]


def test_add_checks_at_once_and_shows_nxdomain_then_check_now_verifies(admin_client, dns_zone, jobs, workspace):
    domain = add(admin_client)
    jobs()  # the check enqueued on add
    html = row_html(admin_client, domain)
    assert "Pending validation" in html
    assert "_gatehouse-challenge.acme.test does not exist in DNS (NXDOMAIN)" in html
    assert 'hx-trigger="every 3s"' in html  # still pending: it polls

    dns_zone.txt[domain.record_name] = [domain.record_value]
    response = admin_client.post(f"/settings/domains/{domain.id}/check", headers=FRAGMENT)
    assert response.status_code == 200 and "Checking DNS now" in response.get_data(as_text=True)
    jobs()
    html = row_html(admin_client, domain)
    assert "Verified" in html and "Pending validation" not in html
    assert "hx-trigger" not in html  # settled: no more polling
    assert "Subdomains such as" in html
    assert reload(domain).verified_by == "DNS check"
    assert audit_actions(workspace)[-1] == "domain.verified"


def test_split_strings_and_cname_verify(admin_client, dns_zone, jobs):
    domain = add(admin_client)
    value = domain.record_value
    dns_zone.txt[domain.record_name] = ["v=spf1 -all", [value[:20], value[20:]]]
    jobs()
    assert reload(domain).status == "verified"
    other = add(admin_client, "globex.test")
    dns_zone.cname[other.record_name] = "globex.verify.provider.test"
    dns_zone.txt["globex.verify.provider.test"] = [f'"{other.record_value.upper()} "']
    jobs()
    assert reload(other).status == "verified"
    assert "following CNAME to globex.verify.provider.test" in reload(other).last_detail


def test_wrong_value_shows_what_was_found(admin_client, dns_zone, jobs):
    domain = add(admin_client)
    dns_zone.txt[domain.record_name] = ["gatehouse-domain-verification=copied-from-somewhere-else", "hello"]
    jobs()
    html = row_html(admin_client, domain)
    assert "Pending validation" in html
    assert "Found 2 TXT records at _gatehouse-challenge.acme.test, but none is " + domain.record_value in html
    assert "<code>gatehouse-domain-verification=copied-from-somewhere-else</code>" in html
    assert "<code>hello</code>" in html


def test_timeout_and_servfail_in_plain_words(admin_client, dns_zone, jobs, app):
    app.config["DNS_TIMEOUT"] = 0.5
    domain = add(admin_client)
    dns_zone.silent.add(domain.record_name)
    jobs()
    assert "No DNS server answered within 0.5 seconds (timeout)" in row_html(admin_client, domain)
    dns_zone.silent.clear()
    dns_zone.servfail.add(domain.record_name)
    admin_client.post(f"/settings/domains/{domain.id}/check")
    jobs()
    assert "failed to answer (SERVFAIL)" in row_html(admin_client, domain)
    assert reload(domain).status == "pending"


def test_row_poll_answers_204_until_something_changes(admin_client, dns_zone, jobs):
    domain = add(admin_client)
    jobs()
    html = row_html(admin_client, domain)
    poll_url = html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert admin_client.get(poll_url, headers=FRAGMENT).status_code == 204
    dns_zone.txt[domain.record_name] = [domain.record_value]
    admin_client.post(f"/settings/domains/{domain.id}/check")
    jobs()
    response = admin_client.get(poll_url, headers=FRAGMENT)
    assert response.status_code == 200 and "Verified" in response.get_data(as_text=True)
    assert response.headers["HX-Trigger"] == "domains-changed"  # the members panel refreshes
    assert "HX-Request" in response.headers["Vary"]


def test_backoff_schedule_then_expired_and_restart(admin_client, dns_zone, jobs, workspace):
    domain = add(admin_client)
    jobs()
    gaps = []
    for _ in range(7):
        make_due(domain)
        assert sweep_domains()["due"] == 1
        before = utcnow()
        jobs()
        gaps.append(round((reload(domain).next_check_at - before).total_seconds() / 60))
    assert gaps == [2, 5, 10, 30, 60, 60, 60]  # 1 minute after adding, then 2, 5, 10, 30, hourly
    make_due(domain, started_at=utcnow() - verification.PENDING_FOR)
    sweep_domains()
    jobs()
    assert reload(domain).status == "expired" and reload(domain).next_check_at is None
    assert "domain.expired" in audit_actions(workspace)
    html = row_html(admin_client, domain)
    assert "Expired" in html and "Restart verification" in html and "hx-trigger" not in html
    dns_zone.txt[domain.record_name] = [domain.record_value]
    admin_client.post(f"/settings/domains/{domain.id}/restart")
    jobs()
    assert reload(domain).status == "verified"


def test_an_expired_domain_whose_record_is_back_is_verified_by_re_check_now(admin_client, dns_zone, jobs,
                                                                              workspace):
    """The record published after the 7 days: "Re-check now" on the expired row finds it, and
    the proof is enough (no restart needed)."""
    domain = add(admin_client)
    jobs()
    make_due(domain, started_at=utcnow() - verification.PENDING_FOR)
    sweep_domains()
    jobs()
    assert reload(domain).status == "expired"
    assert "Re-check now" in row_html(admin_client, domain)
    dns_zone.txt[domain.record_name] = [domain.record_value]
    admin_client.post(f"/settings/domains/{domain.id}/check")
    jobs()
    assert reload(domain).status == "verified"


@pytest.mark.postgres
def test_sweep_batches_domains_into_few_jobs(db_backend, app, workspace, dns_zone, jobs):
    from app.domains.service import add_domain
    domains = [add_domain(workspace, f"d{i}.test") for i in range(25)]
    db.session.commit()
    for d in domains[:10]:
        dns_zone.txt[d.record_name] = [d.record_value]
    db.session.execute(update(Domain).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))
    db.session.commit()
    assert sweep_domains(batch_size=10) == {"due": 25, "batches": 3, "expired": 0}
    assert rq.queue("default").count == 3  # one job per batch, not one per domain
    assert sweep_domains(batch_size=10)["due"] == 0  # leased while the batches run
    jobs()
    statuses = [reload(d).status for d in domains]
    assert statuses.count("verified") == 10 and statuses.count("pending") == 15
    assert all(reload(d).last_checked_at is not None for d in domains)


def test_sweep_re_enqueues_after_redis_is_flushed(admin_client, dns_zone, jobs, app):
    domain = add(admin_client)  # its immediate check is queued...
    rq.connection.flushall()  # ...and lost
    dns_zone.txt[domain.record_name] = [domain.record_value]
    make_due(domain)
    assert sweep_domains()["due"] == 1
    rq.connection.flushall()  # the batch job is lost too; the domain is leased for a while
    assert sweep_domains()["due"] == 0
    make_due(domain)  # the lease ran out
    assert sweep_domains()["due"] == 1
    jobs()
    assert reload(domain).status == "verified"


def test_email_domains_expire_with_their_link(admin_client, jobs, workspace):
    admin_client.post("/settings/domains", data={"name": "acme.test", "method": "email", "inbox": "postmaster"})
    domain = db.session.scalar(select(Domain))
    db.session.execute(update(Domain).values(email_token_expires_at=utcnow() - dt.timedelta(seconds=1)))
    db.session.commit()
    assert sweep_domains()["expired"] == 1
    assert reload(domain).status == "expired" and reload(domain).next_check_at is None
    assert "domain.expired" in audit_actions(workspace)


# --- re-verification ------------------------------------------------------------------------------

@pytest.fixture
def verified(admin_client, dns_zone, jobs):
    domain = add(admin_client)
    dns_zone.txt[domain.record_name] = [domain.record_value]
    jobs()
    assert reload(domain).status == "verified"
    assert reload(domain).next_check_at > utcnow() + dt.timedelta(hours=23)  # re-checked daily
    return domain


def test_record_gone_warns_then_fails_after_grace(mail_app, smtp, verified, dns_zone, jobs, admin_client, workspace):
    dns_zone.txt.clear()
    make_due(verified)
    sweep_domains()
    jobs()
    domain = reload(verified)
    assert domain.status == "verified" and domain.record_missing_since is not None
    assert "domain.record_missing" in audit_actions(workspace)
    (warning,) = smtp.inbox.to("admin@acme.test")
    assert "Action needed" in warning["Subject"] and "_gatehouse-challenge.acme.test" in smtp.inbox.text(warning)
    assert "has been missing since" in row_html(admin_client, domain)

    make_due(verified)  # a day later, still missing, within the grace period: no second email
    sweep_domains()
    jobs()
    assert reload(verified).status == "verified" and len(smtp.inbox) == 1

    make_due(verified, record_missing_since=utcnow() - verification.GRACE)
    sweep_domains()
    jobs()
    assert reload(verified).status == "failed"
    assert audit_actions(workspace)[-1] == "domain.failed"
    assert "is no longer verified" in smtp.inbox[-1]["Subject"]
    html = row_html(admin_client, verified)
    assert "Failed" in html and "Restart verification" in html


def test_record_back_within_grace_clears_the_warning(verified, dns_zone, jobs, workspace):
    records = dict(dns_zone.txt)
    dns_zone.txt.clear()
    make_due(verified)
    sweep_domains(), jobs()
    dns_zone.txt.update(records)
    make_due(verified)
    sweep_domains(), jobs()
    assert reload(verified).record_missing_since is None
    assert audit_actions(workspace)[-1] == "domain.record_restored"


def test_dns_outage_does_not_start_the_grace_period(verified, dns_zone, jobs, app):
    app.config["DNS_TIMEOUT"] = 0.5
    dns_zone.silent.add(verified.record_name)
    make_due(verified)
    sweep_domains(), jobs()
    domain = reload(verified)
    assert domain.status == "verified" and domain.record_missing_since is None
    assert dt.timedelta(minutes=50) < domain.next_check_at - utcnow() < dt.timedelta(minutes=61)


def test_failing_never_locks_the_only_admin_out(verified, dns_zone, jobs, workspace):
    from app.auth import policy
    from app.domains import service
    saved = policy._sso_policy
    policy.register_sso_policy(lambda u: policy.SignInMethod.sso if service.verified_domain_covering(
        u.workspace_id, u.email) else policy.SignInMethod.blocked)  # SSO enforced, as the SAML area does
    try:
        dns_zone.txt.clear()
        make_due(verified, record_missing_since=utcnow() - verification.GRACE, status="verified")
        sweep_domains(), jobs()
        domain = reload(verified)
        assert domain.status == "verified" and domain.failure_held_at is not None
        assert "would lock every admin out" in domain.last_detail
        assert audit_actions(workspace).count("domain.failure_held") == 1
    finally:
        policy._sso_policy = saved


@pytest.mark.postgres
@pytest.mark.parametrize("first, second", [("acme.test", "acme.test"), ("acme.test", "eu.acme.test")])
def test_one_batch_never_verifies_overlapping_names_for_two_workspaces(db_backend, app, workspace, make_workspace, dns_zone,
                                                                       jobs, first, second):
    from app.domains.service import add_domain
    globex = make_workspace("Globex", admin_email="admin@globex.test")
    ours, theirs = add_domain(workspace, first), add_domain(globex, second)
    db.session.commit()
    dns_zone.txt[ours.record_name] = [ours.record_value]
    dns_zone.txt.setdefault(theirs.record_name, []).append(theirs.record_value)
    db.session.execute(update(Domain).values(next_check_at=utcnow() - dt.timedelta(seconds=1)))
    db.session.commit()
    assert sweep_domains()["batches"] == 1
    jobs()
    statuses = sorted([reload(ours).status, reload(theirs).status])
    assert statuses == ["pending", "verified"]
    loser = ours if reload(ours).status == "pending" else theirs
    assert "Another workspace has already verified" in reload(loser).last_detail


# --- a "Re-check now" whose job is lost -------------------------------------------------------------

def poll_url(html):
    return html.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def words(html):
    return " ".join(html.split())


@pytest.mark.postgres
def test_a_lost_re_check_gives_the_button_back_and_the_next_click_recovers(admin_client, dns_zone, jobs):
    """An expired domain: nothing else will ever check it. Its job is lost after the click
    (Redis flushed); past the deadline the row says so, stops waiting, and offers the button."""
    domain = add(admin_client)
    jobs()
    make_due(domain, started_at=utcnow() - verification.PENDING_FOR)
    sweep_domains(), jobs()
    assert reload(domain).status == "expired"
    dns_zone.txt[domain.record_name] = [domain.record_value]

    html = admin_client.post(f"/settings/domains/{domain.id}/check", headers=FRAGMENT).get_data(as_text=True)
    assert "Checking DNS now" in html and 'hx-trigger="every 3s"' in html and "Re-check now" not in html
    rq.connection.flushall()  # the job is lost
    poll = poll_url(html)
    assert admin_client.get(poll, headers=FRAGMENT).status_code == 204  # still within the deadline
    assert sweep_domains()["due"] == 0  # an expired domain is not on any schedule

    db.session.execute(update(Domain).where(Domain.id == domain.id).values(**requested_past_the_deadline()))
    db.session.commit()
    response = admin_client.get(poll, headers=FRAGMENT)
    assert response.status_code == 200  # the open page learns that the check did not run
    html = words(response.get_data(as_text=True))
    assert "Checking DNS now" not in html and "hx-trigger" not in html  # no more waiting
    assert "has not run (our job queue may be busy or down). Press “Re-check now” to try again." in html
    assert "Re-check now</button>" in html and "Restart verification" in html

    assert admin_client.post(f"/settings/domains/{domain.id}/check", headers=FRAGMENT).status_code == 200
    jobs()
    assert reload(domain).status == "verified"
    html = words(row_html(admin_client, domain))
    assert "has not run" not in html and "Checking DNS now" not in html


def test_a_lost_re_check_of_a_pending_domain_is_recovered_by_the_sweep(admin_client, dns_zone, jobs):
    domain = add(admin_client)
    jobs()
    admin_client.post(f"/settings/domains/{domain.id}/check")
    rq.connection.flushall()
    make_due(domain, **requested_past_the_deadline())
    html = words(row_html(admin_client, domain))
    assert "has not run" in html and "Re-check now</button>" in html
    assert 'hx-trigger="every 3s"' in html  # pending: it keeps polling for the scheduled checks
    dns_zone.txt[domain.record_name] = [domain.record_value]
    assert sweep_domains()["due"] == 1
    jobs()
    assert reload(domain).status == "verified" and reload(domain).check_requested_at is None
    assert "has not run" not in row_html(admin_client, domain)


def test_re_check_when_redis_is_down_says_so_at_once(app, admin_client, dns_zone, jobs):
    import redis
    domain = add(admin_client)
    jobs()
    working = app.extensions["redis"]
    app.extensions["redis"] = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)  # nobody there
    try:
        response = admin_client.post(f"/settings/domains/{domain.id}/check", headers=FRAGMENT)
        html = words(response.get_data(as_text=True))
        assert response.status_code == 503
        assert ("The check of acme.test could not be started: our job queue is not answering. Try again in a "
                "minute.") in html
        assert "Checking DNS now" not in html and "Re-check now</button>" in html
        assert reload(domain).check_requested_at is None
        response = admin_client.post(f"/settings/domains/{domain.id}/check")  # without JavaScript
        assert response.status_code == 303
        assert "could not be started" in admin_client.get("/settings/security").get_data(as_text=True)
    finally:
        app.extensions["redis"] = working


def requested_past_the_deadline():
    """The click, and the check before it, moved back in time: three minutes without an answer."""
    now = utcnow()
    return {"check_requested_at": now - dt.timedelta(minutes=3), "last_checked_at": now - dt.timedelta(minutes=10)}
