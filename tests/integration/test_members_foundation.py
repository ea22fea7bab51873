"""Invitations, roles, deactivation and the last-admin rule — with real mail."""
from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest

from app.extensions import db
from app.members import service
from app.members.admin_rule import LastAdminError
from app.models import AuditEvent, EmailToken, OutboundEmail, User
from tests.conftest import PASSWORD, sign_in
from tests.support.servers import Inbox
from tests.support.sso import idp, setup_sso, signed_in_email  # noqa: F401  (fixture)

LINK = re.compile(r"http://localhost(/invitations/[\w-]+)")


def _actions():
    return db.session.scalars(db.select(AuditEvent.action).order_by(AuditEvent.id)).all()


def test_invitation_accepted_from_the_email(mail_app, smtp, client, admin, jobs):
    sign_in(client, admin.email)
    response = client.post("/settings/members/invite", data={"email": "New.Person@Acme.test", "name": "",
                                                             "role": "creator"})
    assert response.status_code == 303
    assert "Invitation sent to New.Person@acme.test" in client.get("/settings/members").get_data(as_text=True)
    invited = db.session.scalar(db.select(User).where(User.email_normalized == "new.person@acme.test"))
    assert invited.status == "invited" and invited.source == "invite" and invited.password_hash is None
    jobs()
    (message,) = smtp.inbox.to("New.Person@Acme.test")
    assert message["Subject"] == "Admin invited you to Acme on Gatehouse"
    assert message.get_body(preferencelist=("html",)) is not None
    assert "choose a password" in Inbox.text(message) and "single sign-on" not in Inbox.text(message)
    path = LINK.search(Inbox.text(message)).group(1)
    client.post("/logout")

    page = client.get(path)
    assert page.status_code == 200 and "Join Acme" in page.get_data(as_text=True)
    short = client.post(path, data={"name": "New Person", "password": "short", "confirm": "short"})
    assert short.status_code == 422 and "Use 10 to 128 characters." in short.get_data(as_text=True)
    done = client.post(path, data={"name": "New Person", "password": "a-good-password", "confirm": "a-good-password"})
    assert done.status_code == 303 and done.headers["Location"] == "/library"
    assert "Welcome to Acme!" in client.get("/library").get_data(as_text=True)
    db.session.refresh(invited)
    assert invited.status == "active" and invited.name == "New Person"
    assert client.get(path).status_code == 404  # single use
    assert {"member.invited", "member.invitation_accepted"} <= set(_actions())


def test_invitations_can_be_resent_and_revoked(mail_app, smtp, client, admin, jobs):
    sign_in(client, admin.email)
    client.post("/settings/members/invite", data={"email": "later@acme.test", "role": "creator_lite"})
    invited = db.session.scalar(db.select(User).where(User.email_normalized == "later@acme.test"))
    jobs()
    first = LINK.search(Inbox.text(smtp.inbox[0])).group(1)
    assert client.post(f"/settings/members/{invited.id}/resend").status_code == 303
    jobs()
    second = LINK.search(Inbox.text(smtp.inbox[1])).group(1)
    assert client.get(first).status_code == 404  # replaced by the newer link
    assert client.get(second).status_code == 200
    assert client.post(f"/settings/members/{invited.id}/revoke").status_code == 303
    assert db.session.get(User, invited.id) is None
    assert client.get(second).status_code == 404
    assert db.session.scalar(db.select(db.func.count()).select_from(EmailToken)) == 0
    assert "member.invitation_revoked" in _actions()


