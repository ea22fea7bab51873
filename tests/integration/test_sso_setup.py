"""The admin's self-serve setup through the real pages: pick the IdP, give the
metadata (XML, manual, URL fetched by a job), test, preview, turn on, staged
changes, recovery codes, the login log; and enforcement at /login."""
from __future__ import annotations

import re
import threading
from html import unescape

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.models import AuditEvent, OutboundEmail, SsoConnection
from app.models.sso import CONNECTION_ID_PATTERN
from app.sso import connections
from tests.conftest import PASSWORD, once_token_from, sign_in
from tests.support.saml_idp import TestIdp, make_key_and_cert
from tests.support.sso import SsoHarness, idp, last_log, setup_sso, signed_in_email, sso  # noqa: F401

SSO = "/settings/security/sso"


def page(client, url="/settings/security") -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return unescape(response.get_data(as_text=True))


def run_test_login(client, h: SsoHarness, email: str, **kw):
    """Press "Test connection", sign in at the IdP, come back: the result page."""
    response = client.post(f"{SSO}/test")
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    started = h.started_from(response.headers["Location"])
    response = h.post(client, h.response(started.request_id, email, **kw), started.relay_state)
    assert response.status_code == 303 and "/settings/security/sso/tests/" in response.headers["Location"]
    return page(client, response.headers["Location"])


def test_full_self_serve_setup(admin_client, workspace, idp, make_user):  # noqa: F811
    from app.domains.service import add_domain
    add_domain(workspace, "acme.test", verified=True)
    make_user(workspace, "ada@acme.test", name="Ada Lovelace")
    make_user(workspace, "contractor@gmail.example", name="Carl Contractor")
    db.session.commit()

    html = page(admin_client)
    assert "Single sign-on (SAML)" in html and '<option selected value="okta">Okta</option>' in html
    admin_client.post(f"{SSO}/idp", data={"idp": "okta"})
    html = page(admin_client)
    cid = re.search(r'id="sso-connection-id">([^<]+)<', html).group(1)
    assert re.match(CONNECTION_ID_PATTERN, cid)
    assert f'data-copy="{cid}"' in html
    assert f"http://localhost/sso/saml/{cid}/metadata" in html and f"http://localhost/sso/saml/{cid}/acs" in html
    assert "Advanced Sign-on Settings" in html and "Bookmark App" in html and f"/sso/saml/{cid}/login" in html
    assert 'disabled aria-disabled="true">Turn SSO on' in html and "Unlocks after a successful test" in html

    response = admin_client.post(f"{SSO}/metadata-xml", data={"metadata_xml": idp.metadata()})
    assert response.status_code == 303
    html = page(admin_client)
    assert idp.entity_id in html and "Expires" in html

    h = SsoHarness(workspace, idp, cid)
    result = run_test_login(admin_client, h, "ada@acme.test", attributes={
        "firstName": ["Ada"], "lastName": ["Lovelace"], "groups": ["Engineering", "Admins"]})
    assert "Test succeeded" in result and "ada@acme.test" in result and "Engineering, Admins" in result
    assert "Ada Lovelace" in result
    assert signed_in_email(admin_client) == "admin@acme.test"  # a test never switches the session

    html = page(admin_client)
    assert "Review and turn SSO on" in html
    preview = page(admin_client, f"{SSO}/preview")
    assert "Ada Lovelace" in preview and "Carl Contractor" in preview
    assert re.search(r'id="sso-affected">.*admin@acme.test.*you', preview, re.S)
    blocked = preview.split('id="sso-blocked"')[1]
    assert "Carl Contractor" in blocked and "Ada Lovelace" not in blocked

    assert admin_client.post(f"{SSO}/enable", data={}).status_code == 422  # must confirm
    response = admin_client.post(f"{SSO}/enable", data={"confirm": "y"})
    assert response.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9-]{14})</code></li>", response.get_data(as_text=True))
    assert len(codes) == 10 and response.headers["Cache-Control"] == "no-store"
    assert db.session.scalar(select(SsoConnection.state).where(SsoConnection.connection_id == cid)) == "on"
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"sso.connection_created", "sso.idp_configured", "sso.connection_tested", "sso.enabled",
            "sso.recovery_codes_generated"} <= actions
    log = page(admin_client, f"{SSO}/log")
    assert "ada@acme.test" in log and "Test passed" in log  # a test starts no session: not "Signed in"
    assert re.search(r'aria-current="page"\s*>Security<', log)  # the Settings tab of the page you're on


def test_toggle_stays_locked_after_a_failed_test(admin_client, workspace, idp):  # noqa: F811
    h = setup_sso(workspace, idp, enable=False)
    result = run_test_login(admin_client, h, "admin@acme.test", keys=make_key_and_cert("wrong"))
    assert "Test failed" in result and "Signature not valid" in result
    assert "Expected" in result and "Received" in result
    html = page(admin_client)
    assert "Unlocks after a successful test" in html
    response = admin_client.post(f"{SSO}/enable", data={"confirm": "y"})
    assert response.status_code == 422 and "successful test" in unescape(response.get_data(as_text=True))


