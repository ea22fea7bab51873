"""Settings → Security → Provisioning, and the `oauth-client` CLI."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import OAuthClient, OAuthToken
from app.models.scim import ScimRequestLog, ScimToken
from tests.conftest import csrf_token_from, once_token_from, sign_in
from tests.integration.test_oauth import CALLBACK, approve, exchange, okta, scim_get  # noqa: F401  (fixture)


def provisioning_section(client) -> str:
    html = client.get("/settings/security").get_data(as_text=True)
    match = re.search(r'<section class="card" id="provisioning".*?</section>', html, re.S)
    assert match, "no provisioning section"
    return match.group(0)


def test_section_shows_base_url_and_okta_steps(admin_client):
    section = provisioning_section(admin_client)
    assert 'data-copy="http://localhost/scim/v2"' in section
    assert "Not connected" in section
    for step in ("Enable API Integration", "Authenticate with Gatehouse", "Save", "Create Users",
                 "Update User Attributes", "Deactivate Users", "role"):
        assert step in section


def test_connection_state_and_revoke_button(admin_client, okta, admin):
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    section = provisioning_section(admin_client)
    assert "Connected" in section and f"approved by <strong>{admin.email}</strong>" in section
    assert "Last used</dt><dd>never" in section
    assert scim_get(admin_client, tokens["access_token"]).status_code == 200
    section = provisioning_section(admin_client)
    assert "Last used</dt><dd>never" not in section
    assert "GET /scim/v2/Users" in section  # the request log

    token_id = db.session.scalar(select(OAuthToken.id))
    response = admin_client.post(f"/settings/security/provisioning/oauth/{token_id}/revoke", follow_redirects=True)
    assert "The OAuth connection is revoked" in response.get_data(as_text=True)
    assert scim_get(admin_client, tokens["access_token"]).status_code == 401
    assert "Not connected" in provisioning_section(admin_client)
    again = admin_client.post(f"/settings/security/provisioning/oauth/{token_id}/revoke")
    assert again.status_code == 404


def test_static_token_is_shown_once_and_works(admin_client):
    once = once_token_from(admin_client.get("/settings/security/provisioning/tokens/new").get_data(as_text=True))
    response = admin_client.post("/settings/security/provisioning/tokens", data={"name": "Entra ID", "once": once})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert 'hx-history="false"' in html
    secret = re.search(r'<code id="scim-token-value">([^<]+)</code>', html).group(1)
    assert db.session.scalar(select(ScimToken.token_hash)) != secret
    assert scim_get(admin_client, secret).status_code == 200
    # Reloading the page re-posts the form: told so, and no second token is made.
    again = admin_client.post("/settings/security/provisioning/tokens", data={"name": "Entra ID", "once": once},
                              follow_redirects=True)
    assert "Nothing new was made" in again.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(ScimToken)) == 1
    # A second active token with the same name could not be told apart.
    once = once_token_from(provisioning_section(admin_client))
    same = admin_client.post("/settings/security/provisioning/tokens", data={"name": "entra id", "once": once})
    assert same.status_code == 422 and "already in use" in same.get_data(as_text=True)
    # The form on the Security page works the same way.
    once = once_token_from(provisioning_section(admin_client))
    response = admin_client.post("/settings/security/provisioning/tokens", data={"name": "Second", "once": once})
    assert response.status_code == 200 and "scim-token-value" in response.get_data(as_text=True)
    db.session.execute(delete(ScimToken).where(ScimToken.name == "Second"))
    db.session.commit()

    section = provisioning_section(admin_client)
    token_id = db.session.scalar(select(ScimToken.id))
    assert f'id="scim-token-{token_id}"' in section and "Entra ID" in section and secret not in section
    assert "by bearer token (Entra ID, below)" in section and "Not connected" not in section
    admin_client.post(f"/settings/security/provisioning/tokens/{token_id}/revoke")
    assert scim_get(admin_client, secret).status_code == 401
    section = provisioning_section(admin_client)
    assert f'id="scim-token-{token_id}"' not in section and "Not connected" in section


@pytest.mark.postgres
@pytest.mark.parametrize("name, status", [("", 422), ("   ", 422), ("x" * 101, 422),
                                          ("Okta\x00", 400)])  # PostgreSQL cannot store a NUL: 400, not 500
def test_static_token_needs_a_sensible_name(db_backend, admin_client, name, status):
    response = admin_client.post("/settings/security/provisioning/tokens", data={"name": name})
    assert response.status_code == status
    assert db.session.scalar(select(ScimToken)) is None


def test_bad_ids_are_404_not_500(admin_client):
    for url in ("/settings/security/provisioning/oauth/999/revoke", "/settings/security/provisioning/tokens/999/revoke"):
        assert admin_client.post(url).status_code == 404
    assert admin_client.post("/settings/security/provisioning/oauth/abc/revoke").status_code == 404
    assert admin_client.get("/settings/security/provisioning/log?page=zzz").status_code == 200


def test_request_log_page(admin_client, workspace):
    for i in range(60):
        db.session.add(ScimRequestLog(workspace_id=workspace.id, method="GET", path=f"/scim/v2/Users?i={i}",
                                      status=200, duration_ms=3, body=None, client="SCIM: test"))
    db.session.commit()
    page = admin_client.get("/settings/security/provisioning/log").get_data(as_text=True)
    assert "60 requests kept" in page and "Page 1 of 2" in page
    assert "i=59" in page and "i=0<" not in page


def test_other_workspaces_connection_cannot_be_revoked(admin_client, okta, make_workspace):
    other = make_workspace("Globex", "enterprise", "boss@globex.test")
    from tests.conftest import sign_in as login
    other_client = admin_client.application.test_client()
    login(other_client, "boss@globex.test")
    exchange(other_client, okta, approve(other_client, okta))
    token_id = db.session.scalar(select(OAuthToken.id).where(OAuthToken.workspace_id == other.id))
    assert admin_client.post(f"/settings/security/provisioning/oauth/{token_id}/revoke").status_code == 404
    assert db.session.get(OAuthToken, token_id).revoked_at is None


def test_non_admins_and_other_plans_are_refused(client, workspace, make_user, make_workspace):
    make_user(workspace, "creator@acme.test", role="creator")
    sign_in(client, "creator@acme.test")
    assert client.post("/settings/security/provisioning/tokens", data={"name": "x"}).status_code == 403
    assert client.get("/settings/security/provisioning/log").status_code == 403
    client.post("/logout")
    make_workspace("Small Co", "business", "owner@small.test")
    sign_in(client, "owner@small.test")
    response = client.post("/settings/security/provisioning/tokens", data={"name": "x"})
    assert response.status_code == 403 and "Enterprise plan" in response.get_data(as_text=True)
    assert db.session.scalar(select(ScimToken)) is None


@pytest.mark.csrf
def test_token_creation_needs_csrf(client, admin):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    step = client.post("/login", data={"email": admin.email, "csrf_token": token})
    token = csrf_token_from(step.get_data(as_text=True))
    client.post("/login/password", data={"email": admin.email, "password": "correct-horse-battery",
                                         "csrf_token": token})
    assert client.post("/settings/security/provisioning/tokens", data={"name": "x"}).status_code == 400
    assert db.session.scalar(select(ScimToken)) is None


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_create_prints_exactly_id_and_secret(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["oauth-client", "create", "--name", "okta", "--redirect-uri", CALLBACK,
                                 "--redirect-uri", "https://system-admin.okta-emea.com/admin/app/cpc/x/oauth/callback"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("client_id=") and lines[1].startswith("client_secret=")
    client_id, secret = lines[0].split("=", 1)[1], lines[1].split("=", 1)[1]
    row = db.session.scalar(select(OAuthClient))
    assert row.client_id == client_id and row.client_secret_hash != secret and row.check_client_secret(secret)
    assert len(row.redirect_uris) == 2

    again = runner.invoke(args=["oauth-client", "create", "--name", "okta", "--redirect-uri", CALLBACK])
    assert again.exit_code == 1 and again.stdout == "" and "already exists" in again.stderr
    db.session.expire_all()
    assert db.session.scalar(select(OAuthClient)).check_client_secret(secret)  # unchanged

    added = runner.invoke(args=["oauth-client", "add-redirect-uri", "--name", "okta", "--redirect-uri",
                                "https://system-admin.oktapreview.com/admin/app/cpc/x/oauth/callback"])
    assert added.exit_code == 0 and len(added.stdout.splitlines()) == 3


@pytest.mark.parametrize("uri", ["http://okta.example/callback", "ftp://x/y", "not a url", "https://x/cb#frag",
                                 "/relative/path"])
def test_cli_refuses_bad_redirect_uris(app, uri):
    result = app.test_cli_runner().invoke(args=["oauth-client", "create", "--name", "okta", "--redirect-uri", uri])
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.session.scalar(select(OAuthClient)) is None
