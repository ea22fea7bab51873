"""The "Authenticate with Gatehouse" OAuth server, driven like Okta drives it:
the admin approves on the consent page, then the client exchanges the code,
refreshes and revokes at the token endpoints, and calls SCIM with the token."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import OAuthToken, User
from tests.conftest import csrf_token_from, sign_in, sign_in_with_csrf
from tests.support.sso import idp, sso  # noqa: F401  (fixtures)

CALLBACK = "https://system-admin.okta.com/admin/app/cpc/gatehouse/oauth/callback"
OTHER_CALLBACK = "https://system-admin.oktapreview.com/admin/app/cpc/gatehouse/oauth/callback"


@pytest.fixture
def okta(app):
    from app.oauth import clients
    client, secret = clients.create_client("okta", [CALLBACK, OTHER_CALLBACK])
    db.session.commit()
    return {"client_id": client.client_id, "client_secret": secret}


def authorize_url(okta, **extra) -> str:
    params = {"response_type": "code", "client_id": okta["client_id"], "redirect_uri": CALLBACK,
              "scope": "scim offline_access", "state": "st-123", **extra}
    return "/oauth/authorize?" + urlencode(params)


def approve(client, okta, **extra) -> str:
    """Walk the consent page as the signed-in admin; returns the code."""
    url = authorize_url(okta, **extra)
    page = client.get(url)
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    response = client.post(url, data={"decision": "allow"})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == ["st-123"]
    return query["code"][0]


def basic(okta, secret=None) -> dict:
    raw = f"{okta['client_id']}:{secret or okta['client_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def token_request(client, okta, data: dict, auth: str = "post", secret: str | None = None):
    """POST to the token endpoint the way Okta may: client_secret_post or client_secret_basic."""
    if auth == "post":
        body = {**data, "client_id": okta["client_id"], "client_secret": secret or okta["client_secret"]}
        return client.post("/oauth/token", data=body)
    return client.post("/oauth/token", data=data, headers=basic(okta, secret))


def exchange(client, okta, code, auth="post", **extra):
    return token_request(client, okta, {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                                        **extra}, auth)


def scim_get(client, token, path="/scim/v2/Users"):
    return client.get(path, headers={"Authorization": f"Bearer {token}", "Accept": "application/scim+json"})


# --- the full flow ---------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.parametrize("auth", ["post", "basic"])
def test_full_flow_code_refresh_revoke(admin_client, okta, admin, auth):
    code = approve(admin_client, okta)
    response = exchange(admin_client, okta, code, auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    tokens = response.get_json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert set(tokens["scope"].split()) == {"scim", "offline_access"}
    assert tokens["refresh_token"]

    listing = scim_get(admin_client, tokens["access_token"])
    assert listing.status_code == 200, listing.get_data(as_text=True)
    assert admin.email in listing.get_data(as_text=True)

    # Stored hashed only: neither value appears in the database.
    row = db.session.scalar(select(OAuthToken))
    assert tokens["access_token"] not in (row.access_token_hash, row.refresh_token_hash)
    assert row.approved_by_label == admin.email and row.last_used_at is not None

    refreshed = token_request(admin_client, okta, {"grant_type": "refresh_token",
                                                   "refresh_token": tokens["refresh_token"]}, auth)
    assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
    new = refreshed.get_json()
    assert new["refresh_token"] != tokens["refresh_token"] and new["access_token"] != tokens["access_token"]
    assert scim_get(admin_client, new["access_token"]).status_code == 200

    revoked = admin_client.post("/oauth/revoke", data={"token": new["refresh_token"],
                                                       "token_type_hint": "refresh_token",
                                                       **({"client_id": okta["client_id"],
                                                           "client_secret": okta["client_secret"]}
                                                          if auth == "post" else {})},
                                headers=basic(okta) if auth == "basic" else {})
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    assert scim_get(admin_client, new["access_token"]).status_code == 401
    again = token_request(admin_client, okta, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]},
                          auth)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"


def test_pkce_s256(admin_client, okta):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = approve(admin_client, okta, code_challenge=challenge, code_challenge_method="S256")
    wrong = exchange(admin_client, okta, code, code_verifier=secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"

    code = approve(admin_client, okta, code_challenge=challenge, code_challenge_method="S256")
    missing = exchange(admin_client, okta, code)
    assert missing.status_code == 400 and missing.get_json()["error"] == "invalid_request"

    code = approve(admin_client, okta, code_challenge=challenge, code_challenge_method="S256")
    ok = exchange(admin_client, okta, code, code_verifier=verifier)
    assert ok.status_code == 200, ok.get_data(as_text=True)


def test_pkce_plain_is_refused_back_to_the_client(admin_client, okta):
    response = admin_client.get(authorize_url(okta, code_challenge="x" * 43, code_challenge_method="plain"))
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == ["st-123"]


def test_without_offline_access_the_consent_page_still_says_the_connection_lasts(admin_client, okta):
    """A refresh token is issued either way, and the admin is told before approving."""
    page = admin_client.get(authorize_url(okta, scope="scim")).get_data(as_text=True)
    assert "The connection stays until an admin revokes it" in page
    tokens = exchange(admin_client, okta, approve(admin_client, okta, scope="scim")).get_json()
    assert tokens["refresh_token"]


def test_offline_access_alone_still_grants_scim(admin_client, okta):
    code = approve(admin_client, okta, scope="offline_access")
    tokens = exchange(admin_client, okta, code).get_json()
    assert set(tokens["scope"].split()) == {"scim", "offline_access"}


def test_unknown_scope_is_refused(admin_client, okta):
    response = admin_client.get(authorize_url(okta, scope="scim admin:everything"))
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_deny_sends_access_denied(admin_client, okta):
    url = authorize_url(okta)
    response = admin_client.post(url, data={"decision": "deny"})
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["access_denied"]
    assert db.session.scalar(select(OAuthToken)) is None


# --- rotation, replay, reuse -----------------------------------------------------------------

@pytest.mark.postgres
def test_rotation_refuses_the_old_refresh_token_and_revokes_the_family(admin_client, okta):
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    new = token_request(admin_client, okta, {"grant_type": "refresh_token",
                                             "refresh_token": tokens["refresh_token"]}).get_json()
    replay = token_request(admin_client, okta, {"grant_type": "refresh_token",
                                                "refresh_token": tokens["refresh_token"]}, "basic")
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    # The replay is the sign of a copied token: the live successor dies too.
    assert scim_get(admin_client, new["access_token"]).status_code == 401
    follow = token_request(admin_client, okta, {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert follow.status_code == 400
    page = admin_client.get("/settings/audit").get_data(as_text=True)
    assert "provisioning.oauth_revoked" in page


def test_code_is_single_use_and_reuse_revokes_its_tokens(admin_client, okta):
    code = approve(admin_client, okta)
    first = exchange(admin_client, okta, code).get_json()
    second = exchange(admin_client, okta, code, "basic")
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_grant"
    assert scim_get(admin_client, first["access_token"]).status_code == 401


def test_expired_code_is_refused(admin_client, okta):
    from app.models import OAuthAuthorizationCode
    code = approve(admin_client, okta)
    row = db.session.scalar(select(OAuthAuthorizationCode))
    row.expires_at = row.created_at - dt.timedelta(seconds=1)
    db.session.commit()
    response = exchange(admin_client, okta, code)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("change", ["deactivated", "demoted"])
def test_a_code_is_refused_once_its_approver_may_no_longer_connect(admin_client, okta, admin, make_user, change):
    make_user(admin.workspace, "other-admin@acme.test", role="admin")  # so the admin can be demoted
    code = approve(admin_client, okta)
    approver = db.session.get(User, admin.id)
    if change == "deactivated":
        approver.status = "deactivated"
    else:
        approver.role = "creator"
    db.session.commit()
    response = exchange(admin_client, okta, code)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert db.session.scalar(select(func.count()).select_from(OAuthToken)) == 0


# --- client authentication and redirect URIs -------------------------------------------------

@pytest.mark.parametrize("auth", ["post", "basic"])
def test_wrong_client_secret_is_refused_on_every_endpoint(admin_client, okta, auth):
    code = approve(admin_client, okta)
    bad = token_request(admin_client, okta, {"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": CALLBACK}, auth, secret="not-the-secret")
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_client"
    tokens = exchange(admin_client, okta, code, auth).get_json()  # the code survived the failed attempt

    bad = token_request(admin_client, okta, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                        auth, secret="not-the-secret")
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_client"

    data = {"token": tokens["access_token"]}
    if auth == "post":
        bad = admin_client.post("/oauth/revoke", data={**data, "client_id": okta["client_id"],
                                                       "client_secret": "not-the-secret"})
    else:
        bad = admin_client.post("/oauth/revoke", data=data, headers=basic(okta, "not-the-secret"))
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_client"
    assert scim_get(admin_client, tokens["access_token"]).status_code == 200

    none = admin_client.post("/oauth/token", data={"grant_type": "refresh_token", "client_id": okta["client_id"],
                                                   "refresh_token": tokens["refresh_token"]})
    assert none.status_code == 401  # a public client ("none") is not allowed


def test_unregistered_redirect_uri_is_never_redirected_to(admin_client, okta):
    evil = "https://attacker.example/callback"
    for redirect_uri in (evil, CALLBACK + "/extra", CALLBACK.upper(), CALLBACK + "?x=1"):
        response = admin_client.get(authorize_url(okta, redirect_uri=redirect_uri))
        assert response.status_code == 400
        assert "attacker" not in response.headers.get("Location", "")
        assert "This connection request can't be used" in response.get_data(as_text=True)


def test_token_exchange_needs_the_same_redirect_uri(admin_client, okta):
    code = approve(admin_client, okta)
    response = token_request(admin_client, okta, {"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": OTHER_CALLBACK})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_unknown_client_gets_our_page(admin_client):
    response = admin_client.get("/oauth/authorize?response_type=code&client_id=nope&redirect_uri=" + CALLBACK)
    assert response.status_code == 400
    assert "invalid_client" in response.get_data(as_text=True)


def test_token_endpoint_errors_are_oauth_json(client, okta):
    assert client.get("/oauth/token").get_json()["error"] == "invalid_request"
    response = client.post("/oauth/token", data={"grant_type": "password", "username": "a", "password": "b"})
    assert response.status_code == 400 and response.get_json()["error"] == "unsupported_grant_type"
    response = client.post("/oauth/token", data="{not json", content_type="application/json")
    assert response.status_code == 400 and "error" in response.get_json()
    response = client.post("/oauth/revoke", data={"token": "whatever"}, headers=basic(okta))
    assert response.status_code == 200  # RFC 7009: unknown tokens are "revoked" too
    response = client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x" * 5000,
                                                 "redirect_uri": CALLBACK}, headers=basic(okta))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


# --- who may approve -------------------------------------------------------------------------

def test_signed_out_admin_signs_in_and_comes_back_to_consent(client, okta, admin):
    url = authorize_url(okta)
    response = client.get(url)
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/login"
    assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == [url]
    client.get(response.headers["Location"])
    signed_in = sign_in(client, admin.email)
    assert signed_in.headers["Location"] == url
    page = client.get(url).get_data(as_text=True)
    assert "Connect Acme to Okta?" in page and admin.email in page


def test_non_admin_cannot_approve(client, okta, workspace, make_user):
    make_user(workspace, "creator@acme.test", role="creator")
    sign_in(client, "creator@acme.test")
    page = client.get(authorize_url(okta))
    assert page.status_code == 403
    assert "Only admins of Acme can connect provisioning" in page.get_data(as_text=True)
    response = client.post(authorize_url(okta), data={"decision": "allow"})
    assert response.status_code == 403 and "Location" not in response.headers


def test_admin_of_a_non_enterprise_workspace_cannot_approve(client, okta, make_workspace):
    make_workspace("Small Co", "business", "owner@small.test")
    sign_in(client, "owner@small.test")
    page = client.get(authorize_url(okta))
    assert page.status_code == 403
    assert "Enterprise plan" in page.get_data(as_text=True)


@pytest.mark.csrf
def test_consent_needs_the_csrf_token(client, admin, okta):
    admin_client = client
    sign_in_with_csrf(client, admin.email)
    url = authorize_url(okta)
    forged = admin_client.post(url, data={"decision": "allow"})
    assert forged.status_code == 400 and "Location" not in forged.headers
    token = csrf_token_from(admin_client.get(url).get_data(as_text=True))
    ok = admin_client.post(url, data={"decision": "allow", "csrf_token": token})
    assert ok.status_code == 302 and "code=" in ok.headers["Location"]
    # The machine endpoints are exempt: Okta has no CSRF token.
    code = parse_qs(urlsplit(ok.headers["Location"]).query)["code"][0]
    tokens = exchange(admin_client, okta, code)
    assert tokens.status_code == 200
    revoked = admin_client.post("/oauth/revoke", data={"token": tokens.get_json()["refresh_token"]}, headers=basic(okta))
    assert revoked.status_code == 200


# --- the token belongs to the workspace ------------------------------------------------------

def test_token_of_workspace_a_cannot_read_workspace_b(admin_client, okta, make_workspace):
    other = make_workspace("Globex", "enterprise", "boss@globex.test")
    other_admin = db.session.scalar(select(User).where(User.workspace_id == other.id))
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    assert scim_get(admin_client, tokens["access_token"], f"/scim/v2/Users/{other_admin.id}").status_code == 404
    listing = scim_get(admin_client, tokens["access_token"]).get_data(as_text=True)
    assert "boss@globex.test" not in listing and "admin@acme.test" in listing


def test_deactivating_the_approving_admin_keeps_provisioning(admin_client, okta, admin, workspace, make_user):
    make_user(workspace, "second@acme.test", role="admin")
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    from app.members import service as members
    members.deactivate(db.session.get(User, admin.id), actor=None)
    db.session.commit()
    assert scim_get(admin_client, tokens["access_token"]).status_code == 200
    refreshed = token_request(admin_client, okta, {"grant_type": "refresh_token",
                                                   "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert scim_get(admin_client, refreshed.get_json()["access_token"]).status_code == 200


def test_downgraded_workspace_loses_provisioning(admin_client, okta, workspace):
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    workspace.plan = "business"
    db.session.commit()
    assert scim_get(admin_client, tokens["access_token"]).status_code == 401
    refreshed = token_request(admin_client, okta, {"grant_type": "refresh_token",
                                                   "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400


def test_expired_access_token_is_refused(admin_client, okta):
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    row = db.session.scalar(select(OAuthToken))
    row.issued_at = row.issued_at - dt.timedelta(hours=2)
    db.session.commit()
    assert scim_get(admin_client, tokens["access_token"]).status_code == 401


def test_deleting_the_approving_admin_keeps_provisioning(admin_client, okta, admin, workspace, make_user, jobs):
    """Permanent deletion of the approver: the token stays the workspace's, the approver becomes anonymous."""
    from app.members import deletion
    second = make_user(workspace, "second@acme.test", role="admin")
    admin_id = admin.id
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    approver = db.session.get(User, admin_id)
    from app.members import service as members
    members.deactivate(approver, actor=second)
    db.session.commit()
    purge = deletion.start(approver, actor=second)
    db.session.commit()
    from jobs.members import enqueue_purge
    enqueue_purge(purge)
    jobs()
    assert db.session.get(User, admin_id) is None
    assert scim_get(admin_client, tokens["access_token"]).status_code == 200
    row = db.session.scalar(select(OAuthToken).where(OAuthToken.revoked_at.is_(None)))
    assert row.approved_by_id is None and row.approved_by_label == "Deleted user"
    from app.models import AuditEvent
    for event in db.session.scalars(select(AuditEvent)):
        assert "admin@acme.test" not in f"{event.actor_label} {event.target_label} {event.details}", event.action


