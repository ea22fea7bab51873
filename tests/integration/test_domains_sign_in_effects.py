"""What a domain that stops counting (failed, removed) does to signing in, said truthfully
in the emails, on the row and after removal: with SSO on, the members only it covered are
blocked and signed out; without SSO, passwords keep working until SSO is turned on."""
import re
from html import unescape

import pytest
from sqlalchemy import select, update

from app.auth.policy import SignInMethod, sign_in_method
from app.domains import verification
from app.domains.service import add_domain
from app.extensions import db
from app.models import Domain, User, utcnow
from jobs.domains import sweep_domains
from tests.conftest import sign_in
from tests.support.sso import idp, setup_sso  # noqa: F401  (fixture)

FRAGMENT = {"HX-Request": "true"}


def words(html: str) -> str:
    """The text a reader sees: tags dropped, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


@pytest.fixture(params=["sso on", "sso off"])
def sso_on(request):
    return request.param == "sso on"


@pytest.fixture
def setup(app, workspace, admin, make_user, idp, sso_on):  # noqa: F811
    """Acme: acme.test covers the admin; acme-labs.test (verified by DNS) covers only Carol,
    who is signed in. Returns the admin's client, Carol's client and the labs domain."""
    labs = add_domain(workspace, "acme-labs.test")
    assert verification.mark_verified(labs, how="dns", actor_label="DNS check", now=utcnow())
    db.session.commit()
    make_user(workspace, "carol@acme-labs.test", name="Carol Labs")
    admin_client, carol_client = app.test_client(), app.test_client()
    if sso_on:
        harness = setup_sso(workspace, idp, domain="acme.test")
        assert harness.sign_in(admin_client, admin.email).status_code == 303
        assert harness.sign_in(carol_client, "carol@acme-labs.test").status_code == 303
    else:
        add_domain(workspace, "acme.test", verified=True)
        db.session.commit()
        sign_in(admin_client, admin.email)
        sign_in(carol_client, "carol@acme-labs.test")
    return admin_client, carol_client, labs


def carol_method():
    db.session.expire_all()
    return sign_in_method(db.session.scalar(select(User).where(User.email_normalized == "carol@acme-labs.test")))


def make_due(domain, **values):
    db.session.execute(update(Domain).where(Domain.id == domain.id)
                       .values(next_check_at=utcnow() - verification.LEASE, **values))
    db.session.commit()


@pytest.mark.postgres
def test_record_missing_then_failed_say_what_happens_to_sign_in(mail_app, smtp, setup, dns_zone, jobs, sso_on):
    admin_client, carol_client, labs = setup
    row = f"/settings/domains/{labs.id}"

    make_due(labs)  # the daily re-check: the record is not in DNS
    sweep_domains(), jobs()
    (warning,) = smtp.inbox.to("admin@acme.test")
    text = " ".join(smtp.inbox.text(warning).split())
    html = words(warning.get_body(preferencelist=("html",)).get_content())
    on_row = words(admin_client.get(row, headers=FRAGMENT).get_data(as_text=True))
    for said in (text, html):
        assert "SSO enforcement stops applying" not in said
        assert "is marked failed and is no longer an authorized domain" in said
        assert "Carol Labs <carol@acme-labs.test>" in said
        assert "Nobody is locked out before then" in said
    if sso_on:
        for said in (text, html):
            assert ("SSO is on, so members on it whom no other verified domain covers will then be blocked from "
                    "signing in and signed out (1 member):") in said
        assert ("SSO is on, so members on it whom no other verified domain covers will then be blocked from "
                "signing in and signed out (1 member).") in on_row
    else:
        for said in (text, html):
            assert ("SSO is not enforced in Acme, so passwords keep working; but once SSO is turned on, members on "
                    "it whom no other verified domain covers would be blocked from signing in (1 member):") in said
        assert ("SSO is not enforced, so passwords keep working; 1 member on it would be blocked from signing in "
                "once SSO is turned on.") in on_row
    assert "SSO enforcement will stop applying" not in on_row

    make_due(labs, record_missing_since=utcnow() - verification.GRACE)
    sweep_domains(), jobs()
    db.session.expire_all()
    assert db.session.get(Domain, labs.id).status == "failed"
    failed = smtp.inbox.to("admin@acme.test")[-1]
    assert failed["Subject"] == "acme-labs.test is no longer verified"
    text = " ".join(smtp.inbox.text(failed).split())
    html = words(failed.get_body(preferencelist=("html",)).get_content())
    on_row = words(admin_client.get(row, headers=FRAGMENT).get_data(as_text=True))
    for said in (text, html, on_row):
        assert "no longer applies" not in said and "no longer counts" not in said
    for said in (text, html):
        assert "Carol Labs <carol@acme-labs.test>" in said
    if sso_on:
        for said in (text, html):
            assert ("SSO is on, so members on acme-labs.test whom no other verified domain covers are now blocked "
                    "from signing in, like every member outside the authorized domains, and their open sessions "
                    "have ended. 1 member is affected:") in said
            assert "To verify it again and let them sign in, restore the record" in said
        assert ("SSO is on, so members on it whom no other verified domain covers are blocked from signing in: "
                "1 member, listed under “Members outside your authorized domains”.") in on_row
        assert carol_method() is SignInMethod.blocked  # what the email says is true
        assert carol_client.get("/library").status_code == 302  # and she was signed out
    else:
        for said in (text, html):
            assert ("SSO is not enforced in Acme, so nothing changes for now: members on acme-labs.test keep signing "
                    "in with their passwords. If SSO is turned on before acme-labs.test is verified again, the 1 "
                    "member whom only it covered will be blocked from signing in:") in said
        assert ("SSO is not enforced, so nothing changes for now: passwords keep working. Once SSO is turned on, "
                "members on it (1, listed under “Members outside your authorized domains”) will be blocked from "
                "signing in.") in on_row
        assert carol_method() is SignInMethod.password
        assert carol_client.get("/library").status_code == 200


def test_removal_says_what_happens_to_sign_in(setup, sso_on):
    admin_client, carol_client, labs = setup
    assert admin_client.post(f"/settings/domains/{labs.id}/remove").status_code == 303
    page = words(admin_client.get("/settings/security").get_data(as_text=True))
    assert "SSO enforcement no longer applies" not in page
    if sso_on:
        assert ("acme-labs.test removed. SSO is on, so the 1 member whom only it covered is now blocked from "
                "signing in, and their open sessions have ended.") in page
        assert carol_method() is SignInMethod.blocked
        assert carol_client.get("/library").status_code == 302
    else:
        assert ("acme-labs.test removed. SSO is not enforced, so passwords keep working; once it is turned on, "
                "the 1 member whom only it covered will be blocked from signing in.") in page
        assert carol_method() is SignInMethod.password
        assert carol_client.get("/library").status_code == 200


def test_removing_a_domain_nobody_is_on_or_that_was_not_verified(setup, workspace, sso_on):
    admin_client, _, _ = setup
    empty = add_domain(workspace, "acme-empty.test", verified=True)
    pending = add_domain(workspace, "acme-pending.test")
    db.session.commit()
    admin_client.post(f"/settings/domains/{empty.id}/remove")
    page = words(admin_client.get("/settings/security").get_data(as_text=True))
    if sso_on:
        assert ("acme-empty.test removed. SSO is on, so members on acme-empty.test are blocked from signing in from "
                "now on; none of your current members is.") in page
    else:
        assert ("acme-empty.test removed. SSO is not enforced, so passwords keep working; once it is turned on, "
                "members on acme-empty.test will be blocked from signing in.") in page
    admin_client.post(f"/settings/domains/{pending.id}/remove")
    page = words(admin_client.get("/settings/security").get_data(as_text=True))
    assert "acme-pending.test removed. It was not verified, so nothing changes for signing in." in page
