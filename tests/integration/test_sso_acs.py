"""The ACS end to end with a real IdP (keys and signatures made in the test):
every refusal and attack the issue lists, and the happy path."""
from __future__ import annotations

import base64
import copy
import datetime as dt
import threading
import time
from html import unescape

import pytest
from lxml import etree
from sqlalchemy import event, func, select, text

from app.extensions import db
from app.models import AuditEvent, SamlLoginLog, SamlReplay, SamlRequest, User
from app.sso.errors import SamlError, SamlErrorCode
from tests.conftest import csrf_token_from
from tests.support.saml_idp import NS, encode, make_key_and_cert
from tests.support.sso import idp, last_log, signed_in_email, sso  # noqa: F401 (fixtures)


def refusal(response, status=400):
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == status, html[:600]
    assert "Go to the sign-in page" in html or "Start signing in from Gatehouse" in html
    return html


# --- success ----------------------------------------------------------------------------------

@pytest.mark.postgres
def test_member_signs_in_through_the_idp(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test", name="Ada Lovelace")
    response = sso.sign_in(client, "ADA@acme.test")  # matched case-insensitively
    assert response.status_code == 303 and response.headers["Location"] == "/library"
    assert signed_in_email(client) == "ada@acme.test"
    entry = last_log(sso.workspace.id)
    assert entry.outcome == "success" and entry.email == "ADA@acme.test" and entry.user_id is not None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.signed_in"))
    assert event.details["method"] == "sso"
    assert db.session.scalar(select(SamlRequest)) is None  # the request was consumed


@pytest.mark.postgres
def test_member_on_a_subdomain_of_the_verified_domain_signs_in(client, sso, make_user):
    make_user(sso.workspace, "bob@eng.acme.test")
    response = sso.sign_in(client, "bob@eng.acme.test")  # acme.test is verified: it covers eng.acme.test
    assert response.status_code == 303 and signed_in_email(client) == "bob@eng.acme.test"
    make_user(sso.workspace, "eve@acme.test.example")  # a look-alike is not a subdomain
    refusal(sso.sign_in(client, "eve@acme.test.example"), 403)
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "domain_not_authorized" and entry.details["received"] == "acme.test.example"


def a_sign_in_under_way(app, sso, make_user, status: str = "active"):
    """Ada, a browser that has started her sign-in, and the IdP's response to it (not posted yet)."""
    member_id = make_user(sso.workspace, "ada@acme.test", status=status).id
    client = app.test_client()
    started = sso.start(client)
    return member_id, client, started, sso.response(started.request_id, "ada@acme.test")


@pytest.mark.postgres
def test_what_a_sign_in_sends_before_its_commit(db_backend, app, sso, make_user):
    """PostgreSQL: one statement, before validation, that reads the stored request, its
    connection and the member, and claims them: it deletes the request, remembers the
    assertion's id and locks the member's row (app/sso/redemption.py). SQLite, which has no
    DELETE inside a WITH: the read, then after validation the replay-cache row, the request's
    deletion and the member's status again. The last sign-in, the audit event and the login
    log go with the COMMIT (app/deferred_writes.py)."""
    ada_id, client, started, posted = a_sign_in_under_way(app, sso, make_user)
    sent = []

    def statement_sent(conn, cursor, statement, parameters, context, executemany):
        sent.append(" ".join(statement.replace('"', "").split()))

    event.listen(db.engine, "before_cursor_execute", statement_sent)
    try:
        assert sso.post(client, posted, started.relay_state).headers["Location"] == "/library"
    finally:
        event.remove(db.engine, "before_cursor_execute", statement_sent)
    if db_backend == "postgresql":
        [claim] = sent  # the commit's own statement goes to the driver directly, with the COMMIT
        assert claim.startswith("WITH consumed AS (DELETE FROM saml_request WHERE saml_request.relay_state_hash")
        assert "remembered AS (INSERT INTO saml_replay" in claim and "ON CONFLICT DO NOTHING" in claim
        assert "member_now AS (SELECT" in claim and "FOR NO KEY UPDATE OF user" in claim
        assert "JOIN workspace" not in claim  # a sign-in never reads the member's workspace
    else:
        read, *writes = sent
        assert read.startswith("SELECT") and 'FROM saml_request JOIN sso_connection' in read
        assert "LEFT OUTER JOIN user" in read and "JOIN workspace" not in read
        assert [" ".join(w.split()[:3]) for w in writes] == [
            "INSERT INTO saml_replay", "DELETE FROM saml_request", "SELECT user.status FROM", "UPDATE user SET",
            "INSERT INTO audit_event", "INSERT INTO saml_login_log"]
    assert signed_in_email(client) == "ada@acme.test"
    assert db.session.get(User, ada_id).last_login_at is not None
    assert last_log(sso.workspace.id).outcome == "success"
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.target_id == str(ada_id))) == "auth.signed_in"
    assert db.session.scalars(select(SamlReplay.assertion_id)).all() == [
        posted.find(f"{{{NS['saml']}}}Assertion").get("ID")]
    assert db.session.scalar(select(SamlRequest)) is None


def test_the_member_read_with_the_request_counts_only_for_the_validated_address(app, sso, make_user):
    """That first read looks the member up by the NameID as posted, before validation; the
    sign-in takes its answer only when the validated NameID is that same address."""
    from app.sso import connections, saml, signin
    ada, mallory = make_user(sso.workspace, "ada@acme.test"), make_user(sso.workspace, "mallory@acme.test")
    conn = connections.by_connection_id(sso.connection_id)

    def validated(nameid: str, claimed: saml.Member) -> saml.Assertion:
        return saml.Assertion(connection=conn, request=None, nameid=nameid, nameid_format=saml.EMAIL_FORMAT,
                              attributes={}, assertion_id="_a", session_not_on_or_after=None, claimed_member=claimed)

    assert signin.resolve_user(validated("ada@acme.test", saml.Member("mallory@acme.test", mallory)),
                               dry_run=True).user == ada
    assert signin.resolve_user(validated("Ada@Acme.test", saml.Member("ada@acme.test", ada)), dry_run=True).user == ada
    with pytest.raises(SamlError) as refused:  # the read found nobody at that very address: taken as is
        signin.resolve_user(validated("ada@acme.test", saml.Member("ada@acme.test", None)), dry_run=True)
    assert refused.value.code is SamlErrorCode.user_unknown


