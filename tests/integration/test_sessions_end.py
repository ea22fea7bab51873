"""Sessions and emailed links that must end, and do: sign-out with "keep me signed in", a
deleted member's id handed out again, links of a member who was deactivated."""
from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, OutboundEmail, User
from tests.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.postgres


def remembered(app, email: str):
    client = app.test_client()
    client.post("/login", data={"email": email})
    response = client.post("/login/password", data={"email": email, "password": PASSWORD, "remember": "y"})
    assert response.status_code == 303 and client.get_cookie("remember_token") is not None
    return client


def test_signing_out_ends_a_kept_session_too(app, admin):
    client = remembered(app, admin.email)
    form = client.get("/logout")
    assert form.status_code == 200
    response = client.post("/logout")
    assert response.status_code == 303
    assert client.get_cookie("remember_token") is None  # deleted, not left for the next person at this computer
    assert client.get("/library").status_code == 302
    assert client.get("/library").status_code == 302  # and not restored on the request after


def test_a_kept_session_outlives_the_idle_timeout_not_the_remember_period(app, admin):
    client = remembered(app, admin.email)
    idle, period = app.config["SESSION_IDLE_TIMEOUT"], app.config["REMEMBER_COOKIE_DURATION"]
    with client.session_transaction() as s:
        s["seen_at"] -= idle + 60  # away for longer than the idle timeout
        s["auth_at"] -= idle + 60
    assert client.get("/library").status_code == 200  # "keep me signed in" means it
    with client.session_transaction() as s:
        s["auth_at"] = int(time.time()) - period - 1
    assert client.get("/library").status_code == 302
    assert client.get_cookie("remember_token") is None and client.get("/library").status_code == 302


def test_an_unkept_session_still_ends_when_idle(client, admin):
    sign_in(client, admin.email)
    with client.session_transaction() as s:
        s["seen_at"] -= client.application.config["SESSION_IDLE_TIMEOUT"] + 60
    assert client.get("/library").status_code == 302


def test_a_deleted_members_cookie_never_fits_a_new_member_given_the_same_id(app, admin_client, workspace,
                                                                             make_user, make_workspace, jobs):
    """SQLite used to hand the highest id out again once that row was deleted, and Bob's old
    browser became the new owner of his id (here the admin of another workspace). Ids are never
    reused now (AUTOINCREMENT), and session versions start at random besides."""
    bob = make_user(workspace, "bob@acme.test")
    bob_id, bob_browser = bob.id, remembered(app, "bob@acme.test")
    assert admin_client.post(f"/settings/members/{bob_id}/deactivate").status_code == 303
    assert admin_client.post(f"/settings/members/{bob_id}/delete", data={"confirm": "y"}).status_code == 303
    jobs()
    db.session.expire_all()
    assert db.session.get(User, bob_id) is None
    other = make_workspace("Other", admin_email="root@other.test")
    newcomer = db.session.scalar(select(User).where(User.workspace_id == other.id))
    assert bob_browser.get("/library").status_code == 302
    assert bob_browser.get("/settings/members").status_code == 302
    assert newcomer.id > bob_id


def test_new_members_session_versions_are_not_guessable(make_user, workspace):
    versions = {make_user(workspace, f"m{i}@acme.test").session_version for i in range(5)}
    assert len(versions) == 5 and all(1 <= v <= 2**30 for v in versions)


def _link(to: str, kind: str) -> str:
    body = db.session.scalars(select(OutboundEmail.body_text).where(OutboundEmail.to == to)
                              .order_by(OutboundEmail.id.desc())).first()
    return re.search(rf"/{kind}/[A-Za-z0-9_\-]+", body).group(0)


def test_an_invitation_link_does_not_bring_back_a_deactivated_member(app, admin_client, workspace):
    """Okta deactivated the invited person: their week-old link must not make them active."""
    from app.members import service
    admin_client.post("/settings/members/invite", data={"email": "dave@acme.test", "role": "creator"})
    dave = db.session.scalar(select(User).where(User.email_normalized == "dave@acme.test"))
    link = _link("dave@acme.test", "invitations")
    service.deactivate(dave, actor=None, by_idp=True, actor_label="SCIM: Okta")
    db.session.commit()
    browser = app.test_client()
    assert browser.get(link).status_code == 404
    response = browser.post(link, data={"name": "Dave", "password": "a long new passphrase 1",
                                        "confirm": "a long new passphrase 1"})
    assert response.status_code == 404 and "doesn't work any more" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, dave.id).status == "deactivated" and browser.get("/library").status_code == 302


def test_a_reset_link_sent_before_deactivation_stops_working(app, make_user, workspace):
    from app.members import service
    erin = make_user(workspace, "erin@acme.test")
    browser = app.test_client()
    browser.post("/password/forgot", data={"email": "erin@acme.test"})
    link = _link("erin@acme.test", "password/reset")
    service.deactivate(erin, actor=None)
    db.session.commit()
    response = browser.post(link, data={"password": "a long new passphrase 1", "confirm": "a long new passphrase 1"})
    assert response.status_code == 404
    assert db.session.get(User, erin.id).status == "deactivated"


def test_an_invited_member_who_sets_a_password_by_reset_has_joined(app, admin_client, workspace):
    """The reset link proves the address as the invitation's would: they can sign in, not be told to
    ask an admin."""
    admin_client.post("/settings/members/invite", data={"email": "gina@acme.test", "role": "creator"})
    browser = app.test_client()
    browser.post("/password/forgot", data={"email": "gina@acme.test"})
    response = browser.post(_link("gina@acme.test", "password/reset"),
                            data={"password": "a long new passphrase 1", "confirm": "a long new passphrase 1"})
    assert response.status_code == 303
    sign_in(browser, "gina@acme.test", password="a long new passphrase 1")
    assert browser.get("/library").status_code == 200
    gina = db.session.scalar(select(User).where(User.email_normalized == "gina@acme.test"))
    assert gina.status == "active"
    assert db.session.scalar(select(AuditEvent.details).where(
        AuditEvent.action == "member.invitation_accepted", AuditEvent.target_id == str(gina.id))) == {
        "via": "password reset"}
