"""SCIM's HTTP conventions: attribute names by full URN (RFC 7644 §3.10), the body limit on
the bytes actually read, and ETags that follow what a GET returns (RFC 7644 §3.14)."""
from __future__ import annotations

import io
import json

import pytest

from tests.integration.scim_helpers import (CORE_GROUP, CORE_USER, ROLE_EXT, SCIM, assert_scim_error, scim,  # noqa: F401
                                            user_body)


def test_attributes_by_full_urn(scim):
    user = scim.post("/Users", user_body("ada@acme.test", role="creator")).get_json(force=True)
    group = scim.post("/Groups", {"displayName": "Eng", "members": [{"value": user["id"]}]}).get_json(force=True)
    members = [{"value": user["id"], "$ref": f"http://localhost/scim/v2/Users/{user['id']}",
                "display": "ada@acme.test", "type": "User"}]

    def get(path, **params):
        response = scim.get(path, query_string=params)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json(force=True)
        return body["Resources"][0] if "Resources" in body else body

    for path in (f"/Groups/{group['id']}", "/Groups"):
        assert get(path, attributes=f"{CORE_GROUP}:members") == {"schemas": [CORE_GROUP], "id": group["id"],
                                                                 "members": members}
        assert get(path, attributes=f"{CORE_GROUP}:members.value")["members"] == [{"value": user["id"]}]
        assert get(path, attributes=f"{CORE_GROUP}:displayName").keys() == {"schemas", "id", "displayName"}
        assert "members" not in get(path, excludedAttributes=f"{CORE_GROUP}:members")
        assert get(path, excludedAttributes=f"{CORE_GROUP}:members.display")["members"] == [
            {k: v for k, v in members[0].items() if k != "display"}]
    search = scim.post("/Groups/.search", {"attributes": [f"{CORE_GROUP}:members"]}).get_json(force=True)
    assert search["Resources"][0]["members"] == members

    for path, params in ((f"/Users/{user['id']}", {}), ("/Users", {"filter": 'userName eq "ada@acme.test"'})):
        body = get(path, **params, attributes=f"{CORE_USER}:userName,{CORE_USER}:name.givenName,{ROLE_EXT}:role")
        assert body == {"schemas": [CORE_USER, ROLE_EXT], "id": user["id"], "userName": "ada@acme.test",
                        "name": {"givenName": "Ada"}, ROLE_EXT: {"role": "creator"}}
        assert get(path, **params, attributes=ROLE_EXT)[ROLE_EXT] == {"role": "creator"}
        body = get(path, **params, excludedAttributes=f"{CORE_USER}:emails,{CORE_USER}:groups,{ROLE_EXT}:role")
        assert not {"emails", "groups", ROLE_EXT} & body.keys() and body["userName"] == "ada@acme.test"
        assert ROLE_EXT not in get(path, **params, excludedAttributes=ROLE_EXT)


def _chunked(scim, client, path: str, raw: bytes):
    """A body without Content-Length, as a proxy or client streaming it in chunks sends it."""
    return client.open("/scim/v2" + path, method="POST", input_stream=io.BytesIO(raw),
                       headers={"Authorization": f"Bearer {scim.token}", "Content-Type": SCIM,
                                "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def test_the_body_limit_holds_without_content_length(scim, client):
    big = json.dumps(user_body("big@acme.test") | {"displayName": "x" * (1536 * 1024)}).encode()
    response = _chunked(scim, client, "/Users", big)
    assert response.headers.get("Content-Length") != str(len(big))
    assert_scim_error(response, 413)
    assert scim.get('/Users?filter=userName eq "big@acme.test"').get_json(force=True)["totalResults"] == 0
    # One byte over the limit is over it; a chunked body within it is read as any other.
    over = json.dumps(user_body("over@acme.test")).encode()
    over = over[:-1] + b" " * (1024 * 1024 + 1 - len(over)) + b"}"
    assert_scim_error(_chunked(scim, client, "/Users", over), 413)
    assert_scim_error(scim.post("/Users", raw=over), 413)
    small = _chunked(scim, client, "/Users", json.dumps(user_body("small@acme.test")).encode())
    assert small.status_code == 201, small.get_data(as_text=True)


@pytest.mark.postgres
def test_the_user_etag_follows_its_groups(db_backend, scim):
    user = scim.post("/Users", user_body("ada@acme.test")).get_json(force=True)
    path = f"/Users/{user['id']}"
    etags = [scim.get(path).headers["ETag"]]

    def changed_since_last(**expected):
        """A conditional GET with the last ETag is a full 200 with a new one (never a stale 304)."""
        response = scim.get(path, headers={"If-None-Match": etags[-1]})
        assert response.status_code == 200, "stale 304"
        body = response.get_json(force=True)
        assert response.headers["ETag"] == body["meta"]["version"] != etags[-1]
        assert [(g["value"], g["display"]) for g in body["groups"]] == expected["groups"]
        etags.append(response.headers["ETag"])
        assert scim.get(path, headers={"If-None-Match": etags[-1]}).status_code == 304

    group = scim.post("/Groups", {"displayName": "Eng", "members": [{"value": user["id"]}]}).get_json(force=True)
    changed_since_last(groups=[(group["id"], "Eng")])
    scim.patch(f"/Groups/{group['id']}", [{"op": "replace", "path": "displayName", "value": "Engineering"}])
    changed_since_last(groups=[(group["id"], "Engineering")])
    other = scim.post("/Groups", {"displayName": "Ops"}).get_json(force=True)
    scim.patch(f"/Groups/{other['id']}", [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}])
    changed_since_last(groups=[(group["id"], "Engineering"), (other["id"], "Ops")])
    scim.patch(f"/Groups/{group['id']}", [{"op": "remove", "path": f'members[value eq "{user["id"]}"]'}])
    changed_since_last(groups=[(other["id"], "Ops")])
    scim.delete(f"/Groups/{other['id']}")
    changed_since_last(groups=[])
    assert etags[-1] == etags[0]  # the same representation as at first, so the same version
    assert len(set(etags)) == len(etags) - 1
    # An IdP holding an old ETag is refused, and the list and the single GET agree.
    assert_scim_error(scim.patch(path, [{"op": "replace", "path": "displayName", "value": "A"}],
                                 headers={"If-Match": etags[-2]}), 412)
    assert_scim_error(scim.delete(path, headers={"If-Match": etags[-2]}), 412)
    listed = scim.get("/Users?filter=userName eq \"ada@acme.test\"").get_json(force=True)["Resources"][0]
    assert listed["meta"]["version"] == etags[-1]
    assert scim.delete(path, headers={"If-Match": etags[-1]}).status_code == 204