def change_member_during_validation(monkeypatch, member_id: int, values: dict | None) -> list[str]:
    """Another request changes the member (None: deletes them) once python3-saml has found the
    response valid, after the sign-in's first read; what happened is appended to the list:
    "committed", or the error that stopped it (it gives up after 300 ms of waiting for a lock)."""
    from sqlalchemy.exc import OperationalError
    from app.sso import checks
    outcome, check_recipients = [], checks.check_recipients

    def other_request_changes_the_member(*args):
        if not outcome:
            users = User.__table__
            where = users.c.id == member_id
            try:
                with db.engine.begin() as other:  # e.g. SCIM deprovisioning, or an admin
                    if other.dialect.name == "postgresql":
                        other.exec_driver_sql("SET LOCAL lock_timeout = '300ms'")
                    other.execute(users.delete().where(where) if values is None else
                                  users.update().where(where).values(**values))
                outcome.append("committed")
            except OperationalError as error:
                outcome.append(type(error.orig).__name__)
        return check_recipients(*args)

    monkeypatch.setattr(checks, "check_recipients", other_request_changes_the_member)
    return outcome


@pytest.mark.postgres
@pytest.mark.parametrize("status", ["active", "invited"])
def test_a_member_deactivated_while_their_response_is_validated(db_backend, app, sso, make_user, monkeypatch,
                                                                status):
    """PostgreSQL: the sign-in's first statement locked the member's row, so the deactivation has to
    wait for the sign-in's commit (here it gives up after 300 ms). SQLite: the member was read before
    validation and is read again after the sign-in's first write, so the sign-in is refused."""
    member_id, client, started, posted = a_sign_in_under_way(app, sso, make_user, status)
    outcome = change_member_during_validation(monkeypatch, member_id, {"status": "deactivated"})
    response = sso.post(client, posted, started.relay_state)
    member = db.session.get(User, member_id)
    if db_backend == "postgresql":
        assert outcome == ["LockNotAvailable"] and response.status_code == 303
        assert signed_in_email(client) == "ada@acme.test" and member.status == "active"
        return
    assert outcome == ["committed"] and "deactivated" in refusal(response, 403)
    assert signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "user_deactivated"
    assert member.status == "deactivated" and member.last_login_at is None  # an invitation is not accepted
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.signed_in")) is None


@pytest.mark.postgres
def test_a_member_deleted_while_their_response_is_validated(db_backend, app, sso, make_user, monkeypatch):
    member_id, client, started, posted = a_sign_in_under_way(app, sso, make_user)
    outcome = change_member_during_validation(monkeypatch, member_id, None)
    response = sso.post(client, posted, started.relay_state)
    if db_backend == "postgresql":
        assert outcome == ["LockNotAvailable"] and response.status_code == 303
        assert signed_in_email(client) == "ada@acme.test"
        return
    assert outcome == ["committed"]
    refusal(response, 403)
    assert signed_in_email(client) is None and db.session.get(User, member_id) is None
    assert last_log(sso.workspace.id).error_code == "user_unknown"


