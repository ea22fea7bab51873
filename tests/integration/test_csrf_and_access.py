"""CSRF on every state-changing request, admin-only settings, nothing across workspaces."""
from __future__ import annotations

import pytest

from app.extensions import db
from app.models import User
from tests.conftest import PASSWORD, csrf_token_from, sign_in


@pytest.mark.csrf
def test_a_post_without_a_csrf_token_is_a_400_saying_the_form_expired(client, admin):
    response = client.post("/login", data={"email": admin.email})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)


@pytest.mark.csrf
def test_a_wrong_csrf_token_is_refused(client, admin):
    client.get("/login")
    response = client.post("/login", data={"email": admin.email, "csrf_token": "forged"})
    assert response.status_code == 400


@pytest.mark.csrf
def test_forms_work_with_the_token_and_htmx_with_the_header(client, admin):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    step = client.post("/login", data={"email": admin.email, "csrf_token": token})
    assert step.status_code == 200
    token = csrf_token_from(step.get_data(as_text=True))
    done = client.post("/login/password", data={"email": admin.email, "password": PASSWORD, "csrf_token": token})
    assert done.status_code == 303
    page = client.get("/settings/members").get_data(as_text=True)
    header_token = csrf_token_from(page)
    refused = client.post("/settings/members/invite", data={"email": "x@acme.test", "role": "creator"},
                          headers={"HX-Request": "true"})
    assert refused.status_code == 400
    assert "This form has expired" in refused.get_data(as_text=True)
    assert refused.headers["HX-Retarget"] == "#flash"
    accepted = client.post("/settings/members/invite", data={"email": "x@acme.test", "role": "creator"},
                           headers={"X-CSRFToken": header_token})
    assert accepted.status_code == 303


@pytest.mark.csrf
def test_logout_requires_the_token(client, admin):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": admin.email, "csrf_token": token})
    client.post("/login/password", data={"email": admin.email, "password": PASSWORD, "csrf_token": token})
    assert client.post("/logout").status_code == 400
    assert client.get("/library").status_code == 200


@pytest.mark.parametrize("path", ["/settings", "/settings/security", "/settings/members", "/settings/audit"])
def test_members_who_are_not_admins_get_a_clear_403(client, workspace, make_user, path):
    make_user(workspace, "creator@acme.test", role="creator")
    sign_in(client, "creator@acme.test")
    response = client.get(path)
    assert response.status_code == 403
    assert "Only admins of this workspace" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/settings/members/{id}/deactivate", "/settings/members/{id}/role"])
def test_non_admin_posts_are_refused(client, workspace, make_user, path):
    member = make_user(workspace, "creator@acme.test", role="creator")
    target = make_user(workspace, "victim@acme.test")
    sign_in(client, member.email)
    assert client.post(path.format(id=target.id), data={"role": "admin"}).status_code == 403
    assert db.session.get(User, target.id).status == "active"
    assert db.session.get(User, target.id).role == "creator"


def test_an_admin_cannot_touch_another_workspaces_members(client, admin, make_workspace, make_user):
    other = make_workspace("Other", admin_email="boss@other.test")
    victim = make_user(other, "victim@other.test")
    sign_in(client, admin.email)
    for action in ("deactivate", "reactivate", "resend", "revoke"):
        assert client.post(f"/settings/members/{victim.id}/{action}").status_code == 404
    assert client.post(f"/settings/members/{victim.id}/role", data={"role": "admin"}).status_code == 404
    db.session.refresh(victim)
    assert victim.status == "active" and victim.role == "creator"
    page = client.get("/settings/members?q=victim").get_data(as_text=True)
    assert "victim@other.test" not in page


def test_anonymous_visitors_are_sent_to_sign_in(client):
    for path in ("/library", "/settings/security", "/settings/members", "/settings/audit"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/login"
