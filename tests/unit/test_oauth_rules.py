"""OAuth client rules that need no server: redirect URIs and scopes."""
from __future__ import annotations

import pytest

from app.models.oauth import OAuthClient
from app.oauth.clients import OAuthClientError, validate_redirect_uri
from app.security import hash_secret

OKTA = "https://system-admin.okta.com/admin/app/cpc/gatehouse/oauth/callback"


@pytest.mark.parametrize("uri", [OKTA, "http://localhost:8080/cb", "http://127.0.0.1/cb", "http://[::1]:9/cb",
                                 "https://example.com/cb?tenant=1"])
def test_acceptable_redirect_uris(uri):
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize("uri", ["", "http://example.com/cb", "https://example.com/cb#x", "javascript:alert(1)",
                                 "//example.com/cb", "https:///nohost", "https://[bad/cb", "https://e.com/" + "a" * 2001])
def test_refused_redirect_uris(uri):
    with pytest.raises(OAuthClientError):
        validate_redirect_uri(uri)


def client(**kw) -> OAuthClient:
    return OAuthClient(client_id="c", client_secret_hash=hash_secret("s"), name="okta", redirect_uris=[OKTA],
                       allowed_scopes="scim offline_access", **kw)


def test_redirect_uri_matching_is_exact():
    c = client()
    assert c.check_redirect_uri(OKTA)
    for near in (OKTA + "/", OKTA.upper(), OKTA + "?a=1", OKTA.replace("https", "http"), OKTA[:-1]):
        assert not c.check_redirect_uri(near)


def test_scopes_always_include_scim():
    c = client()
    assert c.get_allowed_scope(None) == "scim"
    assert c.get_allowed_scope("offline_access") == "scim offline_access"
    assert c.get_allowed_scope("scim offline_access") == "scim offline_access"


def test_secret_check_is_against_the_hash():
    c = client()
    assert c.check_client_secret("s") and not c.check_client_secret("S") and not c.check_client_secret("")
    assert c.check_endpoint_auth_method("client_secret_post", "token")
    assert c.check_endpoint_auth_method("client_secret_basic", "revocation")
    assert not c.check_endpoint_auth_method("none", "token")
    assert c.check_grant_type("refresh_token") and not c.check_grant_type("client_credentials")
    assert c.check_response_type("code") and not c.check_response_type("token")
