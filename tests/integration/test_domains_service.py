"""The rules of authorized domains, through the service and the `domain add` command."""
import pytest
from sqlalchemy import select

from app.domains import coverage, service
from app.domains.service import DomainError, add_domain
from app.extensions import db
from app.models import AuditEvent, Domain


def verify(domain):
    from app.domains import verification
    from app.models import utcnow
    assert verification.mark_verified(domain, how="test", actor_label="test", now=utcnow())
    db.session.commit()
    return domain


def actions(workspace_id):
    return [e.action for e in db.session.scalars(select(AuditEvent).where(AuditEvent.workspace_id == workspace_id)
                                                 .order_by(AuditEvent.id))]


@pytest.fixture
def other(make_workspace):
    return make_workspace("Globex", admin_email="admin@globex.test")


def test_add_dns_domain_is_pending_with_a_record(workspace, admin):
    domain = add_domain(workspace, "  Acme.COM. ", actor=admin)
    db.session.commit()
    assert (domain.name, domain.status, domain.method) == ("acme.com", "pending", "dns")
    assert domain.status_label == "Pending validation"
    assert domain.record_name == "_gatehouse-challenge.acme.com"
    assert domain.record_value.startswith("gatehouse-domain-verification=") and len(domain.txt_value) == 32
    assert domain.next_check_at is not None
    assert actions(workspace.id)[-1] == "domain.added"


@pytest.mark.postgres
def test_verified_elsewhere_refused_without_naming_the_other_workspace(db_backend, workspace, other):
    verify(add_domain(other, "acme.com"))
    with pytest.raises(DomainError) as exc:
        add_domain(workspace, "acme.com")
    assert "another workspace has already verified this domain" in str(exc.value)
    assert "Globex" not in str(exc.value)


@pytest.mark.parametrize("theirs, ours", [("acme.com", "eu.acme.com"), ("eu.acme.com", "acme.com")])
def test_parent_or_subdomain_verified_elsewhere_refused(workspace, other, theirs, ours):
    verify(add_domain(other, theirs))
    with pytest.raises(DomainError, match="a parent domain or subdomain of it"):
        add_domain(workspace, ours)


def test_same_domain_pending_in_two_workspaces_first_to_verify_wins(workspace, other):
    ours, theirs = add_domain(workspace, "acme.com"), add_domain(other, "acme.com")
    db.session.commit()
    verify(theirs)
    from app.domains import verification
    from app.models import utcnow
    assert not verification.mark_verified(ours, how="dns", actor_label="DNS check", now=utcnow())
    assert ours.status == "pending" and "Another workspace has already verified" in ours.last_detail
    assert service.workspace_id_for_email_domain("jane@acme.com") == other.id


def test_database_refuses_two_verified_rows_for_one_name(workspace, other):
    from sqlalchemy.exc import IntegrityError
    ours, theirs = add_domain(workspace, "acme.com"), add_domain(other, "acme.com")
    db.session.commit()
    ours.status = theirs.status = "verified"  # as if two checks raced past the service's check
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_duplicates_and_covered_subdomains_in_the_same_workspace(workspace):
    verify(add_domain(workspace, "acme.com"))
    with pytest.raises(DomainError, match="already in this workspace's list"):
        add_domain(workspace, "ACME.com")
    with pytest.raises(DomainError, match="already covered by acme.com"):
        add_domain(workspace, "eu.acme.com")


@pytest.mark.parametrize("name, reason", [
    ("gmail.com", "public email provider"), ("yahoo.co.jp", "public email provider"),
    ("mailinator.com", "disposable"), ("https://acme.com", "without http://"), ("co.uk", "public suffix"),
    ("acme", "single word"), ("10.0.0.1", "IP addresses"), ("*.acme.com", "wildcard"),
])
def test_bad_input_writes_nothing(workspace, name, reason):
    with pytest.raises(DomainError, match=reason):
        add_domain(workspace, name)
    db.session.rollback()
    assert db.session.scalar(select(Domain.id)) is None


def test_non_enterprise_workspace_refused(make_workspace):
    ws = make_workspace("Small", plan="business", admin_email="admin@small.test")
    with pytest.raises(DomainError, match="Enterprise plan"):
        add_domain(ws, "small.com")


def test_email_method_needs_a_fixed_inbox(workspace, admin):
    with pytest.raises(DomainError, match="Choose the inbox"):
        add_domain(workspace, "acme.com", "email", actor=admin, inbox="ceo")
    with pytest.raises(DomainError, match="Choose how to verify"):
        add_domain(workspace, "acme.com", "carrier-pigeon", actor=admin)