def test_test_result_shows_the_clock_difference_and_audience(admin_client, workspace, idp):  # noqa: F811
    import datetime as dt
    h = setup_sso(workspace, idp, enable=False)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
    result = run_test_login(admin_client, h, "admin@acme.test", now=later)
    assert "outside its time window" in result and re.search(r"(59\d|600) seconds ahead of", result)
    result = run_test_login(admin_client, h, "admin@acme.test", audience="urn:wrong")
    assert "Wrong audience" in result and "urn:wrong" in result and h.entity_id in result
    assert "Advanced Sign-on Settings" in result


def test_manual_configuration_and_bad_input_are_422(admin_client, workspace, idp):  # noqa: F811
    admin_client.post(f"{SSO}/idp", data={"idp": "custom"})
    bad = admin_client.post(f"{SSO}/manual", data={"entity_id": "x", "sso_url": "https://idp/sso",
                                                   "certificate": "not a cert"}, headers={"HX-Request": "true"})
    assert bad.status_code == 422 and "not an X.509 certificate" in bad.get_data(as_text=True)
    assert 'id="sso"' in bad.get_data(as_text=True) and "<html" not in bad.get_data(as_text=True)
    bad = admin_client.post(f"{SSO}/manual", data={"entity_id": idp.entity_id, "sso_url": "https://idp/sso",
                                                   "certificate": idp.cert_pem.decode()})
    assert bad.status_code == 422 and "not a valid URL" in bad.get_data(as_text=True)
    bad = admin_client.post(f"{SSO}/metadata-xml", data={"metadata_xml": "<!DOCTYPE x><x/>"})
    assert bad.status_code == 422 and "not valid SAML IdP metadata" in bad.get_data(as_text=True)
    ok = admin_client.post(f"{SSO}/manual", data={"entity_id": idp.entity_id, "sso_url": idp.sso_url,
                                                  "certificate": idp.cert_pem.decode()})
    assert ok.status_code == 303
    conn = db.session.scalar(select(SsoConnection))
    assert conn.is_configured and conn.idp_kind == "custom" and len(conn.certificates) == 1


def test_other_plans_and_members_cannot_touch_sso(client, make_workspace, make_user, workspace):
    member = make_user(workspace, "ada@acme.test")
    sign_in(client, member.email)
    assert client.post(f"{SSO}/idp", data={"idp": "okta"}).status_code == 403
    client.post("/logout")
    small = make_workspace("Small", plan="business", admin_email="boss@small.test")
    del small
    sign_in(client, "boss@small.test")
    response = client.post(f"{SSO}/idp", data={"idp": "okta"})
    assert response.status_code == 403 and "Enterprise" in response.get_data(as_text=True)


# --- metadata URL, fetched by a job ----------------------------------------------------------

