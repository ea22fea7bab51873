"""`sso-connection create` (the operator's contract) and the SSO jobs:
metadata refresh (certificate rotation) and certificate-expiry emails."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, OutboundEmail, SsoCertificate, SsoConnection
from app.models.sso import CONNECTION_ID_PATTERN
from tests.support.saml_idp import TestIdp, make_key_and_cert
from tests.support.sso import SsoHarness, idp, setup_sso, signed_in_email  # noqa: F401


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def create(runner, *extra, workspace="acme", metadata=None):
    return runner.invoke(args=["sso-connection", "create", "--workspace", workspace, "--idp", "okta",
                               "--metadata", metadata, *extra])


def test_create_prints_only_the_connection_id(runner, workspace, idp, tmp_path):  # noqa: F811
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata())
    result = create(runner, metadata=str(path))
    assert result.exit_code == 0, result.stderr
    cid = result.stdout.strip()
    assert result.stdout == cid + "\n" and re.match(CONNECTION_ID_PATTERN, cid)
    conn = db.session.scalar(select(SsoConnection))
    assert (conn.connection_id, conn.state, conn.idp_entity_id) == (cid, "draft", idp.entity_id)


def test_create_with_enable_turns_sso_on_audited(runner, client, workspace, idp, tmp_path, make_user):  # noqa: F811
    from app.domains.service import add_domain
    add_domain(workspace, "acme.test", verified=True)
    make_user(workspace, "ada@acme.test")
    db.session.commit()
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata())
    result = create(runner, "--enable", metadata=str(path))
    assert result.exit_code == 0, result.stderr
    cid = result.stdout.strip()
    assert "operator override" in result.stderr
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sso.enabled"))
    assert event.actor_label == "operator (CLI)" and event.details == {"override": True, "sessions_ended": 2}  # the admin's and Ada's
    h = SsoHarness(workspace, idp, cid)
    assert h.sign_in(client, "ada@acme.test").status_code == 303
    assert signed_in_email(client) == "ada@acme.test"


@pytest.mark.parametrize("setup, reason", [
    ("missing-file", "metadata file not found"),
    ("bad-xml", "metadata: This is not valid SAML IdP metadata"),
    ("no-workspace", "no workspace with slug"),
    ("not-enterprise", "needs the Enterprise plan"),
    ("twice", "already has an SSO connection"),
])
def test_create_errors_exit_1_and_write_nothing(runner, workspace, make_workspace, idp, tmp_path, setup,  # noqa: F811
                                                reason):
    good = tmp_path / "idp.xml"
    good.write_text(idp.metadata())
    bad = tmp_path / "bad.xml"
    bad.write_text("<!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>")
    slug, metadata = "acme", str(good)
    if setup == "missing-file":
        metadata = str(tmp_path / "nope.xml")
    elif setup == "bad-xml":
        metadata = str(bad)
    elif setup == "no-workspace":
        slug = "nobody"
    elif setup == "not-enterprise":
        slug = make_workspace("Small", plan="business", admin_email="b@small.test").slug
    elif setup == "twice":
        assert create(runner, metadata=str(good)).exit_code == 0
    before = db.session.scalar(select(func.count()).select_from(SsoConnection))
    result = create(runner, workspace=slug, metadata=metadata)
    assert result.exit_code == 1 and result.stdout == ""
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert db.session.scalar(select(func.count()).select_from(SsoConnection)) == before


def test_create_with_enable_refuses_to_lock_out_the_admins(runner, workspace, idp, tmp_path):  # noqa: F811
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata())
    result = create(runner, "--enable", metadata=str(path))  # no verified domain: the admin would be blocked
    assert result.exit_code == 1 and "without an active admin" in result.stderr
    assert db.session.scalar(select(func.count()).select_from(SsoConnection)) == 0


# --- jobs -------------------------------------------------------------------------------------

def test_daily_refresh_picks_up_a_rotated_certificate(app, workspace, tmp_path, jobs):
    import threading
    from flask import Flask
    from werkzeug.serving import make_server
    from app.sso import connections
    from jobs.sso import refresh_all_metadata
    idp_ = TestIdp()
    state = {"xml": idp_.metadata()}
    server_app = Flask("idp")
    server_app.add_url_rule("/md", "md", lambda: state["xml"])
    server = make_server("127.0.0.1", 0, server_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connections.start_setup(workspace, "okta", actor=None)
        conn = connections.set_metadata_url(workspace.id, f"http://127.0.0.1:{server.server_port}/md", actor=None)
        db.session.commit()
        refresh_all_metadata()
        assert len(db.session.get(SsoConnection, conn.id).certificates) == 1
        new_cert = make_key_and_cert("rotated")[1]
        state["xml"] = idp_.metadata(new_cert)  # the IdP publishes its next certificate
        refresh_all_metadata()
        db.session.expire_all()
        assert len(db.session.get(SsoConnection, conn.id).certificates) == 2
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.idp_configured")
                                   .order_by(AuditEvent.id.desc())).first()
        assert any(c.startswith("certificate added") for c in event.details["changes"])
    finally:
        server.shutdown()


def test_expiring_certificate_warns_admins_once_by_email(mail_app, workspace, make_user, jobs, smtp):
    from app.sso import connections
    from jobs.sso import warn_expiring_certificates
    make_user(workspace, "second@acme.test", role="admin")
    soon = TestIdp(keys=make_key_and_cert("expiring", days=10))
    connections.start_setup(workspace, "okta", actor=None)
    connections.configure_from_xml(workspace.id, soon.metadata(), actor=None)
    db.session.commit()
    assert warn_expiring_certificates() == 1
    assert warn_expiring_certificates() == 0  # once per certificate
    jobs()
    assert {m.envelope_to[0] for m in smtp.inbox} == {"admin@acme.test", "second@acme.test"}
    body = smtp.inbox.text(smtp.inbox[0])
    fingerprint = db.session.scalar(select(SsoCertificate.fingerprint))
    assert fingerprint in body and "expires on" in body
    assert f"{mail_app.config['BASE_URL']}/settings/security#sso" in body  # the SSO section, on BASE_URL
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 2


def test_expiring_certificate_is_warned_once_while_a_draft_holds_a_copy(app, workspace):
    """Staging the rotation copies the live certificates into a draft: one email, and none
    again when the draft goes live."""
    from app.sso import connections
    from jobs.sso import warn_expiring_certificates
    soon = TestIdp(keys=make_key_and_cert("expiring", days=10))
    setup_sso(workspace, soon)
    connections.add_certificate(workspace.id, make_key_and_cert("next", days=400)[1].decode(), actor=None)
    db.session.commit()
    assert warn_expiring_certificates() == 1
    assert db.session.scalars(select(OutboundEmail.subject)).all() == [
        f"Your SSO signing certificate expires on {soon_expiry(workspace)}"]
    connections.mark_tested(connections.staged_connection(workspace.id), actor=None)  # the draft goes live
    db.session.commit()
    assert warn_expiring_certificates() == 0
    assert db.session.scalar(select(func.count()).select_from(OutboundEmail)) == 1


def soon_expiry(workspace) -> str:
    return min(c.not_after for c in db.session.scalars(select(SsoCertificate))).strftime("%Y-%m-%d")


def test_expiring_certificate_is_flagged_on_the_page(admin_client, workspace):
    from app.sso import connections
    soon = TestIdp(keys=make_key_and_cert("expiring", days=10))
    connections.start_setup(workspace, "okta", actor=None)
    connections.configure_from_xml(workspace.id, soon.metadata(), actor=None)
    db.session.commit()
    html = admin_client.get("/settings/security").get_data(as_text=True)
    assert re.search(r"Expires in (9|10) days", html) and "expires soon" in html


def test_an_expired_certificate_is_flagged_and_still_verifies(app, admin_client, workspace, make_user):
    """Deliberate: the trust is in the key the admin gave us, not in its dates (IdPs keep signing
    with a lapsed certificate, and refusing it would lock everyone out the day it lapses)."""
    from app.sso import connections
    lapsed = TestIdp(keys=make_key_and_cert("lapsed", days=-0.5))
    h = setup_sso(workspace, lapsed)
    make_user(workspace, "ada@acme.test")
    assert h.sign_in(admin_client, "admin@acme.test").status_code == 303  # SSO on signed everyone out
    html = " ".join(admin_client.get("/settings/security").get_data(as_text=True).split())
    assert "Expired" in html and "A signing certificate has expired. Sign-in still works with it" in html
    assert "expires soon" not in html
    member = app.test_client()
    assert h.sign_in(member, "ada@acme.test").status_code == 303
    assert signed_in_email(member) == "ada@acme.test"
    assert connections.live_connection(workspace.id).is_on


def test_metadata_the_saml_library_refuses_is_explained_and_does_not_stop_other_refreshes(
        app, workspace, make_workspace, jobs):
    """Metadata that parses but whose settings python3-saml refuses (here a single-label SSO
    host) marks that connection failed with the reason; the daily refresh goes on to the
    other workspaces' connections instead of stopping at the first one."""
    import threading
    from flask import Flask
    from werkzeug.serving import make_server
    from app.sso import connections
    from jobs.sso import refresh_all_metadata
    bad_idp, good_idp = TestIdp(), TestIdp()
    bad_idp.sso_url = "https://intranet-idp/sso"
    server_app = Flask("idp")
    server_app.add_url_rule("/bad", "bad", lambda: bad_idp.metadata())
    server_app.add_url_rule("/good", "good", lambda: good_idp.metadata())
    server = make_server("127.0.0.1", 0, server_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        connections.start_setup(workspace, "okta", actor=None)
        bad = connections.set_metadata_url(workspace.id, base + "/bad", actor=None)
        globex = make_workspace("Globex", admin_email="admin@globex.test")
        connections.start_setup(globex, "okta", actor=None)
        good = connections.set_metadata_url(globex.id, base + "/good", actor=None)
        db.session.commit()
        bad_id, good_id = bad.id, good.id
        refresh_all_metadata()
        db.session.expire_all()
        bad, good = db.session.get(SsoConnection, bad_id), db.session.get(SsoConnection, good_id)
        assert bad.metadata_status == "failed" and "not a valid URL" in bad.metadata_error
        assert bad.certificates == [] and bad.sso_url is None
        assert good.metadata_status == "ok" and len(good.certificates) == 1
    finally:
        server.shutdown()