def _words(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_under_sso_an_address_sso_would_block_is_not_invited(mail_app, smtp, workspace, admin, idp, jobs):
    """It could never sign in: the admin is told why and what to do, and nobody gets an email."""
    harness = setup_sso(workspace, idp, domain="acme.test")
    client = mail_app.test_client()
    harness.sign_in(client, admin.email)
    response = client.post("/settings/members/invite", data={"email": "con@outside.test", "role": "creator"})
    assert response.status_code == 422
    assert ("con@outside.test could not sign in: single sign-on is on, and outside.test is not one of this "
            "workspace's authorized domains. Authorize outside.test under Settings → Security, or turn SSO off, "
            "then invite them again.") in _words(response.get_data(as_text=True))
    assert db.session.scalar(db.select(User).where(User.email_normalized == "con@outside.test")) is None
    assert db.session.scalar(db.select(db.func.count()).select_from(OutboundEmail)) == 0
    jobs()
    assert len(smtp.inbox) == 0


def test_under_sso_an_invitee_joins_through_sso_without_a_password(mail_app, smtp, workspace, admin, idp, jobs):
    harness = setup_sso(workspace, idp, domain="acme.test")
    admin_client = mail_app.test_client()
    harness.sign_in(admin_client, admin.email)
    assert admin_client.post("/settings/members/invite", data={"email": "newbie@acme.test", "role": "creator"}
                             ).status_code == 303
    jobs()
    (message,) = smtp.inbox.to("newbie@acme.test")
    assert "Acme uses single sign-on: you'll sign in with your company account" in Inbox.text(message)
    path = LINK.search(Inbox.text(message)).group(1)

    invitee = mail_app.test_client()
    page = invitee.get(path).get_data(as_text=True)
    assert "uses single sign-on: you sign in with your company account, so there is no password to choose" in \
        _words(page)
    assert 'type="password"' not in page
    button = re.search(r'<a class="button primary" href="([^"]+)">Continue with single sign-on</a>', page).group(1)
    assert button == harness.login_path
    started = harness.start(invitee, button)
    signed_in = harness.post(invitee, harness.response(started.request_id, "newbie@acme.test"), started.relay_state)
    assert signed_in.status_code == 303 and signed_in_email(invitee) == "newbie@acme.test"
    newbie = db.session.scalar(db.select(User).where(User.email_normalized == "newbie@acme.test"))
    assert newbie.status == "active" and newbie.password_hash is None
    assert "member.invitation_accepted" in _actions()
    assert "You have already joined Acme." in _words(mail_app.test_client().get(path).get_data(as_text=True))


def test_an_invitee_sso_now_blocks_is_told_why_and_chooses_no_password(mail_app, smtp, client, workspace, admin, idp,
                                                                       jobs):
    """Invited before SSO was turned on, on a domain it does not cover: the link explains instead."""
    sign_in(client, admin.email)
    client.post("/settings/members/invite", data={"email": "con@outside.test", "role": "creator"})
    jobs()
    path = LINK.search(Inbox.text(smtp.inbox[0])).group(1)
    setup_sso(workspace, idp, domain="acme.test")
    invitee = mail_app.test_client()
    page = invitee.get(path).get_data(as_text=True)
    assert ("Acme uses single sign-on, and outside.test is not one of its authorized domains, so you couldn't sign "
            "in") in _words(page) and 'type="password"' not in page
    response = invitee.post(path, data={"name": "Con", "password": "a-good-password", "confirm": "a-good-password"})
    assert response.status_code == 409
    con = db.session.scalar(db.select(User).where(User.email_normalized == "con@outside.test"))
    assert con.status == "invited" and con.password_hash is None


def test_a_dead_invitation_link_says_who_can_send_a_new_one(mail_app, smtp, client, admin, jobs):
    """An invitee can't ask for a new invitation themself: no password-link button, but who to ask."""
    sign_in(client, admin.email)
    for email in ("late@acme.test", "revoked@acme.test"):
        client.post("/settings/members/invite", data={"email": email, "role": "creator"})
    jobs()
    late, revoked = (LINK.search(Inbox.text(smtp.inbox.to(e)[0])).group(1) for e in ("late@acme.test",
                                                                                        "revoked@acme.test"))
    for token in db.session.scalars(db.select(EmailToken)):
        token.expires_at = token.created_at - dt.timedelta(seconds=1)
    db.session.commit()
    invitee = db.session.scalar(db.select(User).where(User.email_normalized == "revoked@acme.test"))
    client.post(f"/settings/members/{invitee.id}/revoke")
    browser = mail_app.test_client()

    expired = browser.get(late)
    assert expired.status_code == 404
    assert "Ask an admin of Acme to invite you again." in _words(expired.get_data(as_text=True))
    assert "Get a new password link" not in expired.get_data(as_text=True)
    gone = browser.get(revoked)  # the invitee's row went with the invitation: nothing names the workspace
    assert gone.status_code == 404
    assert "Ask an admin of the workspace that invited you to invite you again." in _words(gone.get_data(as_text=True))
    assert "Get a new password link" not in gone.get_data(as_text=True)


@pytest.mark.parametrize("form,message", [
    ({"email": "ADMIN@acme.test", "role": "creator"}, "already a member"),
    ({"email": "not an email", "role": "creator"}, "Enter a valid email address"),
    ({"email": "x@acme.test", "role": "owner"}, "Not a valid choice"),
    ({"email": "x@acme.test", "role": "creator", "name": "n" * 201}, "Field cannot be longer than 200 characters."),
    ({"email": "x" * 300 + "@acme.test", "role": "creator"}, "Field cannot be longer than 254 characters."),
])
def test_bad_invitations_are_422_and_write_nothing(client, admin, form, message):
    sign_in(client, admin.email)
    before = db.session.scalar(db.select(db.func.count()).select_from(User))
    response = client.post("/settings/members/invite", data=form)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    assert db.session.scalar(db.select(db.func.count()).select_from(User)) == before


def test_last_admin_cannot_be_demoted_or_deactivated(client, admin):
    sign_in(client, admin.email)
    response = client.post(f"/settings/members/{admin.id}/role", data={"role": "creator"})
    assert response.status_code == 303
    assert "without an active admin" in client.get("/settings/members").get_data(as_text=True)
    db.session.refresh(admin)
    assert admin.role == "admin"
    with pytest.raises(LastAdminError):
        service.deactivate(admin, actor=admin)
    db.session.rollback()
    assert db.session.get(User, admin.id).status == "active"


def test_with_a_second_admin_the_first_can_step_down(client, workspace, admin, make_user):
    second = make_user(workspace, "second@acme.test", role="admin")
    sign_in(client, admin.email)
    assert client.post(f"/settings/members/{second.id}/deactivate").status_code == 303
    db.session.refresh(second)
    assert second.status == "deactivated"
    # Now only one admin who can sign in is left again.
    client.post(f"/settings/members/{admin.id}/role", data={"role": "creator"})
    db.session.refresh(admin)
    assert admin.role == "admin"
    client.post(f"/settings/members/{second.id}/reactivate")
    client.post(f"/settings/members/{admin.id}/role", data={"role": "creator"})
    db.session.refresh(admin)
    assert admin.role == "creator"


def test_deactivation_ends_sessions_and_keeps_data(client, workspace, admin, make_user):
    from app.models import Recording
    member = make_user(workspace, "leaver@acme.test")
    db.session.add(Recording(workspace_id=workspace.id, owner_id=member.id, title="Kept"))
    db.session.commit()
    member_client = client.application.test_client()
    sign_in(member_client, member.email)
    assert member_client.get("/library").status_code == 200
    sign_in(client, admin.email)
    client.post(f"/settings/members/{member.id}/deactivate")
    assert member_client.get("/library").status_code == 302
    db.session.refresh(member)
    assert member.status == "deactivated" and member.display_name == "Deactivated user"
    assert db.session.scalar(db.select(Recording.title).where(Recording.owner_id == member.id)) == "Kept"
    refused = member_client.post("/login/password", data={"email": member.email, "password": PASSWORD})
    assert refused.status_code == 422


def test_deactivation_by_the_idp_wins_over_the_admin_rule(mail_app, smtp, admin, workspace, make_user, jobs):
    other_admin = make_user(workspace, "other-admin@acme.test", role="admin")
    service.deactivate(admin, actor=None, by_idp=True, actor_label="SCIM: Okta")
    service.deactivate(other_admin, actor=None, by_idp=True, actor_label="SCIM: Okta")
    db.session.commit()
    assert db.session.get(User, admin.id).status == "deactivated"
    assert "member.last_admin_deactivated_by_idp" in _actions()
    jobs()
    assert smtp.inbox.to("other-admin@acme.test")  # told before their own deactivation


def test_member_search_and_filters(client, workspace, admin, make_user):
    make_user(workspace, "zoe@acme.test", name="Zoë Zed", role="creator")
    make_user(workspace, "yan@acme.test", status="deactivated")
    make_user(workspace, "under_score@acme.test")
    sign_in(client, admin.email)
    page = client.get("/settings/members?q=zo").get_data(as_text=True)
    assert "zoe@acme.test" in page and "yan@acme.test" not in page
    page = client.get("/settings/members?status=deactivated").get_data(as_text=True)
    assert "yan@acme.test" in page and "zoe@acme.test" not in page
    page = client.get("/settings/members?q=_").get_data(as_text=True)  # LIKE wildcards are literal
    assert "under_score@acme.test" in page and "zoe@acme.test" not in page
    fragment = client.get("/settings/members?role=admin", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).startswith('<div id="member-list">')
    assert "HX-Request" in fragment.headers["Vary"]
    assert client.get("/settings/members?page=abc").status_code == 200