@pytest.fixture
def metadata_server(idp):  # noqa: F811
    from flask import Flask
    server_app = Flask("idp-metadata")
    server_app.add_url_rule("/metadata", "metadata", lambda: (idp.metadata(), 200, {"Content-Type": "text/xml"}))
    server = make_server("127.0.0.1", 0, server_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/metadata"
    server.shutdown()


def test_metadata_url_is_fetched_by_a_job_and_polled(admin_client, workspace, idp, metadata_server, jobs):  # noqa: F811
    admin_client.post(f"{SSO}/idp", data={"idp": "okta"})
    response = admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": metadata_server},
                                 headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Fetching metadata" in html and 'hx-trigger="every 2s"' in html
    assert 'hx-get="/settings/security/sso/section?poll=1"' in html  # the poll is no activity of the admin
    jobs()
    html = admin_client.get(f"{SSO}/section", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 2s" not in html and idp.entity_id in html and "refreshed daily" in html
    conn = db.session.scalar(select(SsoConnection))
    db.session.refresh(conn)
    assert conn.metadata_status == "ok" and conn.is_configured


def test_metadata_url_that_fails_is_explained(admin_client, jobs):
    admin_client.post(f"{SSO}/idp", data={"idp": "okta"})
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": "http://127.0.0.1:9/nothing-here"})
    jobs()
    html = page(admin_client)
    assert "Couldn't use the metadata URL" in html


class MetadataServer:
    """An IdP's metadata URL whose answer the test changes: another IdP's metadata, or an error."""

    def __init__(self, idp):  # noqa: F811
        from flask import Flask
        self.idp, self.status = idp, 200
        server_app = Flask("switchable-metadata")
        server_app.add_url_rule("/metadata", "metadata", lambda: (self.idp.metadata(), self.status,
                                                                  {"Content-Type": "text/xml"}))
        self.server = make_server("127.0.0.1", 0, server_app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/metadata"


@pytest.fixture
def new_idp_metadata():
    server = MetadataServer(TestIdp(entity_id="https://new-idp.example/md", sso_url="https://new-idp.example/sso"))
    yield server
    server.server.shutdown()


def live_and_staged():
    db.session.expire_all()
    rows = db.session.scalars(select(SsoConnection).order_by(SsoConnection.is_staged)).all()
    return rows[0], (rows[1] if len(rows) > 1 else None)


def test_a_new_metadata_url_cannot_be_tested_before_it_has_delivered(app, admin_client, workspace, idp,  # noqa: F811
                                                                     new_idp_metadata, jobs):
    """Testing while the fetch is pending would test the old configuration and then promote the
    new URL, whose IdP the daily refresh would put live untested."""
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": new_idp_metadata.url})
    html = page(admin_client)
    assert "Gatehouse is still fetching your IdP's metadata" in html
    assert re.search(r'<button class="button primary" type="submit" disabled[^>]*>Test connection', html)
    response = admin_client.post(f"{SSO}/test")
    assert response.status_code == 422 and "still fetching" in unescape(response.get_data(as_text=True))

    jobs()  # the fetch delivers the new IdP's metadata to the draft: now it can be tested, and goes live
    live, staged = live_and_staged()
    assert staged.idp_entity_id == "https://new-idp.example/md" and live.idp_entity_id == idp.entity_id
    new_h = SsoHarness(workspace, new_idp_metadata.idp, h.connection_id)
    assert "Test succeeded" in run_test_login(admin_client, new_h, "admin@acme.test")
    live, staged = live_and_staged()
    assert staged is None and live.is_on and live.idp_entity_id == "https://new-idp.example/md"
    assert live.metadata_url == new_idp_metadata.url and live.metadata_status == "ok"


def test_a_metadata_url_that_never_delivered_is_not_tested_nor_promoted(app, admin_client, workspace, idp,  # noqa: F811
                                                                        new_idp_metadata, make_user, jobs):
    from jobs.sso import refresh_all_metadata
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303
    make_user(workspace, "ada@acme.test")
    new_idp_metadata.status = 500
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": new_idp_metadata.url})
    jobs()
    html = page(admin_client)
    assert "Couldn't use the metadata URL" in html and "hasn't delivered your IdP's metadata yet" in html
    response = admin_client.post(f"{SSO}/test")
    assert response.status_code == 422 and "Fix the URL" in unescape(response.get_data(as_text=True))

    new_idp_metadata.status = 200  # the URL starts working: the daily refresh updates the draft, not the live one
    refresh_all_metadata()
    live, staged = live_and_staged()
    assert live.idp_entity_id == idp.entity_id and live.metadata_url is None
    assert staged.idp_entity_id == "https://new-idp.example/md"
    assert h.sign_in(app.test_client(), "ada@acme.test").status_code == 303  # members unaffected


def test_a_metadata_url_set_during_a_test_voids_that_test(app, admin_client, workspace, idp,  # noqa: F811
                                                          new_idp_metadata, jobs):
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303
    admin_client.post(f"{SSO}/certificates", data={"certificate": make_key_and_cert("next")[1].decode()})
    response = admin_client.post(f"{SSO}/test")  # the admin is at the IdP...
    started = h.started_from(response.headers["Location"])
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": new_idp_metadata.url})  # ...another tab
    response = h.post(admin_client, h.response(started.request_id, "admin@acme.test"), started.relay_state)
    result = page(admin_client, response.headers["Location"])
    assert "Test failed" in result and "Metadata not fetched yet" in result
    live, staged = live_and_staged()
    assert staged is not None and live.metadata_url is None and live.idp_entity_id == idp.entity_id
    assert last_log(workspace.id).error_code == "metadata_not_fetched"


def test_a_fetch_that_returns_after_the_url_changed_is_not_applied(app, admin_client, workspace, idp,  # noqa: F811
                                                                   new_idp_metadata, jobs, monkeypatch):
    """URL A's fetch finishes after the admin gave URL B: A's metadata must not land, nor mark B
    as delivered (which would let B be tested and go live without ever having answered)."""
    import jobs.sso as sso_jobs
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": new_idp_metadata.url})  # URL A
    url_b = "http://127.0.0.1:1/never-answers"
    fetch = sso_jobs.fetch_metadata

    def slow_fetch(url, production):
        xml = fetch(url, production=production)
        if url == new_idp_metadata.url:  # meanwhile, in another request, the admin gives URL B
            with app.test_request_context():
                connections.set_metadata_url(workspace.id, url_b, actor=None)
                db.session.commit()
        return xml

    monkeypatch.setattr(sso_jobs, "fetch_metadata", slow_fetch)
    _, staged = live_and_staged()
    assert sso_jobs.fetch_connection_metadata(staged.id) == "changed meanwhile"
    _, staged = live_and_staged()
    assert (staged.metadata_url, staged.metadata_status, staged.idp_entity_id) == (url_b, "pending", idp.entity_id)
    assert staged.metadata_url_unproven
    assert sso_jobs.fetch_connection_metadata(staged.id).startswith("failed")  # B's own fetch
    response = admin_client.post(f"{SSO}/test")
    assert response.status_code == 422 and "hasn't delivered" in unescape(response.get_data(as_text=True))


@pytest.mark.postgres
def test_a_url_given_while_a_fetch_records_its_outcome_waits_for_it(db_backend, app, admin_client, workspace,
                                                                    idp, new_idp_metadata, monkeypatch):  # noqa: F811
    """The admin gives URL B while A's outcome is being written: B's change waits for that commit
    (the URL check is the first write), then lands; A's metadata never counts as B's."""
    import jobs.sso as sso_jobs
    from sqlalchemy import text
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": new_idp_metadata.url})  # URL A
    _, staged = live_and_staged()
    staged_id, url_b, engine = staged.id, "http://127.0.0.1:1/never-answers", db.engine
    apply, admin = sso_jobs.apply_idp_config, []

    def give_url_b():  # the admin's request, in its own thread and connection
        with engine.begin() as conn:
            conn.execute(text("UPDATE sso_connection SET metadata_url = :url, metadata_status = 'pending', "
                              "metadata_fetched_at = NULL WHERE id = :id"), {"url": url_b, "id": staged_id})

    def apply_while_the_admin_gives_url_b(conn, config, **kw):
        admin.append(threading.Thread(target=give_url_b))
        admin[0].start()
        admin[0].join(0.3)  # it waits for the job's commit
        return apply(conn, config, **kw)

    monkeypatch.setattr(sso_jobs, "apply_idp_config", apply_while_the_admin_gives_url_b)
    assert sso_jobs.fetch_connection_metadata(staged_id).startswith("ok")
    admin[0].join(10)
    _, staged = live_and_staged()
    assert (staged.metadata_url, staged.metadata_status) == (url_b, "pending") and staged.metadata_url_unproven


def test_a_failed_refresh_of_a_url_that_delivered_before_leaves_it_testable(app, admin_client, workspace,
                                                                            new_idp_metadata, jobs):
    """Only a URL that never delivered blocks a test: an IdP down for a day keeps what it sent last."""
    admin_client.post(f"{SSO}/idp", data={"idp": "okta"})
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": new_idp_metadata.url})
    jobs()
    new_idp_metadata.status = 503
    from jobs.sso import refresh_all_metadata
    refresh_all_metadata()
    live, _ = live_and_staged()
    assert live.metadata_status == "failed" and live.metadata_fetched_at is not None
    assert admin_client.post(f"{SSO}/test").status_code == 303


def test_a_fetch_stopped_by_anything_else_is_a_failure_not_pending_forever(app, admin_client, monkeypatch, jobs):
    """RQ ends a job past its time limit by raising inside it: the page must not poll forever."""
    from rq.timeouts import JobTimeoutException
    import jobs.sso as sso_jobs

    def stopped(url, production):
        raise JobTimeoutException("Task exceeded maximum timeout value (180 seconds)")

    monkeypatch.setattr(sso_jobs, "fetch_metadata", stopped)
    admin_client.post(f"{SSO}/idp", data={"idp": "okta"})
    admin_client.post(f"{SSO}/metadata-url", data={"metadata_url": "https://idp.example/metadata"})
    jobs()
    html = admin_client.get(f"{SSO}/section", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 2s" not in html and "The fetch stopped unexpectedly" in unescape(html)


# --- staged changes ---------------------------------------------------------------------------

@pytest.mark.postgres
def test_staged_switch_from_custom_app_to_okta_catalog_without_lockout(app, admin_client, workspace, idp,  # noqa: F811
                                                                        make_user):
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303  # SSO on signed everyone out
    make_user(workspace, "ada@acme.test")
    new_idp = TestIdp(entity_id="http://www.okta.com/exk-catalog", sso_url="https://acme.okta.example/sso")
    admin_client.post(f"{SSO}/idp", data={"idp": "okta"})
    admin_client.post(f"{SSO}/metadata-xml", data={"metadata_xml": new_idp.metadata()})
    html = page(admin_client)
    assert "Draft changes" in html and "Tests the <strong>draft</strong>" in html
    staged = db.session.scalar(select(SsoConnection).where(SsoConnection.is_staged.is_(True)))
    assert staged.connection_id == h.connection_id  # shared: the Okta app needs no change

    # Members keep signing in through the live (old) IdP meanwhile.
    member = app.test_client()
    assert h.sign_in(member, "ada@acme.test").status_code == 303
    new_h = SsoHarness(workspace, new_idp, h.connection_id)
    assert h.sign_in(app.test_client(), "ada@acme.test", keys=new_idp.keys).status_code == 400

    result = run_test_login(admin_client, new_h, "admin@acme.test")
    assert "Test succeeded" in result and "now live" in result
    assert db.session.scalar(select(SsoConnection).where(SsoConnection.is_staged.is_(True))) is None
    assert new_h.sign_in(app.test_client(), "ada@acme.test").status_code == 303
    old_client = app.test_client()
    started = new_h.start(old_client)  # the old IdP's responses are no longer trusted
    assert h.post(old_client, h.response(started.request_id, "ada@acme.test"), started.relay_state).status_code == 400
    live = db.session.scalar(select(SsoConnection))
    assert live.is_on and live.idp_entity_id == new_idp.entity_id


def test_failed_draft_test_leaves_the_live_connection_alone(app, admin_client, workspace, idp, make_user):  # noqa: F811
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303  # SSO on signed everyone out
    make_user(workspace, "ada@acme.test")
    admin_client.post(f"{SSO}/certificates", data={"certificate": make_key_and_cert("next")[1].decode()})
    result = run_test_login(admin_client, h, "admin@acme.test", keys=make_key_and_cert("bogus"))
    assert "Test failed" in result
    assert db.session.scalar(select(SsoConnection).where(SsoConnection.is_staged.is_(True))) is not None
    assert h.sign_in(app.test_client(), "ada@acme.test").status_code == 303


# --- enforcement at /login, recovery codes ------------------------------------------------------

def test_login_sends_authorized_domains_to_the_idp(client, sso, make_user):  # noqa: F811
    make_user(sso.workspace, "ada@acme.test")
    response = client.post("/login", data={"email": "Ada@ACME.test"})
    assert response.status_code == 303 and response.headers["Location"] == sso.login_path
    response = client.post("/login", data={"email": "someone@elsewhere.example"})
    assert response.status_code == 200  # the password step


def test_login_leaves_another_workspaces_members_on_that_domain_their_own_rules(app, sso, make_workspace,
                                                                              make_user):  # noqa: F811
    """Acme verified acme.test and turned SSO on; Side Project (another workspace) has members on
    acme.test too. /login must not send them to Acme's IdP: their workspace's rules apply (here a
    password), and the password step still offers SSO to those who also belong to Acme."""
    side = make_workspace("Side Project", plan="business", admin_email="boss@acme.test")
    make_user(sso.workspace, "both@acme.test")
    make_user(side, "both@acme.test")
    for email in ("boss@acme.test", "Both@Acme.test"):
        client = app.test_client()
        response = client.post("/login", data={"email": email})
        html = unescape(response.get_data(as_text=True))
        assert response.status_code == 200 and "Enter your password" in html
        assert "Continue with SSO" in html and f'href="{sso.login_path}"' in html
    boss = app.test_client()
    sign_in(boss, "boss@acme.test")
    assert signed_in_email(boss) == "boss@acme.test"
    both = app.test_client()
    response = both.post("/login/password", data={"email": "both@acme.test", "password": PASSWORD})
    assert response.status_code == 303  # the password proves the Side Project account, the only one it may open
    assert sso.sign_in(app.test_client(), "both@acme.test").status_code == 303  # Acme's through its IdP


def test_password_refused_under_enforcement(client, sso, make_user):  # noqa: F811
    make_user(sso.workspace, "ada@acme.test")
    make_user(sso.workspace, "bob@elsewhere.example")
    response = client.post("/login/password", data={"email": "ada@acme.test", "password": PASSWORD})
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == 422 and "requires single sign-on" in html and sso.login_path in html
    assert 'href="/sso/recovery"' in html
    response = client.post("/login/password", data={"email": "bob@elsewhere.example", "password": PASSWORD})
    assert response.status_code == 422 and "doesn't allow you" in unescape(response.get_data(as_text=True))
    assert signed_in_email(client) is None


@pytest.mark.postgres
def test_recovery_refusals_all_cost_one_password_check(app, sso, make_user, admin, monkeypatch):  # noqa: F811
    """Unknown email, a member who is no admin, an admin with the wrong password: each refusal
    runs exactly one password hash, so its timing doesn't tell who is an admin here."""
    from app.sso import recovery
    make_user(sso.workspace, "member@acme.test")
    checks = []
    real_check = recovery.check_password_hash

    def counted(*args):
        checks.append(args)
        return real_check(*args)

    monkeypatch.setattr(recovery, "check_password_hash", counted)
    for email in ("nobody@acme.test", "member@acme.test", admin.email):
        checks.clear()
        with pytest.raises(recovery.RecoveryRefused):
            recovery.sign_in_with_code(email, "wrong-password", "abcd-efgh-jkmn")
        assert len(checks) == 1, email


def test_recovery_code_is_single_use_audited_and_mailed(app, sso, make_user, admin):  # noqa: F811
    from app.sso import recovery
    other_admin = make_user(sso.workspace, "second@acme.test", role="admin")
    codes = recovery.generate(admin)
    db.session.commit()
    client = app.test_client()
    data = {"email": admin.email, "password": PASSWORD, "code": codes[0].upper().replace("-", " ")}
    bad = client.post("/sso/recovery", data={**data, "password": "wrong-password"})
    assert bad.status_code == 422 and signed_in_email(client) is None
    response = client.post("/sso/recovery", data=data)
    assert response.status_code == 303 and signed_in_email(client) == admin.email
    client.post("/logout")
    again = client.post("/sso/recovery", data=data)
    assert again.status_code == 422 and "don't match" in unescape(again.get_data(as_text=True))
    assert signed_in_email(client) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sso.recovery_code_used"))
    assert event.details == {"codes_left": 9}
    mail = db.session.scalars(select(OutboundEmail).where(OutboundEmail.to == other_admin.email)).all()
    assert len(mail) == 1 and "recovery code" in mail[0].subject
    member = make_user(sso.workspace, "ada@acme.test")
    assert app.test_client().post("/sso/recovery", data={"email": member.email, "password": PASSWORD,
                                                         "code": codes[1]}).status_code == 422


def test_enabling_refuses_to_lock_out_every_admin(admin_client, workspace, idp, admin):  # noqa: F811
    from app.sso import connections
    h = setup_sso(workspace, idp, domain="corp.test", enable=False)  # the only admin is on acme.test: blocked
    connections.set_jit(workspace.id, enabled=True, role="creator", actor=admin)
    db.session.commit()
    assert "Test succeeded" in run_test_login(admin_client, h, "tester@corp.test")
    response = admin_client.post(f"{SSO}/enable", data={"confirm": "y"})
    assert response.status_code == 422 and "without an active admin" in unescape(response.get_data(as_text=True))


def test_purge_step_deletes_the_users_login_log(sso, make_user, client):  # noqa: F811
    from app.members.purge import purge_steps
    from app.models import SamlLoginLog
    user = make_user(sso.workspace, "ada@acme.test")
    sso.sign_in(client, "ada@acme.test")
    assert last_log(sso.workspace.id).user_id == user.id
    step = purge_steps()["saml_login_log"]
    assert step(sso.workspace.id, user.id, 100) >= 1
    db.session.commit()
    assert db.session.scalars(select(SamlLoginLog).where(SamlLoginLog.user_id == user.id)).all() == []
    assert step(sso.workspace.id, user.id, 100) == 0


def test_sp_metadata(client, sso):  # noqa: F811
    response = client.get(f"/sso/saml/{sso.connection_id}/metadata")
    xml = response.get_data(as_text=True)
    assert response.status_code == 200 and "samlmetadata+xml" in response.content_type
    assert f'entityID="{sso.entity_id}"' in xml and sso.acs_url in xml and "emailAddress" in xml


def test_test_result_for_unknown_and_deactivated_users(admin_client, workspace, idp, make_user):  # noqa: F811
    h = setup_sso(workspace, idp, enable=False)
    result = run_test_login(admin_client, h, "nobody@acme.test")
    assert "Test failed" in result and "No account for this email" in result and "just-in-time" in result
    make_user(workspace, "gone@acme.test", status="deactivated")
    result = run_test_login(admin_client, h, "gone@acme.test")
    assert "Account deactivated" in result and "Reactivate the member" in result
    assert "Unlocks after a successful test" in page(admin_client)
    result = run_test_login(admin_client, h, "someone@elsewhere.example")
    assert "<dt>Received</dt><dd><code>elsewhere.example</code>" in result
    assert "<dt>Expected</dt>" not in result  # nothing to compare with: no empty row


def test_new_recovery_codes_replace_the_unused_ones(app, admin_client, sso, admin):  # noqa: F811
    from app.sso import recovery
    assert sso.sign_in(admin_client, admin.email).status_code == 303  # SSO on signed everyone out
    old = recovery.generate(admin)
    db.session.commit()
    once = once_token_from(page(admin_client))
    response = admin_client.post(f"{SSO}/recovery-codes", data={"once": once})
    new = re.findall(r"<li><code>([a-z0-9-]{14})</code></li>", response.get_data(as_text=True))
    assert response.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    assert response.headers["Cache-Control"] == "no-store" and 'hx-history="false"' in response.get_data(as_text=True)
    other = app.test_client()
    assert other.post("/sso/recovery", data={"email": admin.email, "password": PASSWORD,
                                             "code": old[0]}).status_code == 422
    assert other.post("/sso/recovery", data={"email": admin.email, "password": PASSWORD,
                                             "code": new[0]}).status_code == 303
    assert "You have <strong>9</strong> unused" in page(admin_client)
    # Reloading the codes page re-posts the form: told so, and the codes just shown stay valid.
    again = admin_client.post(f"{SSO}/recovery-codes", data={"once": once}, follow_redirects=True)
    assert "Nothing new was made" in again.get_data(as_text=True)
    assert other.post("/sso/recovery", data={"email": admin.email, "password": PASSWORD,
                                             "code": new[1]}).status_code == 303


@pytest.mark.parametrize("url", [
    "https://100.100.100.200/latest/meta-data",  # shared address space (RFC 6598): a cloud metadata service
    "https://[2002:7f00:1::]/metadata",  # 6to4 wrapping 127.0.0.1
    "https://[fec0::1]/metadata",  # IPv6 site-local (deprecated, still routed inside some networks)
])
def test_production_metadata_fetch_refuses_other_non_public_addresses(url):
    from app.sso.metadata import MetadataError, fetch_metadata
    with pytest.raises(MetadataError, match="private, loopback or link-local"):
        fetch_metadata(url, production=True)


@pytest.mark.parametrize("email", ["newbie@acme.test", "contractor@elsewhere.example"])
def test_accepting_an_invitation_under_enforcement_does_not_sign_in_with_a_password(app, sso, admin, email):  # noqa: F811
    """With SSO on, an invited member on an authorized domain must sign in through the IdP, and
    one outside the authorized domains is blocked: the invitation link is no way around it (an
    address SSO blocks can't be invited now; the second case is one invited before SSO was on)."""
    from app.members.service import invite
    from app.models import User
    from app.auth import tokens
    from app.models import TokenPurpose
    connections.disable(sso.workspace.id, actor=admin)
    user = invite(sso.workspace, email, "creator", actor=admin)
    connections.enable(sso.workspace.id, actor=admin)
    secret = tokens.issue(user, TokenPurpose.invitation)
    db.session.commit()
    client = app.test_client()
    response = client.post(f"/invitations/{secret}", data={"name": "New", "password": "a long new passphrase 1",
                                                            "confirm": "a long new passphrase 1"})
    assert response.status_code == 409 and signed_in_email(client) is None
    html = unescape(response.get_data(as_text=True))
    assert ("Continue with single sign-on" in html) == email.endswith("@acme.test")
    row = db.session.execute(select(User.status, User.password_hash).where(User.email_normalized == email)).one()
    assert row == ("invited", None)


def test_an_invitation_sso_would_block_is_neither_sent_nor_resent(app, sso, admin):  # noqa: F811
    from app.members.service import MemberError, invite, resend_invitation
    with pytest.raises(MemberError, match="elsewhere.example is not one of this workspace's authorized domains"):
        invite(sso.workspace, "contractor@elsewhere.example", "creator", actor=admin)
    connections.disable(sso.workspace.id, actor=admin)
    user = invite(sso.workspace, "contractor@elsewhere.example", "creator", actor=admin)
    connections.enable(sso.workspace.id, actor=admin)
    db.session.commit()
    with pytest.raises(MemberError, match="then resend the invitation"):
        resend_invitation(sso.workspace, user, actor=admin)
    subjects = db.session.scalars(select(OutboundEmail.to)).all()
    assert subjects.count("contractor@elsewhere.example") == 1  # the one sent before SSO was on


def test_a_resent_invitation_under_sso_says_to_sign_in_with_sso(app, sso, admin):  # noqa: F811
    from app.members.service import invite, resend_invitation
    user = invite(sso.workspace, "newbie@acme.test", "creator", actor=admin)
    resend_invitation(sso.workspace, user, actor=admin)
    db.session.commit()
    bodies = db.session.scalars(select(OutboundEmail.body_text).where(OutboundEmail.to == "newbie@acme.test")).all()
    assert len(bodies) == 2 and all("single sign-on" in body for body in bodies)


def test_turning_sso_on_ends_every_open_session(app, workspace, admin, idp, make_user):  # noqa: F811
    """From then on the IdP decides who is signed in: password sessions and remember-me
    cookies of members who must now use SSO end as well as those of members it blocks."""
    inside = make_user(workspace, "ada@acme.test")
    outside = make_user(workspace, "bob@elsewhere.example")
    inside_client, outside_client, remembered = app.test_client(), app.test_client(), app.test_client()
    sign_in(inside_client, inside.email)
    sign_in(outside_client, outside.email)
    remembered.post("/login", data={"email": admin.email})
    remembered.post("/login/password", data={"email": admin.email, "password": PASSWORD, "remember": "y"})
    assert remembered.get_cookie("remember_token") is not None
    remembered.delete_cookie("session")  # a browser restarted: only the remember-me cookie is left
    assert remembered.get("/library").status_code == 200

    h = setup_sso(workspace, idp)  # acme.test verified, SSO turned on
    for client in (inside_client, outside_client, remembered):
        assert client.get("/library").status_code == 302
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sso.enabled"))
    assert event.details["sessions_ended"] == 3  # the admin, Ada and Bob
    assert h.sign_in(inside_client, inside.email).status_code == 303  # back in, through the IdP
    assert signed_in_email(inside_client) == "ada@acme.test"


def test_the_admin_who_turns_sso_on_stays_signed_in_in_that_browser_only(app, admin_client, workspace, admin,  # noqa: F811
                                                                          idp):
    """To save the recovery codes shown next; their other browsers are signed out like everyone's."""
    h = setup_sso(workspace, idp, enable=False)
    other_browser = app.test_client()
    sign_in(other_browser, admin.email)
    assert "Test succeeded" in run_test_login(admin_client, h, admin.email)
    assert "signs everyone out, including your other browsers" in page(admin_client, f"{SSO}/preview")
    response = admin_client.post(f"{SSO}/enable", data={"confirm": "y"})
    assert response.status_code == 200 and "recovery" in response.get_data(as_text=True).lower()
    assert db.session.scalar(select(SsoConnection)).is_on
    assert signed_in_email(admin_client) == admin.email
    assert "SSO is on" in page(admin_client)
    assert other_browser.get("/library").status_code == 302


def _labs_verified(workspace):
    """acme-labs.test verified too: its members sign in through the IdP once SSO is on."""
    from app.domains.service import add_domain
    labs = add_domain(workspace, "acme-labs.test", verified=True)
    db.session.commit()
    return labs


def test_removing_a_domain_under_sso_ends_the_sessions_of_members_it_blocks(app, workspace, admin, idp,  # noqa: F811
                                                                            make_user):
    """The admin who removes it too, if it was their domain: another admin (on acme.test) still signs in."""
    from app.domains.service import remove_domain
    labs = _labs_verified(workspace)
    make_user(workspace, "carol@acme-labs.test")
    lead = make_user(workspace, "lead@acme-labs.test", role="admin")
    h = setup_sso(workspace, idp)
    carol_client, lead_client, admin_client = app.test_client(), app.test_client(), app.test_client()
    for client, email in ((carol_client, "carol@acme-labs.test"), (lead_client, lead.email),
                          (admin_client, admin.email)):
        assert h.sign_in(client, email).status_code == 303

    remove_domain(labs, actor=lead)
    db.session.commit()
    assert carol_client.get("/library").status_code == 302  # blocked now: the open session ended
    assert lead_client.get("/library").status_code == 302
    assert admin_client.get("/library").status_code == 200
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "member.sessions_ended")
                                .order_by(AuditEvent.target_label)).all()
    assert [e.target_label for e in events] == ["carol@acme-labs.test", "lead@acme-labs.test"]
    assert {e.details["reason"] for e in events} == {"acme-labs.test removed"}


def test_a_domain_failing_under_sso_ends_the_sessions_of_members_it_blocks(app, workspace, idp, make_user):  # noqa: F811
    from app.domains import verification
    from app.models import utcnow
    labs = _labs_verified(workspace)
    make_user(workspace, "carol@acme-labs.test")
    make_user(workspace, "ada@acme.test")
    h = setup_sso(workspace, idp)
    carol_client, inside_client = app.test_client(), app.test_client()
    assert h.sign_in(carol_client, "carol@acme-labs.test").status_code == 303
    assert h.sign_in(inside_client, "ada@acme.test").status_code == 303

    labs.record_missing_since = utcnow() - verification.GRACE
    verification.fail(labs, utcnow())  # what the DNS sweep does once the grace period is over
    db.session.commit()
    assert labs.status == "failed"
    assert carol_client.get("/library").status_code == 302
    assert inside_client.get("/library").status_code == 200  # acme.test still covers them
    assert db.session.scalar(select(AuditEvent.target_label).where(
        AuditEvent.action == "member.sessions_ended")) == "carol@acme-labs.test"


def test_removing_a_domain_without_sso_ends_no_session(app, workspace, admin, make_user):
    from app.domains.service import remove_domain
    labs = _labs_verified(workspace)
    carol = make_user(workspace, "carol@acme-labs.test")
    carol_client = app.test_client()
    sign_in(carol_client, carol.email)
    remove_domain(labs, actor=admin)
    db.session.commit()
    assert carol_client.get("/library").status_code == 200  # passwords still work without SSO
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "member.sessions_ended")) is None


