"""Email-first sign-in, sessions and their limits."""
from __future__ import annotations

import re
import time

import pytest
from flask import session

from app.extensions import db
from app.models import AuditEvent, User
from tests.conftest import PASSWORD, sign_in
from tests.support.sso import idp  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres


def test_email_step_then_password_step(client, admin, db_backend):
    page = client.get("/login")
    assert page.status_code == 200 and "Work email" in page.get_data(as_text=True)
    assert 'href="/sso/recovery">Sign in with a recovery code' in page.get_data(as_text=True)  # when the IdP is down
    step = client.post("/login", data={"email": "ADMIN@acme.test"})
    assert step.status_code == 200
    assert "Enter your password" in step.get_data(as_text=True)
    done = client.post("/login/password", data={"email": "ADMIN@acme.test", "password": PASSWORD})
    assert done.status_code == 303 and done.headers["Location"] == "/library"
    assert client.get("/library").status_code == 200
    events = db.session.scalars(db.select(AuditEvent.action)).all()
    assert "auth.signed_in" in events
    assert db.session.get(User, admin.id).last_login_at is not None


def test_wrong_password_and_unknown_email_look_the_same(client, admin):
    wrong = client.post("/login/password", data={"email": admin.email, "password": "not-the-password"})
    unknown = client.post("/login/password", data={"email": "nobody@acme.test", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 422
    for response in (wrong, unknown):
        assert "That email and password don&#39;t match." in response.get_data(as_text=True)
    assert client.get("/library").status_code == 302


@pytest.mark.parametrize("email", ["", "not-an-email", "a@", "x" * 250 + "@acme.test", "<script>@acme.test"])
def test_bad_email_is_a_422_with_a_reason(client, email):
    response = client.post("/login", data={"email": email})
    assert response.status_code == 422
    assert 'class="error"' in response.get_data(as_text=True)


def test_overlong_password_is_refused_cleanly(client, admin):
    response = client.post("/login/password", data={"email": admin.email, "password": "p" * 5000})
    assert response.status_code == 422


def test_deactivated_user_cannot_sign_in(client, workspace, make_user):
    user = make_user(workspace, "gone@acme.test", status="deactivated")
    response = client.post("/login/password", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 422
    assert "deactivated" in response.get_data(as_text=True)
    assert client.get("/library").status_code == 302


def test_invited_user_cannot_sign_in_with_a_password(client, workspace, make_user):
    make_user(workspace, "new@acme.test", status="invited")
    assert client.post("/login/password", data={"email": "new@acme.test", "password": PASSWORD}).status_code == 422


def test_session_is_fresh_after_sign_in(client, admin):
    with client.session_transaction() as s:
        s["planted"] = "by an attacker"
    sign_in(client, admin.email)
    with client.session_transaction() as s:
        assert "planted" not in s
        assert s["nonce"] and s["method"] == "password"


def test_remember_me_is_off_by_default(client, admin):
    response = sign_in(client, admin.email)
    assert "remember_token" not in response.headers.get("Set-Cookie", "")
    cookie = client.get_cookie("gatehouse_session")
    assert cookie.expires is None  # a browser-session cookie
    assert "HttpOnly" in response.headers["Set-Cookie"] and "SameSite=Lax" in response.headers["Set-Cookie"]


def test_remember_me_sets_a_cookie_that_dies_with_the_session_version(client, admin):
    client.post("/login", data={"email": admin.email})
    response = client.post("/login/password", data={"email": admin.email, "password": PASSWORD, "remember": "y"})
    assert "remember_token" in " ".join(response.headers.getlist("Set-Cookie"))
    db.session.get(User, admin.id).end_all_sessions()
    db.session.commit()
    client.delete_cookie("gatehouse_session")
    assert client.get("/library").status_code == 302


def test_bumping_the_session_version_ends_the_session(client, admin):
    sign_in(client, admin.email)
    assert client.get("/library").status_code == 200
    db.session.get(User, admin.id).end_all_sessions()
    db.session.commit()
    response = client.get("/library")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_idle_and_absolute_timeouts(app, client, admin):
    sign_in(client, admin.email)
    with client.session_transaction() as s:
        s["seen_at"] = int(time.time()) - app.config["SESSION_IDLE_TIMEOUT"] - 5
    assert client.get("/library").status_code == 302
    sign_in(client, admin.email)
    with client.session_transaction() as s:
        s["auth_at"] = int(time.time()) - app.config["SESSION_ABSOLUTE_TIMEOUT"] - 5
    assert client.get("/library").status_code == 302
    sign_in(client, admin.email)
    with client.session_transaction() as s:
        s["not_after"] = int(time.time()) - 1  # the IdP's SessionNotOnOrAfter has passed
    assert client.get("/library").status_code == 302


def test_htmx_request_after_the_session_ended_gets_401_and_hx_redirect(client, admin):
    response = client.get("/settings/members", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login"
    assert response.get_data() == b""


def test_next_is_kept_and_only_local(client, admin):
    assert client.get("/settings/audit?kind=auth").status_code == 302
    response = sign_in(client, admin.email)
    assert response.headers["Location"] == "/settings/audit?kind=auth"
    client.post("/logout")
    client.get("/login?next=https://evil.example/steal")
    response = sign_in(client, admin.email)
    assert response.headers["Location"] == "/library"


def test_same_email_in_two_workspaces_asks_which(client, make_workspace, make_user):
    first = make_workspace("First", admin_email="pat@first.test")
    second = make_workspace("Second", admin_email="root@second.test")
    make_user(second, "pat@first.test", role="creator")
    client.post("/login", data={"email": "pat@first.test"})
    response = client.post("/login/password", data={"email": "pat@first.test", "password": PASSWORD})
    assert response.status_code == 303 and response.headers["Location"] == "/login/workspace"
    page = client.get("/login/workspace").get_data(as_text=True)
    assert "First" in page and "Second" in page
    assert client.post("/login/workspace", data={"workspace": 999999}).status_code == 422
    done = client.post("/login/workspace", data={"workspace": second.id})
    assert done.status_code == 303
    with client.session_transaction() as s:
        user = db.session.get(User, int(s["_user_id"].partition(":")[0]))
    assert user.workspace_id == second.id and first.id != second.id


def test_the_workspace_choice_tells_workspaces_of_the_same_name_apart(client, make_workspace):
    first = make_workspace("Acme", admin_email="pat@acme.test")
    second = make_workspace("Acme", admin_email="pat@acme.test")
    client.post("/login", data={"email": "pat@acme.test"})
    client.post("/login/password", data={"email": "pat@acme.test", "password": PASSWORD})
    options = re.findall(r"<option[^>]*>([^<]*)</option>", client.get("/login/workspace").get_data(as_text=True))
    assert options == [f"Acme ({first.slug})", f"Acme ({second.slug})"] and first.slug != second.slug


@pytest.mark.parametrize("meanwhile", ["sso_turned_on", "password_changed", "five_minutes_passed"])
def test_the_workspace_choice_is_refused_if_things_changed_meanwhile(client, make_workspace, make_user, idp,
                                                                     meanwhile):
    """Between the password step and the choice: SSO turned on for that workspace, the
    password reset (or "sign out everywhere"), or too long: back to the start, no session.
    (The choice rides in the session cookie, so a saved copy must not outlive any of these.)"""
    from app.auth.service import set_password
    from tests.support.sso import setup_sso
    first = make_workspace("First", admin_email="root@first.test")
    second = make_workspace("Second", admin_email="root@second.test")
    pat = make_user(second, "pat@acme.test", role="admin")
    make_user(first, "pat@acme.test", role="creator")
    client.post("/login", data={"email": "pat@acme.test"})
    response = client.post("/login/password", data={"email": "pat@acme.test", "password": PASSWORD})
    assert response.headers["Location"] == "/login/workspace"
    if meanwhile == "sso_turned_on":
        setup_sso(second, idp)
        db.session.commit()
    elif meanwhile == "password_changed":  # as the reset flow does: a new password ends every session
        user = db.session.get(User, pat.id)
        set_password(user, "a-brand-new-password-1")
        user.end_all_sessions()
        db.session.commit()
    else:
        with client.session_transaction() as s:
            s["pending_login_at"] -= 301
    done = client.post("/login/workspace", data={"workspace": second.id})
    with client.session_transaction() as s:
        assert "_user_id" not in s
    if meanwhile == "five_minutes_passed":  # nothing left to choose from: start again
        assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    else:  # Second is no longer offered; First still is
        page = done.get_data(as_text=True)
        assert done.status_code == 422 and "First" in page and "Second" not in page


def test_logout_needs_a_post_and_get_confirms(client, admin):
    sign_in(client, admin.email)
    page = client.get("/logout")
    assert page.status_code == 200 and "Sign out?" in page.get_data(as_text=True)
    assert client.get("/library").status_code == 200  # GET did not sign out
    response = client.post("/logout")
    assert response.status_code == 303
    assert client.get("/library").status_code == 302
    assert db.session.scalar(db.select(AuditEvent.action).order_by(AuditEvent.id.desc())) == "auth.signed_out"


def test_root_redirects(client, admin):
    assert client.get("/").headers["Location"] == "/login"
    sign_in(client, admin.email)
    assert client.get("/").headers["Location"] == "/library"
    assert client.get("/login").headers["Location"] == "/library"


def test_library_lists_only_my_recordings(client, workspace, admin, make_user):
    from app.models import Recording
    other = make_user(workspace, "other@acme.test")
    db.session.add_all([Recording(workspace_id=workspace.id, owner_id=admin.id, title="Mine", duration_seconds=75),
                        Recording(workspace_id=workspace.id, owner_id=other.id, title="Theirs")])
    db.session.commit()
    sign_in(client, admin.email)
    page = client.get("/library").get_data(as_text=True)
    assert "Mine" in page and "1:15" in page and "Theirs" not in page


def test_a_deactivated_members_recordings_stay_visible_to_the_workspace(client, workspace, admin, make_user):
    from app.members import service
    from app.models import Recording
    leaver = make_user(workspace, "leaver@acme.test", name="Lee Leaver")
    db.session.add(Recording(workspace_id=workspace.id, owner_id=leaver.id, title="Handover notes"))
    db.session.commit()
    service.deactivate(leaver, actor=admin)
    db.session.commit()
    sign_in(client, admin.email)
    assert "Handover notes" not in client.get("/library").get_data(as_text=True)
    page = client.get("/library?scope=workspace").get_data(as_text=True)
    assert "Handover notes" in page and "Deactivated user" in page and "Lee Leaver" not in page
