import re

import pytest

from tests.conftest import PASSWORD
from tests.support.servers import Inbox


def _fail(client, email, ip="10.0.0.1"):
    return client.post("/login/password", data={"email": email, "password": "wrong-password"},
                       environ_base={"REMOTE_ADDR": ip})


def test_failed_sign_ins_are_limited_per_account(app, client, admin):
    limit = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    for _ in range(limit):
        assert _fail(client, admin.email).status_code == 422
    blocked = _fail(client, admin.email, ip="10.0.0.2")  # another address, same account
    assert blocked.status_code == 429
    assert "Too many failed sign-in attempts" in blocked.get_data(as_text=True)
    # Even the right password waits: the limit is checked before the password.
    right = client.post("/login/password", data={"email": admin.email, "password": PASSWORD},
                        environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert right.status_code == 429
    # Another account is unaffected.
    assert _fail(client, "someone-else@acme.test", ip="10.0.0.4").status_code == 422


@pytest.mark.parametrize("app_config", [{"LOGIN_MAX_FAILURES_PER_IP": 3, "LOGIN_MAX_FAILURES_PER_ACCOUNT": 100}],
                         indirect=True)
def test_failed_sign_ins_are_limited_per_address(client, admin):
    for n in range(3):
        assert _fail(client, f"user{n}@acme.test").status_code == 422
    refused = _fail(client, "user9@acme.test")
    # No "reset your password": a reset lifts the account's limit, not the address's.
    assert refused.status_code == 429 and "Too many failed sign-in attempts from your network. Wait 15 minutes and " \
        "try again." in refused.get_data(as_text=True) and "reset" not in refused.get_data(as_text=True).lower()
    assert _fail(client, "user9@acme.test", ip="10.9.9.9").status_code == 422


def test_successful_sign_ins_do_not_count(app, client, admin):
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] + 2):
        response = client.post("/login/password", data={"email": admin.email, "password": PASSWORD})
        assert response.status_code == 303
        client.post("/logout")


def test_a_password_reset_lifts_the_account_limit(mail_app, smtp, client, admin, jobs):
    """The limit's message says to reset the password: the new one must then work at once."""
    for _ in range(mail_app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        _fail(client, admin.email)
    assert _fail(client, admin.email).status_code == 429
    client.post("/password/forgot", data={"email": admin.email})
    jobs()
    path = re.search(r"http://localhost(/password/reset/[\w-]+)", Inbox.text(smtp.inbox.to(admin.email)[0])).group(1)
    assert client.post(path, data={"password": "brand-new-pass-1", "confirm": "brand-new-pass-1"}).status_code == 303
    signed_in = client.post("/login/password", data={"email": admin.email, "password": "brand-new-pass-1"},
                            environ_base={"REMOTE_ADDR": "10.7.7.7"})
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/library"
    assert client.get("/library").status_code == 200


@pytest.mark.parametrize("app_config", [{"LOGIN_FAILURE_WINDOW": 300}], indirect=True)
def test_the_limit_says_how_long_to_wait_as_configured(app, client, admin):
    for _ in range(app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]):
        _fail(client, admin.email)
    blocked = _fail(client, admin.email)
    assert blocked.status_code == 429
    assert "Wait 5 minutes, or reset your password." in blocked.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1"}], indirect=True)
def test_redis_down_does_not_break_a_password_reset(client, admin):
    from app.auth import tokens
    from app.extensions import db
    from app.models import TokenPurpose
    secret = tokens.issue(admin, TokenPurpose.password_reset)
    db.session.commit()
    done = client.post(f"/password/reset/{secret}", data={"password": "brand-new-pass-1", "confirm": "brand-new-pass-1"})
    assert done.status_code == 303
    assert client.post("/login/password", data={"email": admin.email, "password": "brand-new-pass-1"}).status_code == 303