def test_members_outside_the_domains_are_said_to_be_blocked_now_once_sso_is_on(admin_client, workspace, idp,  # noqa: F811
                                                                               make_user):
    from app.domains.service import add_domain
    add_domain(workspace, "acme.test", verified=True)
    make_user(workspace, "bob@elsewhere.example")
    db.session.commit()

    def panel():
        return " ".join(admin_client.get("/settings/domains/outside-members", headers={"HX-Request": "true"})
                        .get_data(as_text=True).split())
    assert "1 member will be <strong>blocked from signing in</strong> once SSO is enforced" in panel()
    h = setup_sso(workspace, idp, domain=None)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303  # SSO on signed everyone out
    assert "1 member is <strong>blocked from signing in</strong> now: SSO is on" in panel()


def test_with_sso_on_the_page_leads_with_its_state_and_folds_the_setup(admin_client, workspace, idp):  # noqa: F811
    h = setup_sso(workspace, idp, enable=False)
    html = page(admin_client)
    assert re.search(r'<details class="sso-setup"\s+open>', html) and "5. Turn SSO on" in html
    assert "Unlocks after a successful test login" in html
    from app.sso import connections
    connections.enable(workspace.id, actor=None, override=True)
    db.session.commit()
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303  # SSO on signed everyone out
    html = page(admin_client)
    assert html.index("SSO is on") < html.index("1. Identity provider")
    assert re.search(r'<details class="sso-setup"\s*>', html) and "5. Turn SSO on" not in html
    assert "Turn SSO off" in html and "SAML login log" in html