def test_metadata_document(client):
    doc = client.get("/.well-known/oauth-authorization-server").get_json()
    assert doc["token_endpoint"] == "http://localhost/oauth/token"
    assert doc["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert doc["code_challenge_methods_supported"] == ["S256"]


def test_prune_keeps_what_names_a_live_family(admin_client, okta):
    from app.models import OAuthAuthorizationCode
    from app.oauth import service
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    approve(admin_client, okta)  # never exchanged
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    assert service.prune(later) == {"codes": 1, "tokens": 0}
    db.session.commit()
    assert db.session.scalar(select(OAuthAuthorizationCode)) is not None
    assert scim_get(admin_client, tokens["access_token"]).status_code == 200


def test_single_registered_uri_may_be_omitted(admin_client):
    from app.oauth import clients
    client, secret = clients.create_client("solo", [CALLBACK])
    db.session.commit()
    solo = {"client_id": client.client_id, "client_secret": secret}
    url = "/oauth/authorize?" + urlencode({"response_type": "code", "client_id": solo["client_id"], "state": "s"})
    response = admin_client.post(url, data={"decision": "allow"})
    assert response.status_code == 302 and response.headers["Location"].startswith(CALLBACK + "?code=")
    code = parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]
    tokens = token_request(admin_client, solo, {"grant_type": "authorization_code", "code": code})
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    assert tokens.get_json()["scope"] == "scim"