@pytest.mark.parametrize("app_config", [{"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1"}], indirect=True)
def test_redis_down_does_not_break_sign_in(client, admin):
    assert _fail(client, admin.email).status_code == 422
    ok = client.post("/login/password", data={"email": admin.email, "password": PASSWORD})
    assert ok.status_code == 303


def test_reset_links_are_limited_per_inbox_whoever_asks(client, admin):
    """Five an hour to one address, from any number of machines; the same answer for an address
    with no account, so the limit says nothing about who has one."""
    from sqlalchemy import func, select
    from app.extensions import db
    from app.models import OutboundEmail
    for email in (admin.email, "nobody@acme.test"):
        for n in range(5):
            response = client.post("/password/forgot", data={"email": email}, environ_base={"REMOTE_ADDR": f"10.1.{n}.1"})
            assert response.status_code == 200
        refused = client.post("/password/forgot", data={"email": email.upper()}, environ_base={"REMOTE_ADDR": "10.2.0.1"})
        assert refused.status_code == 429 and "Several reset links were sent to this address" in refused.get_data(
            as_text=True)
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 5
    assert client.post("/password/forgot", data={"email": "other@acme.test"},
                       environ_base={"REMOTE_ADDR": "10.3.0.1"}).status_code == 200


def test_an_office_behind_one_address_can_all_ask_for_reset_links(client, workspace, make_user):
    """Onboarding day: a dozen new members behind one NAT set their first password."""
    people = [make_user(workspace, f"new{n}@acme.test", password=None, source="scim") for n in range(12)]
    statuses = [client.post("/password/forgot", data={"email": u.email},
                            environ_base={"REMOTE_ADDR": "198.51.100.20"}).status_code for u in people]
    assert statuses == [200] * 12


@pytest.mark.parametrize("app_config", [{"PASSWORD_RESET_MAX_PER_IP": 3}], indirect=True)
def test_reset_requests_per_client_address_are_limited_as_configured(client):
    def ask(n):
        return client.post("/password/forgot", data={"email": f"user{n}@acme.test"},
                           environ_base={"REMOTE_ADDR": "198.51.100.20"})
    assert [ask(n).status_code for n in range(3)] == [200, 200, 200]
    refused = ask(3)
    assert refused.status_code == 429 and "Too many reset requests. Try again in an hour." in refused.get_data(
        as_text=True)
    assert client.post("/password/forgot", data={"email": "user3@acme.test"},
                       environ_base={"REMOTE_ADDR": "198.51.100.21"}).status_code == 200


@pytest.mark.parametrize("app_config", [{"LOGIN_MAX_FAILURES_PER_IP": 2, "LOGIN_MAX_FAILURES_PER_ACCOUNT": 100,
                                         "TRUSTED_PROXIES": 1}], indirect=True)
def test_behind_a_trusted_proxy_the_client_address_counts(client, admin):
    """Everyone arrives from the load balancer's address; the limit must follow X-Forwarded-For."""
    def fail(client_ip):
        return client.post("/login/password", data={"email": "x@acme.test", "password": "wrong"},
                           environ_base={"REMOTE_ADDR": "10.0.0.1"}, headers={"X-Forwarded-For": client_ip})
    assert [fail("203.0.113.7").status_code for _ in range(3)] == [422, 422, 429]
    assert fail("198.51.100.9").status_code == 422  # someone else behind the same proxy


@pytest.mark.parametrize("app_config", [{"LOGIN_MAX_FAILURES_PER_IP": 2, "LOGIN_MAX_FAILURES_PER_ACCOUNT": 100}],
                         indirect=True)
def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(client, admin):
    def fail(forged):
        return client.post("/login/password", data={"email": "x@acme.test", "password": "wrong"},
                           environ_base={"REMOTE_ADDR": "10.0.0.1"}, headers={"X-Forwarded-For": forged})
    assert [fail(f"203.0.113.{n}").status_code for n in range(3)] == [422, 422, 429]