def test_session_capped_by_session_not_on_or_after(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    limit = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(minutes=30)
    assert sso.sign_in(client, "ada@acme.test", session_not_on_or_after=limit).status_code == 303
    with client.session_transaction() as session:
        assert session["not_after"] == int(limit.timestamp()) and session["method"] == "sso"


def test_next_is_kept_only_for_our_own_origin(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client, sso.login_path + "?next=/settings/members?page=2")
    response = sso.post(client, sso.response(started.request_id, "ada@acme.test"), started.relay_state)
    assert response.headers["Location"] == "/settings/members?page=2"
    client.post("/logout")
    started = sso.start(client, sso.login_path + "?next=https://evil.example/steal")
    response = sso.post(client, sso.response(started.request_id, "ada@acme.test"), started.relay_state)
    assert response.headers["Location"] == "/library"


def test_relay_state_pointing_at_another_origin_is_refused(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    response = sso.post(client, sso.response(started.request_id, "ada@acme.test"), "https://evil.example/")
    html = refusal(response)
    assert "evil.example" not in response.headers.get("Location", "") and "expired" in html
    assert signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "request_unknown"


# --- unsolicited, request binding -------------------------------------------------------------

def test_unsolicited_response_gets_the_explaining_page(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    response = sso.post(client, sso.response(None, "ada@acme.test"), None)
    html = refusal(response)
    assert "Start signing in from Gatehouse" in html and 'href="/login"' in html and "bookmark app" in html
    assert signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "unsolicited_response"


def test_response_without_in_response_to_is_refused_even_with_a_valid_relay_state(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    refusal(sso.post(client, sso.response(None, "ada@acme.test"), started.relay_state))
    assert signed_in_email(client) is None


@pytest.mark.postgres
def test_in_response_to_from_another_users_request(app, sso, make_user):
    make_user(sso.workspace, "mallory@acme.test")
    make_user(sso.workspace, "ada@acme.test")
    mallory, victim = app.test_client(), app.test_client()
    theirs, ours = sso.start(mallory), sso.start(victim)
    # Mallory's own valid response, posted into the victim's browser with the victim's RelayState.
    response = sso.post(victim, sso.response(theirs.request_id, "mallory@acme.test"), ours.relay_state)
    refusal(response)
    assert signed_in_email(victim) is None
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "in_response_to_mismatch"
    assert entry.details == {"expected": ours.request_id, "received": theirs.request_id}


@pytest.mark.postgres
def test_expired_request(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    req = db.session.scalar(select(SamlRequest))
    req.expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    db.session.commit()
    html = refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test"), started.relay_state))
    assert "took too long" in html and last_log(sso.workspace.id).error_code == "request_expired"
    assert stored_and_remembered() == ([], [])  # used up, and no assertion remembered for it


@pytest.mark.parametrize("app_config", [{"BASE_URL": "https://localhost", "PRODUCTION": True}], indirect=True)
def test_login_csrf_response_posted_into_another_browser(app, idp, workspace, make_user):  # noqa: F811
    from tests.support.sso import setup_sso
    sso = setup_sso(workspace, idp, base_url="https://localhost")
    make_user(workspace, "ada@acme.test")
    attacker, victim = app.test_client(), app.test_client()
    started = sso.start(attacker, base_url="https://localhost")
    cookie = attacker.get_cookie("__Host-gatehouse_saml_browser", path="/")
    assert cookie is not None and cookie.secure and cookie.same_site == "None" and cookie.http_only
    attack = sso.response(started.request_id, "ada@acme.test")
    response = sso.post(victim, attack, started.relay_state, base_url="https://localhost")
    html = refusal(response)
    assert "different browser" in html
    # The browser that started it still can (the request was not consumed by the refusal).
    ok = sso.post(attacker, sso.response(started.request_id, "ada@acme.test"), started.relay_state,
                  base_url="https://localhost")
    assert ok.status_code == 303, ok.get_data(as_text=True)[:300]


CROSS_SITE = {"Sec-Fetch-Site": "cross-site"}


@pytest.mark.csrf
@pytest.mark.parametrize("app_config", [{"BASE_URL": "https://localhost", "PRODUCTION": True}], indirect=True)
def test_login_csrf_a_start_another_site_caused_is_confirmed_once_per_browser(app, idp, workspace,  # noqa: F811
                                                                              make_user):
    """The attacker's own workspace and IdP, started in the victim's browser by a link: the victim
    sees which workspace it is and must press Continue; nothing is stored until they do."""
    from tests.support.sso import setup_sso
    sso = setup_sso(workspace, idp, base_url="https://localhost")
    make_user(workspace, "ada@acme.test")
    browser = app.test_client()
    page = browser.get(sso.login_path + "?next=/settings/members", headers=CROSS_SITE, base_url="https://localhost")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Sign in to Acme?" in html
    assert "You're about to sign in to the <strong>Acme</strong> workspace" in unescape(html)
    assert 'name="next" value="/settings/members"' in html
    assert db.session.scalar(select(func.count()).select_from(SamlRequest)) == 0  # nothing started yet
    assert browser.post(sso.login_path, base_url="https://localhost").status_code == 400  # no CSRF token: refused

    form = {"csrf_token": csrf_token_from(html), "next": "/settings/members"}
    started = sso.started_from(browser.post(sso.login_path, data=form, base_url="https://localhost", headers={
        "Referer": f"https://localhost{sso.login_path}"}).headers["Location"])
    response = sso.post(browser, sso.response(started.request_id, "ada@acme.test"), started.relay_state,
                        base_url="https://localhost")
    assert response.status_code == 303 and response.headers["Location"] == "/settings/members"
    known = browser.get_cookie("__Host-gatehouse_sso_known", path="/")
    assert known is not None and known.secure and known.http_only and known.same_site == "Lax"

    # Signed in there once: the Okta bookmark (another site's link) goes straight to the IdP from now on.
    again = browser.get(sso.login_path, headers=CROSS_SITE, base_url="https://localhost")
    assert again.status_code == 303 and again.headers["Location"].startswith(idp.sso_url)


def test_a_start_from_our_own_pages_goes_straight_to_the_idp(client, sso):
    """/login's home realm discovery and the password step's "Continue with SSO": same-origin."""
    response = client.get(sso.login_path, headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303 and response.headers["Location"].startswith(sso.idp.sso_url)


@pytest.mark.parametrize("method, headers", [
    ("GET", {}),                                # a browser that sends no Fetch Metadata
    ("GET", {"Sec-Fetch-Site": "none"}),        # a link opened from a mail or chat app, a typed URL
    ("GET", {"Sec-Fetch-Site": "same-site"}),   # a sibling subdomain
    ("HEAD", CROSS_SITE),                       # fetch(url, {method: "HEAD", mode: "no-cors"}) from a page
])
def test_every_other_start_is_confirmed_first_and_starts_nothing(client, sso, method, headers):
    response = client.open(sso.login_path, method=method, headers=headers)
    assert response.status_code == 200 and "Location" not in response.headers
    if method == "GET":
        assert "Sign in to Acme?" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(SamlRequest)) == 0
    assert client.get_cookie("__Host-gatehouse_saml_browser", path="/") is None


def test_a_sign_in_never_chains_into_an_sso_start(app, sso, make_workspace):
    """A phishing link /login?next=/sso/saml/<the attacker's cid>/login: the victim signs in to their
    own workspace with a password and lands on their library, not on a start they never confirmed
    (a same-origin redirect would have looked like one of our own pages)."""
    from tests.conftest import PASSWORD
    make_workspace("Side", plan="business", admin_email="victim@side.test")
    cid_path = sso.login_path.removeprefix("/sso")
    for target in (sso.login_path, f"http://localhost{sso.login_path}?x=1", "/sso/recovery",
                   "/%2573so" + cid_path, "/sso%252F" + cid_path.lstrip("/"), "/./sso" + cid_path,
                   "/library/../sso" + cid_path, "/library/%2E%2E/sso" + cid_path):
        victim = app.test_client()
        assert victim.get(f"/login?next={target}").status_code == 200
        victim.post("/login", data={"email": "victim@side.test"})
        response = victim.post("/login/password", data={"email": "victim@side.test", "password": PASSWORD})
        assert response.status_code == 303 and response.headers["Location"] == "/library", target
    assert db.session.scalar(select(func.count()).select_from(SamlRequest)) == 0


def test_a_forged_or_foreign_known_workspaces_cookie_does_not_skip_the_question(app, sso, make_workspace):
    from itsdangerous import URLSafeSerializer
    other = make_workspace("Other", admin_email="admin@other.test")
    client = app.test_client()
    genuine = URLSafeSerializer(app.secret_key, salt="gatehouse-sso-known-workspaces")
    for value in (URLSafeSerializer("not our key", salt="gatehouse-sso-known-workspaces").dumps([sso.workspace.id]),
                  genuine.dumps([other.id]), genuine.dumps({"id": sso.workspace.id}), "x" * 2000, "garbage"):
        client.set_cookie("gatehouse_sso_known", value)
        response = client.get(sso.login_path, headers=CROSS_SITE)
        assert response.status_code == 200 and "Sign in to Acme?" in response.get_data(as_text=True), value
    client.set_cookie("gatehouse_sso_known", genuine.dumps([other.id, sso.workspace.id]))
    assert client.get(sso.login_path, headers=CROSS_SITE).status_code == 303


# --- replay ----------------------------------------------------------------------------------

def test_replay_in_a_new_session(app, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    first, second = app.test_client(), app.test_client()
    started = sso.start(first)
    posted = encode(sso.response(started.request_id, "ada@acme.test"))
    assert sso.post(first, posted, started.relay_state).status_code == 303
    refusal(sso.post(second, posted, started.relay_state))
    assert signed_in_email(second) is None


@pytest.mark.postgres
def test_same_assertion_id_accepted_once(app, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    one, two = app.test_client(), app.test_client()
    a, b = sso.start(one), sso.start(two)
    assert sso.post(one, sso.response(a.request_id, "ada@acme.test", assertion_id="_fixed"), a.relay_state
                    ).status_code == 303
    html = refusal(sso.post(two, sso.response(b.request_id, "ada@acme.test", assertion_id="_fixed"),
                            b.relay_state))
    assert "already used" in html and last_log(sso.workspace.id).error_code == "replay"


# --- what a refusal uses up ------------------------------------------------------------------

def stored_and_remembered() -> tuple[list[str], list[str]]:
    """The stored requests' ids, and the assertion ids in the replay cache."""
    return (sorted(db.session.scalars(select(SamlRequest.request_id))),
            sorted(db.session.scalars(select(SamlReplay.assertion_id))))


@pytest.mark.postgres
@pytest.mark.parametrize("spoiled", ["signature", "in_response_to"])
def test_a_response_refused_before_it_proved_valid_uses_nothing_up(app, sso, make_user, spoiled):
    """On PostgreSQL the sign-in's first statement claims the request and the assertion's id before
    validation; a refusal gives both back. The genuine response then still signs in."""
    make_user(sso.workspace, "ada@acme.test")
    make_user(sso.workspace, "admin2@acme.test", role="admin")
    client = app.test_client()
    started, other = sso.start(client), sso.start(app.test_client())
    spoilt = sso.response(other.request_id if spoiled == "in_response_to" else started.request_id,
                          "ada@acme.test", assertion_id="_spoilt")
    if spoiled == "signature":
        spoilt.find(".//saml:NameID", NS).text = "admin2@acme.test"  # whose row the claim reads and locks
    refusal(sso.post(client, spoilt, started.relay_state))
    assert last_log(sso.workspace.id).error_code == {"signature": "signature_invalid",
                                                      "in_response_to": "in_response_to_mismatch"}[spoiled]
    assert stored_and_remembered() == (sorted([started.request_id, other.request_id]), [])
    genuine = sso.response(started.request_id, "ada@acme.test", assertion_id="_spoilt")
    assert sso.post(client, genuine, started.relay_state).status_code == 303
    assert signed_in_email(client) == "ada@acme.test"
    assert stored_and_remembered() == ([other.request_id], ["_spoilt"])


@pytest.mark.postgres
def test_a_refusal_after_validation_uses_the_request_and_the_assertion_up(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test", status="deactivated")
    started = sso.start(client)
    refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test", assertion_id="_used"),
                     started.relay_state), 403)
    assert last_log(sso.workspace.id).error_code == "user_deactivated"
    assert stored_and_remembered() == ([], ["_used"])


@pytest.mark.postgres
def test_a_claim_for_another_assertion_than_the_validated_one_is_refused(db_backend, client, sso, make_user,
                                                                         monkeypatch):
    """The id claimed before validation is read from the response as posted; python3-saml accepts
    a response with one assertion only, so the validated one has the same id. Should they ever
    differ, the sign-in is refused and nothing is used up."""
    if db_backend == "sqlite":
        pytest.skip("SQLite claims nothing before validation")
    from app.sso import checks
    summarize = checks.summarize
    monkeypatch.setattr(checks, "summarize", lambda document: {**summarize(document), "assertion_id": "_another"})
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test"), started.relay_state))
    assert signed_in_email(client) is None and last_log(sso.workspace.id).error_code == "invalid_response"
    assert stored_and_remembered() == ([started.request_id], [])


@pytest.mark.postgres
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "forged"])
def test_a_response_valid_until_the_year_9999(app, client, sso, make_user, signed):
    """The replay cache keeps an id until the assertion's NotOnOrAfter, at most a day; that date is
    the response's as posted (on PostgreSQL read before validation), so no date may break it."""
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    now = dt.datetime.now(dt.timezone.utc)
    last_second = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    response = sso.post(client, sso.response(started.request_id, "ada@acme.test", assertion_id="_long",
                                             lifetime=int((last_second - now).total_seconds()),
                                             session_not_on_or_after=last_second, sign_assertion=signed),
                        started.relay_state)
    if not signed:
        refusal(response)
        assert stored_and_remembered() == ([started.request_id], [])
        return
    assert response.status_code == 303 and signed_in_email(client) == "ada@acme.test"
    kept_until = db.session.scalar(select(SamlReplay.expires_at).where(SamlReplay.assertion_id == "_long"))
    skew = dt.timedelta(seconds=app.config.get("SAML_CLOCK_SKEW_SECONDS", 120))
    assert kept_until.replace(tzinfo=dt.timezone.utc) <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1) + skew


@pytest.mark.postgres
def test_a_signed_in_member_deactivated_meanwhile_who_signs_in_again_is_refused(app, sso, make_user, monkeypatch):
    """In a browser that is signed in already, the request loads the member before the ACS runs
    (app.auth.sessions); the sign-in still decides on the member as they are now."""
    from app.sso import checks
    member_id = make_user(sso.workspace, "ada@acme.test").id
    client = app.test_client()
    assert sso.sign_in(client, "ada@acme.test").status_code == 303
    started = sso.start(client)
    posted = sso.response(started.request_id, "ada@acme.test")
    summarize = checks.summarize

    def deactivated_elsewhere_first(document):  # after the request loaded her, before the sign-in reads her
        with db.engine.begin() as other:
            other.execute(User.__table__.update().where(User.__table__.c.id == member_id).values(status="deactivated"))
        return summarize(document)

    monkeypatch.setattr(checks, "summarize", deactivated_elsewhere_first)
    assert "deactivated" in refusal(sso.post(client, posted, started.relay_state), 403)
    assert last_log(sso.workspace.id).error_code == "user_deactivated"
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "auth.signed_in")) == 1  # the first sign-in's only


@pytest.mark.postgres
def test_two_sign_ins_of_one_member_at_once_both_succeed(db_backend, app, sso, make_user):
    """Two tabs: the second sign-in's statement waits for the first's commit on the member's row,
    where both would otherwise hold it and both update it (the last sign-in): a deadlock."""
    if db_backend == "sqlite":
        pytest.skip("SQLite serializes the two sign-ins")
    member_id = make_user(sso.workspace, "ada@acme.test").id
    first, second = app.test_client(), app.test_client()
    one, two = sso.start(first), sso.start(second)
    posted_one, posted_two = (encode(sso.response(one.request_id, "ada@acme.test")),
                              encode(sso.response(two.request_id, "ada@acme.test")))
    responses, waiting = {}, []
    engine = db.engine
    other_tab = threading.Thread(target=lambda: responses.setdefault("second", sso.post(second, posted_two,
                                                                                         two.relay_state)))

    def second_tab_while_the_first_holds_the_row(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("WITH consumed") and not other_tab.is_alive() and "second" not in responses:
            other_tab.start()
            waiting.append(a_sign_in_waits_for_a_lock(engine))

    event.listen(engine, "after_cursor_execute", second_tab_while_the_first_holds_the_row)
    try:
        responses["first"] = sso.post(first, posted_one, one.relay_state)
        other_tab.join(10)
    finally:
        event.remove(engine, "after_cursor_execute", second_tab_while_the_first_holds_the_row)
    assert waiting == [True]
    assert responses["first"].status_code == 303 and responses["second"].status_code == 303
    assert signed_in_email(first) == signed_in_email(second) == "ada@acme.test"
    assert db.session.get(User, member_id).last_login_at is not None
    assert [entry.outcome for entry in db.session.scalars(select(SamlLoginLog))] == ["success", "success"]


# --- XML attacks ------------------------------------------------------------------------------

def test_nameid_altered_after_signing(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    make_user(sso.workspace, "admin2@acme.test", role="admin")
    started = sso.start(client)
    root = sso.response(started.request_id, "ada@acme.test")
    root.find(".//saml:NameID", NS).text = "admin2@acme.test"
    refusal(sso.post(client, root, started.relay_state))
    assert signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "signature_invalid"


def test_signature_wrapping_forged_assertion_with_the_signed_one_hidden(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    make_user(sso.workspace, "boss@acme.test", role="admin")
    started = sso.start(client)
    root = sso.response(started.request_id, "ada@acme.test")
    signed = root.find("saml:Assertion", NS)
    forged = copy.deepcopy(signed)  # same ID, same (now invalid for it) signature
    forged.find(".//saml:NameID", NS).text = "boss@acme.test"
    extensions = etree.Element(f"{{{NS['samlp']}}}Extensions")
    extensions.append(signed)  # the genuinely signed assertion, hidden where nobody reads it
    root.insert(1, extensions)
    root.append(forged)
    refusal(sso.post(client, root, started.relay_state))
    assert signed_in_email(client) is None


def test_signature_wrapping_two_assertions(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    make_user(sso.workspace, "boss@acme.test", role="admin")
    started = sso.start(client)
    root = sso.response(started.request_id, "ada@acme.test")
    forged = copy.deepcopy(root.find("saml:Assertion", NS))
    forged.set("ID", "_forged")
    forged.remove(forged.find("ds:Signature", NS))
    forged.find(".//saml:NameID", NS).text = "boss@acme.test"
    root.insert(2, forged)  # before the signed one: a naive reader takes the first assertion
    refusal(sso.post(client, root, started.relay_state))
    assert signed_in_email(client) is None


def test_xml_comment_inside_the_nameid_does_not_truncate_it(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test", role="admin")
    started = sso.start(client)
    # The attacker owns "ada@acme.test.evil.example" at the IdP; the comment is added after
    # signing (exclusive c14n drops comments, so the signature still verifies).
    root = sso.response(started.request_id, "ada@acme.test.evil.example")
    nameid = root.find(".//saml:NameID", NS)
    nameid.text = "ada@acme.test"
    comment = etree.Comment("")
    comment.tail = ".evil.example"
    nameid.append(comment)
    assert b"ada@acme.test<!---->.evil.example" in etree.tostring(root)
    html = refusal(sso.post(client, root, started.relay_state), 403)
    assert "domain isn't authorized" in html
    assert signed_in_email(client) is None
    assert last_log(sso.workspace.id).email == "ada@acme.test.evil.example"


@pytest.mark.parametrize("doc", [
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0">&b;</samlp:Response>',
    '<!DOCTYPE r SYSTEM "file:///etc/passwd"><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>',
    "<samlp:Response xmlns:samlp='urn:oasis:names:tc:SAML:2.0:protocol'><unclosed>",
])
def test_doctype_entities_and_broken_xml_are_a_400(client, sso, doc):
    started = sso.start(client)
    html = refusal(sso.post(client, base64.b64encode(doc.encode()).decode(), started.relay_state))
    assert "couldn't read" in html
    assert last_log(sso.workspace.id).error_code == "malformed_response"


@pytest.mark.parametrize("posted", ["%%% not base64 %%%", "", "A" * 300_000])
def test_bad_base64_missing_and_huge_responses_are_a_400(client, sso, posted):
    refusal(client.post(sso.acs_path, data={"SAMLResponse": posted, "RelayState": "x"}))


# --- certificates -----------------------------------------------------------------------------

def test_unknown_or_retired_certificate_is_refused_with_both_fingerprints(client, sso, make_user):
    from app.sso.metadata import read_certificate
    make_user(sso.workspace, "ada@acme.test")
    other = make_key_and_cert("someone-else")
    started = sso.start(client)
    refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test", keys=other), started.relay_state))
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "signature_invalid"
    assert entry.details["expected"] == read_certificate(sso.idp.cert_pem.decode()).fingerprint
    assert entry.details["received"] == read_certificate(other[1].decode()).fingerprint


@pytest.mark.postgres
def test_two_certificates_during_rotation_then_the_old_one_retired(app, sso, make_user, admin):
    from app.sso import connections
    from app.sso.metadata import read_certificate
    make_user(sso.workspace, "ada@acme.test")
    new_keys = make_key_and_cert("idp-2027")
    # A live connection: adding a certificate stages a draft; a test of the draft promotes it.
    connections.add_certificate(sso.workspace.id, new_keys[1].decode(), actor=admin)
    staged = connections.staged_connection(sso.workspace.id)
    connections.mark_tested(staged, actor=admin)
    db.session.commit()
    live = connections.live_connection(sso.workspace.id)
    assert len(live.certificates) == 2 and live.is_on
    for keys in (sso.idp.keys, new_keys):
        client = app.test_client()
        assert sso.sign_in(client, "ada@acme.test", keys=keys).status_code == 303
    old = read_certificate(sso.idp.cert_pem.decode()).fingerprint
    connections.remove_certificate(sso.workspace.id, old, actor=admin)
    connections.mark_tested(connections.staged_connection(sso.workspace.id), actor=admin)
    db.session.commit()
    client = app.test_client()
    refusal(sso.sign_in(client, "ada@acme.test", keys=sso.idp.keys))
    assert sso.sign_in(app.test_client(), "ada@acme.test", keys=new_keys).status_code == 303


# --- audience, recipient, destination, issuer, status -------------------------------------------

@pytest.mark.parametrize("field, value, code", [
    ("audience", "https://other-sp.example/metadata", "wrong_audience"),
    ("audience", None, "wrong_audience"),  # python3-saml accepts a missing AudienceRestriction
    ("recipient", "https://evil.example/?x=http://localhost/sso/saml/CID/acs", "wrong_recipient"),
    ("destination", "https://other-sp.example/acs", "wrong_destination"),
    ("status", "urn:oasis:names:tc:SAML:2.0:status:Responder", "status_not_success"),
])
def test_misconfigured_responses_are_explained(client, sso, make_user, field, value, code):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    if isinstance(value, str):
        value = value.replace("CID", sso.connection_id)
    root = sso.response(started.request_id, "ada@acme.test", **{field: value})
    refusal(sso.post(client, root, started.relay_state))
    entry = last_log(sso.workspace.id)
    assert entry.error_code == code, entry.trace
    if code != "status_not_success":
        assert entry.details["received"] == (value or "(none)")


def test_wrong_issuer(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    sso.idp.entity_id = "https://impostor.example/"
    refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test"), started.relay_state))
    assert last_log(sso.workspace.id).error_code == "wrong_issuer"


# --- time -------------------------------------------------------------------------------------

def test_clock_skew_at_the_limit_is_accepted(client, sso, make_user, app):
    make_user(sso.workspace, "ada@acme.test")
    skew = app.config["SAML_CLOCK_SKEW_SECONDS"]
    started = sso.start(client)
    idp_now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=skew)
    response = sso.post(client, sso.response(started.request_id, "ada@acme.test", now=idp_now), started.relay_state)
    assert response.status_code == 303


@pytest.mark.parametrize("offset", [+150, -(300 + 120 + 5)])
def test_clock_skew_beyond_the_limit_is_refused_with_the_difference(client, sso, make_user, offset):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    idp_now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)
    refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test", now=idp_now), started.relay_state))
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "time_window"
    assert abs(entry.details["clock_difference_seconds"] - offset) <= 3


# --- who may sign in --------------------------------------------------------------------------

def test_deactivated_user_is_refused_with_403(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test", status="deactivated")
    html = refusal(sso.sign_in(client, "ada@acme.test"), 403)
    assert "deactivated" in html and signed_in_email(client) is None


def test_domain_not_authorized_is_a_403(client, sso, make_user):
    make_user(sso.workspace, "bob@elsewhere.example")
    html = refusal(sso.sign_in(client, "bob@elsewhere.example"), 403)
    assert "isn't authorized" in html
    assert last_log(sso.workspace.id).error_code == "domain_not_authorized"


def test_nameid_that_is_not_an_email(client, sso):
    refusal(sso.sign_in(client, "not-an-email"))
    assert last_log(sso.workspace.id).error_code == "nameid_not_email"


def test_unknown_user_refused_unless_jit_creates_them(client, sso, admin):
    from app.sso import connections
    refusal(sso.sign_in(client, "newbie@acme.test"), 403)
    assert last_log(sso.workspace.id).error_code == "user_unknown"
    connections.set_jit(sso.workspace.id, enabled=True, role="creator", actor=admin)
    db.session.commit()
    response = sso.sign_in(client, "newbie@acme.test", attributes={"firstName": ["New"], "lastName": ["Bie"]})
    assert response.status_code == 303
    user = db.session.scalar(select(User).where(User.email_normalized == "newbie@acme.test"))
    assert (user.role, user.source, user.name) == ("creator", "sso_jit", "New Bie")


@pytest.mark.postgres
def test_jit_cuts_over_long_names_from_the_idp(client, sso, admin):
    from app.sso import connections
    connections.set_jit(sso.workspace.id, enabled=True, role="creator", actor=admin)
    db.session.commit()
    response = sso.sign_in(client, "long@acme.test", attributes={"firstName": ["F" * 400], "lastName": ["L" * 400]})
    assert response.status_code == 303
    user = db.session.scalar(select(User).where(User.email_normalized == "long@acme.test"))
    assert len(user.name) == 200 and user.given_name == "F" * 100 and user.family_name == "L" * 100


def test_connection_turned_off_refuses_start(client, sso, admin):
    from app.sso import connections
    connections.disable(sso.workspace.id, actor=admin)
    db.session.commit()
    response = client.get(sso.login_path)
    assert response.status_code == 400 and "isn't turned on" in unescape(response.get_data(as_text=True))


def test_unknown_connection_is_404(client):
    assert client.get("/sso/saml/0000-aaaaa0000/login").status_code == 404
    assert client.post("/sso/saml/not-a-cid/acs", data={"SAMLResponse": "x"}).status_code == 404


def test_login_log_keeps_no_raw_assertion(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    sso.sign_in(client, "ada@acme.test")
    for entry in db.session.scalars(select(SamlLoginLog)):
        assert entry.trace is None or ("<saml" not in entry.trace and len(entry.trace) <= 2000)


def test_what_anyone_posts_cannot_make_a_login_log_entry_large(app, sso, admin):
    """The refusal's details quote the posted (unsigned) InResponseTo: cut, so anonymous posts
    can't fill the database or make the admin's log page megabytes long."""
    import json
    anonymous = app.test_client()
    started = sso.start(anonymous)
    junk = (f'<samlp:Response xmlns:samlp="{NS["samlp"]}" ID="_x" Version="2.0" '
            f'InResponseTo="{"A" * 180_000}"/>')
    html = refusal(anonymous.post(sso.acs_path, data={"SAMLResponse": base64.b64encode(junk.encode()).decode(),
                                                      "RelayState": started.relay_state}))
    assert "different sign-in attempt" in html
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "in_response_to_mismatch"
    assert entry.details["expected"] == started.request_id
    assert entry.details["received"] == "A" * 511 + "…" and len(json.dumps(entry.details)) < 1200
    assert len(entry.trace) <= 2000


def test_response_that_breaks_the_saml_schema_is_refused(client, sso, make_user):
    make_user(sso.workspace, "ada@acme.test")
    started = sso.start(client)
    root = sso.response(started.request_id, "ada@acme.test")
    root.insert(1, etree.Element(f"{{{NS['samlp']}}}Bogus"))  # outside the signed assertion
    refusal(sso.post(client, root, started.relay_state))
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "malformed_response" and "schema" in entry.trace


def test_response_posted_to_another_connections_acs(client, sso, make_workspace, make_user):
    from tests.support.sso import setup_sso
    from tests.support.saml_idp import TestIdp
    make_user(sso.workspace, "ada@acme.test")
    other = setup_sso(make_workspace("Globex", admin_email="boss@globex.test"), TestIdp(), domain="globex.test")
    started = sso.start(client)
    response = client.post(other.acs_path, data={"SAMLResponse": encode(sso.response(started.request_id,
                                                                                      "ada@acme.test")),
                                                 "RelayState": started.relay_state})
    refusal(response)
    entry = last_log(sso.workspace.id)
    assert entry.error_code == "wrong_connection" and entry.connection_id == sso.connection_id
    assert last_log(other.workspace.id) is None and signed_in_email(client) is None


@pytest.mark.csrf
def test_acs_is_csrf_exempt_but_the_settings_are_not(app, sso, admin):
    from tests.conftest import csrf_token_from
    client = app.test_client()
    assert sso.sign_in(client, admin.email).status_code == 303  # the IdP's POST carries no CSRF token
    assert signed_in_email(client) == admin.email
    refused = client.post("/settings/security/sso/disable", data={})
    assert refused.status_code == 400 and "form has expired" in unescape(refused.get_data(as_text=True))
    token = csrf_token_from(client.get("/settings/security").get_data(as_text=True))
    assert client.post("/settings/security/sso/disable", data={"csrf_token": token}).status_code == 303


def a_sign_in_waits_for_a_lock(engine, within: float = 10.0) -> bool:
    """PostgreSQL: is a sign-in's statement (the claim: app/sso/redemption.py) seen waiting for a
    lock within `within` seconds?"""
    deadline = time.monotonic() + within
    with engine.connect() as observer:
        while time.monotonic() < deadline:
            if observer.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE wait_event_type = 'Lock' AND query LIKE 'WITH consumed AS%'")):
                return True
            observer.rollback()  # a fresh snapshot of the activity view each time
            time.sleep(0.01)
    return False


class OtherRequestFirst:
    """Another request that gets to a row just before the sign-in's statement containing `marker`
    does, and commits only once that statement waits for it: a real race on PostgreSQL (on SQLite
    writers are serialized). `waited` says whether ours was seen waiting for a lock."""

    def __init__(self, marker: str, work):
        self.marker, self.work, self.other, self.waited = marker, work, None, None
        self.committed = threading.Event()

    def __enter__(self):
        event.listen(db.engine, "before_cursor_execute", self._before)
        return self

    def __exit__(self, *exc):
        event.remove(db.engine, "before_cursor_execute", self._before)
        assert self.committed.wait(5), "the other request never committed"

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        if self.marker in statement and self.other is None:
            self.engine = db.engine  # for the timer's thread, which has no app context
            self.other = self.engine.connect()
            self.work(self.other)  # not committed yet: it holds its rows
            threading.Thread(target=self._commit).start()

    def _commit(self):
        try:
            self.waited = a_sign_in_waits_for_a_lock(self.engine)
        finally:
            self.other.commit()
            self.other.close()
            self.committed.set()


@pytest.mark.postgres
@pytest.mark.parametrize("winner_consumed_the_request", [False, True], ids=["replay-row", "double-post"])
def test_same_assertion_posted_twice_at_once_one_is_refused(db_backend, app, sso, make_user,
                                                            winner_consumed_the_request):
    """Another POST of the same response has remembered the assertion and, as a browser
    double-submitting the IdP's auto-post form does, may have consumed the stored request too.
    PostgreSQL: it commits while the sign-in's claiming statement waits for it; ours then finds
    the id remembered (a replay) or the request gone. SQLite: it commits between our validation
    and our insert; the refusal must not need the request's row back (it was a 500)."""
    if db_backend == "sqlite":
        pytest.skip("SQLite serializes the two sign-ins: see the test below")
    make_user(sso.workspace, "ada@acme.test")
    client = app.test_client()
    started = sso.start(client)
    root = sso.response(started.request_id, "ada@acme.test", assertion_id="_twice")

    def other_post(other):
        other.execute(SamlReplay.__table__.insert().values(
            workspace_id=sso.workspace.id, issuer=sso.idp.entity_id, assertion_id="_twice",
            expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)))
        if winner_consumed_the_request:
            other.execute(SamlRequest.__table__.delete().where(
                SamlRequest.__table__.c.request_id == started.request_id))

    with OtherRequestFirst("INSERT INTO saml_replay", other_post) as race:
        html = refusal(sso.post(client, root, started.relay_state))
    assert race.waited and signed_in_email(client) is None
    if winner_consumed_the_request:
        assert last_log(sso.workspace.id).error_code == "request_unknown" and "Start again" in html
    else:
        assert last_log(sso.workspace.id).error_code == "replay" and "already used" in html
        # Refused as a replay, it used nothing up: the request is still there, as it was.
        assert db.session.scalar(select(SamlRequest.request_id)) == started.request_id


@pytest.mark.parametrize("winner_consumed_the_request", [False, True], ids=["replay-row", "double-post"])
def test_same_assertion_committed_between_validation_and_insert_on_sqlite(app, sso, make_user,
                                                                           winner_consumed_the_request):
    """SQLite only (PostgreSQL claims before validation: see the test above)."""
    make_user(sso.workspace, "ada@acme.test")
    client = app.test_client()
    started = sso.start(client)
    root = sso.response(started.request_id, "ada@acme.test")
    winner = []

    def other_request_commits_first(conn, cursor, statement, parameters, context, executemany):
        if "INSERT INTO SAML_REPLAY" in statement.upper() and not winner:
            ours = context.compiled_parameters[0]  # our row, committed by the other request
            winner.append({column.name: ours[column.name] for column in SamlReplay.__table__.columns
                           if column.name in ours})
            with db.engine.begin() as other:
                other.execute(SamlReplay.__table__.insert().values(**winner[0]))
                if winner_consumed_the_request:
                    other.execute(SamlRequest.__table__.delete().where(
                        SamlRequest.__table__.c.request_id == started.request_id))

    event.listen(db.engine, "before_cursor_execute", other_request_commits_first)
    try:
        html = refusal(sso.post(client, root, started.relay_state))
    finally:
        event.remove(db.engine, "before_cursor_execute", other_request_commits_first)
    assert winner, "the sign-in never reached its replay-cache insert"
    assert "already used" in html and signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "replay"


@pytest.mark.postgres
def test_a_request_consumed_by_another_post_meanwhile_is_refused(db_backend, app, sso, make_user):
    """Two different valid responses to one request: the other POST has deleted the request and
    commits while our claiming statement waits for that row; ours then finds it gone."""
    if db_backend == "sqlite":
        pytest.skip("SQLite serializes the two sign-ins; the race needs concurrent writers")
    make_user(sso.workspace, "ada@acme.test")
    client = app.test_client()
    started = sso.start(client)

    def other_post(other):
        other.execute(SamlRequest.__table__.delete().where(SamlRequest.__table__.c.request_id == started.request_id))

    with OtherRequestFirst("DELETE FROM saml_request", other_post) as race:
        html = refusal(sso.post(client, sso.response(started.request_id, "ada@acme.test"), started.relay_state))
    assert race.waited and signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "request_unknown" and "Start again" in html
    assert db.session.scalar(select(func.count()).select_from(SamlReplay)) == 0


@pytest.mark.postgres
def test_two_first_sign_ins_of_a_new_person_at_once(db_backend, client, sso, admin, monkeypatch):
    """JIT: the other sign-in creates the account between our look-up and our insert. (On SQLite
    writers are serialized, so the other one can't commit in between: PostgreSQL only.)"""
    if db_backend == "sqlite":
        pytest.skip("SQLite serializes the two sign-ins; the race needs concurrent writers")
    from app.models import User as UserModel
    from app.sso import connections, signin
    connections.set_jit(sso.workspace.id, enabled=True, role="creator", actor=admin)
    db.session.commit()
    started = sso.start(client)
    identity = signin.received_identity

    def other_sign_in_creates_them_first(assertion):  # runs after our look-up found nobody
        now = dt.datetime.now(dt.timezone.utc)
        with db.engine.begin() as other:
            other.execute(UserModel.__table__.insert().values(
                workspace_id=sso.workspace.id, email="new@acme.test", email_normalized="new@acme.test", name="New",
                role="creator", status="active", source="sso_jit", session_version=1, created_at=now,
                updated_at=now))
        return identity(assertion)

    monkeypatch.setattr(signin, "received_identity", other_sign_in_creates_them_first)
    html = refusal(sso.post(client, sso.response(started.request_id, "new@acme.test"), started.relay_state))
    assert "Start again" in html and signed_in_email(client) is None
    assert last_log(sso.workspace.id).error_code == "concurrent_sign_in"
    # Only the losing insert was undone: the request is consumed and the assertion used.
    assert db.session.scalar(select(SamlRequest).where(SamlRequest.request_id == started.request_id)) is None
    assert db.session.scalar(select(SamlReplay.id)) is not None
