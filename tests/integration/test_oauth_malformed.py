"""Malformed requests to the OAuth endpoints: always an OAuth JSON error or our page, never a 500."""
from __future__ import annotations

import pytest

from tests.integration.test_oauth import CALLBACK, authorize_url, okta  # noqa: F401  (fixture)


@pytest.mark.parametrize("header", ["Basic !!!", "Basic " + "QQ==", "Basic", "Bearer abc", "Basic w6k6w6k=",
                                    "Basic " + "A" * 5000, "Basic //46eA=="])  # the last: not UTF-8 once decoded
def test_malformed_basic_auth(client, okta, header):
    response = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                           headers={"Authorization": header})
    assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"
    response = client.post("/oauth/revoke", data={"token": "x"}, headers={"Authorization": header})
    assert response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("data", [{}, {"grant_type": ""}, {"grant_type": "authorization_code"},
                                  {"grant_type": "refresh_token"}, {"grant_type": ["a", "b"]},
                                  {"grant_type": "authorization_code", "code": "\x00\xff"}])
def test_malformed_token_requests(client, okta, data):
    body = {**data, "client_id": okta["client_id"], "client_secret": okta["client_secret"]}
    response = client.post("/oauth/token", data=body)
    assert 400 <= response.status_code < 500 and "error" in response.get_json()


def test_revoke_without_token_or_with_bad_hint(client, okta):
    auth = {"client_id": okta["client_id"], "client_secret": okta["client_secret"]}
    assert client.post("/oauth/revoke", data=auth).get_json()["error"] == "invalid_request"
    response = client.post("/oauth/revoke", data={**auth, "token": "x", "token_type_hint": "id_token"})
    assert response.get_json()["error"] == "unsupported_token_type"
    assert client.get("/oauth/revoke").status_code == 405


@pytest.mark.parametrize("query", ["", "response_type=code", "client_id=&response_type=code",
                                   "response_type=token&client_id={cid}&redirect_uri={cb}",
                                   "response_type=code&client_id={cid}&client_id={cid}&redirect_uri={cb}",
                                   "response_type=code&client_id={cid}&redirect_uri=javascript:alert(1)",
                                   "response_type=code&client_id={cid}"])
def test_malformed_authorize_requests(admin_client, okta, query):
    response = admin_client.get("/oauth/authorize?" + query.format(cid=okta["client_id"], cb=CALLBACK))
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        assert response.headers["Location"].startswith(CALLBACK + "?error=")
    else:
        assert "This connection request can't be used" in response.get_data(as_text=True)


def test_http_base_url_off_loopback_is_refused(app, admin_client, okta):
    app.config["BASE_URL"] = "http://gatehouse.example.com"
    response = admin_client.get(authorize_url(okta))
    assert response.status_code == 400 and "insecure_transport" in response.get_data(as_text=True)
    response = admin_client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "x"})
    assert response.status_code == 400 and response.get_json()["error"] == "insecure_transport"