def test_idn_domain_stored_as_punycode_shown_in_unicode(workspace, admin):
    domain = add_domain(workspace, "Bücher.example", actor=admin)
    assert domain.name == "xn--bcher-kva.example" and domain.display_name == "bücher.example"
    assert domain.record_name == "_gatehouse-challenge.xn--bcher-kva.example"


def test_covering_lookups(workspace, other, make_user):
    acme = verify(add_domain(workspace, "acme.com"))
    eu = verify(add_domain(workspace, "eu.acme.co.uk"))
    add_domain(workspace, "pending.test")
    db.session.commit()
    assert service.verified_domain_covering(workspace.id, "jane@ACME.com") is acme
    assert service.verified_domain_covering(workspace.id, "jane@sales.acme.com") is acme
    assert service.verified_domain_covering(workspace.id, "eu.acme.co.uk") is eu
    assert service.verified_domain_covering(workspace.id, "jane@acme.co.uk") is None  # parent of a verified one
    assert service.verified_domain_covering(workspace.id, "jane@pending.test") is None
    assert service.verified_domain_covering(workspace.id, "jane@notacme.com") is None
    assert service.verified_domain_covering(other.id, "jane@acme.com") is None
    assert service.workspace_id_for_email_domain("x@deep.sales.acme.com") == workspace.id
    assert service.workspace_id_for_email_domain("x@globex.test") is None
    assert service.workspace_id_for_email_domain("not an email") is None


def test_members_outside_authorized_domains(workspace, make_user):
    verify(add_domain(workspace, "acme.test"))
    make_user(workspace, "grace@eng.acme.test")
    linus = make_user(workspace, "linus@freelance.test", name="Linus Contractor")
    invited = make_user(workspace, "ivy@outside.test", status="invited")
    make_user(workspace, "gone@outside.test", status="deactivated")
    outside = coverage.members_outside_authorized_domains(workspace.id)
    assert [u.email for u in outside] == [invited.email, linus.email]
    assert [u.email for u in coverage.members_outside_authorized_domains(
        workspace.id, extra_domains=["freelance.test"])] == [invited.email]


def test_operator_override_is_verified_and_audited(workspace):
    domain = add_domain(workspace, "acme.com", verified=True)
    db.session.commit()
    assert domain.status == "verified" and domain.verified_by == "operator (CLI)"
    assert actions(workspace.id)[-3:] == ["domain.added", "domain.operator_override", "domain.verified"]


def test_an_operator_verified_domain_is_not_re_checked_by_dns(workspace, admin_client):
    """There is no TXT record behind the override: a DNS re-check would find it missing and fail
    the domain three days later (the demo's acme.test did)."""
    from app.domains import verification
    from app.models import utcnow
    domain = add_domain(workspace, "acme.com", verified=True)
    db.session.commit()
    assert domain.next_check_at is None
    domain.next_check_at = utcnow()  # a row from before overrides stopped being scheduled
    db.session.commit()
    assert domain.id not in verification.due_dns_domain_ids(utcnow(), 100)
    with pytest.raises(DomainError, match="verified by an operator"):
        service.request_check(domain)
    row = " ".join(admin_client.get(f"/settings/domains/{domain.id}", headers={"HX-Request": "true"})
                   .get_data(as_text=True).split())
    assert "no record for Gatehouse to re-check" in row and "Re-check now" not in row
    response = admin_client.post(f"/settings/domains/{domain.id}/check", headers={"HX-Request": "true"})
    assert "verified by an operator" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Domain, domain.id).status == "verified"


def test_remove_refused_when_it_would_lock_every_admin_out(workspace, admin):
    """With an SSO policy that blocks members outside the verified domains (what the
    SAML area registers), removing the admins' domain would lock them all out."""
    from app.auth import policy
    verify(add_domain(workspace, "acme.test"))
    saved = policy._sso_policy
    policy.register_sso_policy(lambda u: policy.SignInMethod.sso if service.verified_domain_covering(
        u.workspace_id, u.email) else policy.SignInMethod.blocked)
    try:
        domain = db.session.scalar(select(Domain))
        with pytest.raises(DomainError, match="no admin could sign in afterwards"):
            service.remove_domain(domain, actor=admin)
        db.session.rollback()
        assert db.session.scalar(select(Domain.status)) == "verified"
    finally:
        policy._sso_policy = saved
    service.remove_domain(db.session.scalar(select(Domain)), actor=admin)  # no enforcement: allowed
    db.session.commit()
    assert db.session.scalar(select(Domain.id)) is None and actions(workspace.id)[-1] == "domain.removed"


# --- the CLI ------------------------------------------------------------------------------------