@pytest.mark.postgres
def test_a_setup_never_turned_on_can_be_cancelled(db_backend, admin_client, workspace, idp):  # noqa: F811
    from app.models import SamlRequest, SsoCertificate
    h = setup_sso(workspace, idp, enable=False)
    assert admin_client.post(f"{SSO}/test").status_code == 303  # a test sign-in in flight goes with it
    assert db.session.scalar(select(SamlRequest)) is not None
    assert "Cancel SSO setup" in page(admin_client)
    response = admin_client.post(f"{SSO}/cancel")
    assert response.status_code == 303
    for model in (SsoConnection, SsoCertificate, SamlRequest):
        assert db.session.scalar(select(model)) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sso.setup_cancelled"))
    assert event.target_label and event.details["state"] == "draft"
    html = page(admin_client)
    assert "Start SSO setup" in html and h.connection_id not in html


def test_a_live_connection_cannot_be_cancelled(admin_client, workspace, idp):  # noqa: F811
    h = setup_sso(workspace, idp)
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303  # SSO on signed everyone out
    assert "Cancel SSO setup" not in page(admin_client)
    response = admin_client.post(f"{SSO}/cancel", headers={"HX-Request": "true"})
    assert response.status_code == 422 and "turn it off before removing" in response.get_data(as_text=True)
    assert db.session.scalar(select(SsoConnection.connection_id)) == h.connection_id


def test_an_admin_whom_sso_blocks_is_signed_out_even_in_the_browser_that_turned_it_on(app, workspace, idp,
                                                                                      make_user):
    """Outside the authorized domains, SSO blocks them from now on (another admin, on acme.test, still
    signs in): keeping their session would leave a blocked person signed in for days."""
    from app.models import SsoConnection
    boss = make_user(workspace, "boss@elsewhere.example", role="admin")
    h = setup_sso(workspace, idp, enable=False)
    db.session.scalar(select(SsoConnection)).state = "tested"
    db.session.commit()
    browser = app.test_client()
    sign_in(browser, boss.email)
    response = browser.post(f"{SSO}/enable", data={"confirm": "y"})
    assert response.status_code == 200 and db.session.scalar(select(SsoConnection)).is_on
    assert browser.get("/library").status_code == 302
    assert h.sign_in(app.test_client(), "admin@acme.test").status_code == 303  # the other admin still can
