"""Helpers for the SCIM tests: a token for a workspace and a small JSON client."""
from __future__ import annotations

import json

import pytest

from app.extensions import db

SCIM = "application/scim+json"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ROLE_EXT = "urn:ietf:params:scim:schemas:extension:gatehouse:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def make_token(workspace, name="Okta") -> str:
    from app.scim.tokens import create_token
    _, secret = create_token(workspace, name, actor=None)
    db.session.commit()
    return secret


class ScimClient:
    """The Flask test client speaking SCIM with a bearer token."""

    def __init__(self, client, token: str):
        self.client, self.token = client, token

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None, headers=None,
                content_type: str = SCIM, **kwargs):
        all_headers = {"Authorization": f"Bearer {self.token}", "Accept": SCIM, **(headers or {})}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return self.client.open("/scim/v2" + path, method=method, data=data, headers=all_headers,
                                content_type=content_type if data is not None else None, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, operations=None, **kw):
        body = kw.pop("body", None) or {"schemas": [PATCH], "Operations": operations}
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def user_body(email: str, *, given="Ada", family="Lovelace", role=None, external_id=None, active=True) -> dict:
    body = {"schemas": [CORE_USER], "userName": email, "name": {"givenName": given, "familyName": family},
            "emails": [{"primary": True, "value": email, "type": "work"}], "active": active,
            "displayName": f"{given} {family}"}
    if role is not None:
        body["schemas"].append(ROLE_EXT)
        body[ROLE_EXT] = {"role": role}
    if external_id is not None:
        body["externalId"] = external_id
    return body


def assert_scim_error(response, status: int, scim_type: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == SCIM
    body = response.get_json(force=True)
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


@pytest.fixture
def scim(client, workspace):
    return ScimClient(client, make_token(workspace))


class LiveScim:
    """The app served on a real socket (werkzeug, threaded), spoken to with `requests`."""

    def __init__(self, url: str, token: str, user_agent: str):
        import requests
        self.url, self.http = url + "/scim/v2", requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/scim+json",
                                  "User-Agent": user_agent})

    def send(self, method: str, path: str, body=None, content_type="application/scim+json; charset=utf-8", **kw):
        headers = {"Content-Type": content_type} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        return self.http.request(method, self.url + path, data=data, headers=headers, timeout=10, **kw)


@pytest.fixture
def live_app_url(app):
    import threading

    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["BASE_URL"] = url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    thread.join(5)
