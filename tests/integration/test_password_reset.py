import datetime as dt
import re
from html import unescape

import pytest

from app.extensions import db
from app.models import EmailToken, User
from tests.conftest import PASSWORD, sign_in
from tests.support.servers import Inbox
from tests.support.sso import idp, setup_sso  # noqa: F401  (fixture)

LINK = re.compile(r"http://localhost(/password/reset/[\w-]+)")


def test_reset_by_email_link(mail_app, smtp, client, admin, jobs):
    other_device = client.application.test_client()
    sign_in(other_device, admin.email)
    response = client.post("/password/forgot", data={"email": admin.email.upper()})
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    jobs()
    (message,) = smtp.inbox.to(admin.email)
    assert message["Subject"] == "Reset your Gatehouse password"
    path = LINK.search(Inbox.text(message)).group(1)
    assert db.session.scalar(db.select(EmailToken.token_hash)) != path.rsplit("/", 1)[1]  # stored hashed
    assert client.get(path).status_code == 200
    mismatch = client.post(path, data={"password": "new-password-1", "confirm": "new-password-2"})
    assert mismatch.status_code == 422 and "The passwords don&#39;t match." in mismatch.get_data(as_text=True)
    done = client.post(path, data={"password": "new-password-1", "confirm": "new-password-1"})
    assert done.status_code == 303
    assert other_device.get("/library").status_code == 302  # every other session ended
    assert client.get(path).status_code == 404  # single use
    assert client.post("/login/password", data={"email": admin.email, "password": PASSWORD}).status_code == 422
    sign_in(client, admin.email, "new-password-1")


def test_unknown_email_gets_the_same_answer_and_no_mail(mail_app, smtp, client, jobs):
    response = client.post("/password/forgot", data={"email": "nobody@acme.test"})
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    jobs()
    assert len(smtp.inbox) == 0


def test_reset_links_expire_after_an_hour(mail_app, smtp, client, admin, jobs):
    client.post("/password/forgot", data={"email": admin.email})
    jobs()
    path = LINK.search(Inbox.text(smtp.inbox[0])).group(1)
    token = db.session.scalar(db.select(EmailToken))
    assert dt.timedelta(minutes=59) < token.expires_at - token.created_at <= dt.timedelta(hours=1)
    token.expires_at = token.created_at - dt.timedelta(seconds=1)
    db.session.commit()
    page = client.get(path)
    assert page.status_code == 404 and "doesn't work any more" in page.get_data(as_text=True)


def test_garbage_tokens_are_404(client):
    for token in ("x", "a" * 500, "../../etc/passwd"):
        assert client.get(f"/password/reset/{token}").status_code == 404
        assert client.get(f"/invitations/{token}").status_code == 404


def test_a_user_without_a_password_sets_one_through_reset(mail_app, smtp, client, workspace, make_user, jobs):
    user = make_user(workspace, "scim@acme.test", password=None, source="scim")
    client.post("/password/forgot", data={"email": user.email})
    jobs()
    path = LINK.search(Inbox.text(smtp.inbox[0])).group(1)
    client.post(path, data={"password": "first-password", "confirm": "first-password"})
    assert db.session.get(User, user.id).password_hash
    sign_in(client, user.email, "first-password")


@pytest.mark.parametrize("email,told", [
    ("carol@acme.test", "your workspace requires single sign-on. Sign in with SSO."),
    ("carol@elsewhere.example", "your workspace doesn't allow you to sign in. Contact an admin of your workspace."),
])
def test_after_a_reset_a_member_who_may_not_use_it_is_told_how_to_sign_in(mail_app, smtp, client, workspace,
                                                                          make_user, idp, jobs, email, told):
    """With SSO on, the new password is no way in: the page after the reset says what is."""
    setup_sso(workspace, idp, domain="acme.test")
    make_user(workspace, email)
    client.post("/password/forgot", data={"email": email})
    jobs()
    done = client.post(LINK.search(Inbox.text(smtp.inbox[0])).group(1),
                       data={"password": "new-password-1", "confirm": "new-password-1"})
    assert done.status_code == 303 and done.headers["Location"] == "/login"
    page = unescape(client.get("/login").get_data(as_text=True))
    assert "Your password is set, but you can't sign in with it: " + told in page
    assert "Sign in with it now" not in page