def test_sso_admin_signs_in_through_the_idp_and_returns_to_consent(client, okta, sso, admin):
    """With SSO enforced, the consent page's sign-in goes through the IdP and still comes back here."""
    url = authorize_url(okta)
    login = client.get(url).headers["Location"]
    client.get(login)
    to_idp = client.post("/login", data={"email": admin.email})
    assert to_idp.status_code == 303 and "/sso/saml/" in to_idp.headers["Location"]
    started = sso.start(client, urlsplit(to_idp.headers["Location"]).path)
    back = sso.post(client, sso.response(started.request_id, admin.email), started.relay_state)
    assert back.status_code == 303 and back.headers["Location"].endswith(url)
    page = client.get(url)
    assert page.status_code == 200 and "Connect Acme to Okta?" in page.get_data(as_text=True)


def test_admins_are_emailed_when_a_replay_disconnects_provisioning(mail_app, smtp, admin_client, okta, admin, jobs):
    tokens = exchange(admin_client, okta, approve(admin_client, okta)).get_json()
    token_request(admin_client, okta, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    token_request(admin_client, okta, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    jobs()
    (message,) = smtp.inbox.to(admin.email)
    assert message["Subject"] == "Provisioning for Acme was disconnected"
    body = smtp.inbox.text(message)
    assert "already been replaced was presented again" in body and "Authenticate with Gatehouse" in body
    assert f"{mail_app.config['BASE_URL']}/settings/security#provisioning" in body