def test_cli_add_dns(app, workspace):
    result = app.test_cli_runner().invoke(args=["domain", "add", "--workspace", workspace.slug, "Acme.COM"])
    assert result.exit_code == 0, result.output
    domain = db.session.scalar(select(Domain))
    assert result.stdout.splitlines() == [
        "acme.com pending", f"_gatehouse-challenge.acme.com TXT gatehouse-domain-verification={domain.txt_value}"]


def test_cli_add_verified_and_email(app, workspace):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["domain", "add", "--workspace", workspace.slug, "acme.com", "--verified"])
    assert result.exit_code == 0 and result.stdout == "acme.com verified\n"
    result = runner.invoke(args=["domain", "add", "--workspace", workspace.slug, "acme.org", "--method", "email"])
    assert result.exit_code == 0 and result.stdout == "acme.org pending\n"
    assert "domain.operator_override" in actions(workspace.id) and "domain.email_sent" in actions(workspace.id)


@pytest.mark.parametrize("args, message", [
    (["--workspace", "nope", "acme.com"], "no workspace with slug 'nope'"),
    (["--workspace", "{slug}", "gmail.com"], "public email provider"),
    (["--workspace", "{slug}", "http://acme.com"], "without http://"),
    (["--workspace", "{slug}", "acme.com", "--method", "fax"], "Invalid value for '--method'"),
])
def test_cli_errors_exit_1_with_one_line_and_write_nothing(app, workspace, args, message):
    args = [a.replace("{slug}", workspace.slug) for a in args]
    result = app.test_cli_runner().invoke(args=["domain", "add", *args])
    assert result.exit_code != 0 and result.stdout == ""
    assert message in result.stderr
    if "fax" not in args:
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert db.session.scalar(select(Domain.id)) is None


@pytest.mark.postgres
def test_a_parent_and_its_subdomain_verified_at_once_by_two_workspaces(app, db_backend, workspace, other,
                                                                       monkeypatch):
    """The unique index only stops the same name twice. Acme verifies acme.test while Other verifies
    eng.acme.test; each checks "verified elsewhere?" and then writes: without a lock both checks pass
    and both domains end up verified, one address covered by two workspaces."""
    import threading
    import time as clock
    from app.domains import verification
    from app.models import utcnow
    ids = {"acme": add_domain(workspace, "acme.test").id, "other": add_domain(other, "eng.acme.test").id}
    db.session.commit()
    real_check, start = verification.conflicting_domain, threading.Barrier(2, timeout=10)

    def slow_check(*args):
        found = real_check(*args)
        clock.sleep(0.3)  # between the check and the write, where the other verification runs
        return found

    monkeypatch.setattr(verification, "conflicting_domain", slow_check)
    verified = {}

    def verify_in(name):
        with app.app_context():
            domain = db.session.get(Domain, ids[name])
            start.wait()
            verified[name] = verification.mark_verified(domain, how="dns", actor_label="DNS check", now=utcnow())
            db.session.commit()

    threads = [threading.Thread(target=verify_in, args=(name,)) for name in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(verified.values()) == [False, True]
    db.session.expire_all()
    statuses = {d.name: d.status for d in db.session.scalars(select(Domain))}
    assert sorted(statuses.values()) == ["pending", "verified"]


@pytest.mark.postgres
def test_a_failing_domain_waits_a_minute_rather_than_for_a_busy_admin_lock(app, db_backend, workspace):
    """A DNS batch holds registrable-domain locks; were it to wait for a workspace's admin lock,
    two batches could deadlock. While another transaction changes the admins, the failure is
    postponed to the next check instead, and happens then."""
    import threading
    from app.domains import verification
    from app.members.admin_rule import lock_admins
    from app.models import utcnow
    if db_backend == "sqlite":
        pytest.skip("SQLite has one write lock: nothing to deadlock on")
    domain = verify(add_domain(workspace, "lapsed.test"))
    domain_id = domain.id
    holding, release = threading.Event(), threading.Event()

    def another_request_changing_admins():
        with app.app_context():
            lock_admins(workspace.id)
            holding.set()
            release.wait(10)
            db.session.rollback()

    thread = threading.Thread(target=another_request_changing_admins)
    thread.start()
    assert holding.wait(10)
    now = utcnow()
    domain.record_missing_since = now - verification.GRACE
    verification.fail(domain, now)
    assert domain.status == "verified" and domain.next_check_at == now + verification.RETRY_FAILURE_AFTER
    db.session.commit()
    release.set()
    thread.join()
    domain = db.session.get(Domain, domain_id)
    verification.fail(domain, utcnow())
    db.session.commit()
    assert domain.status == "failed"
