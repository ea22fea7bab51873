"""Authentication, discovery, bad input (always a SCIM error, never a 500), tokens and the CLI."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ScimRequestLog, ScimToken, User
from tests.integration.scim_helpers import (CORE_USER, ROLE_EXT, SCIM, ScimClient, assert_scim_error, make_token,
                                            scim, user_body)  # noqa: F401


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 5000])
def test_missing_or_bad_token_is_401(client, workspace, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/scim/v2/Users", headers=headers)
    body = assert_scim_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in body


def test_revoked_token_is_refused_and_last_used_is_recorded(client, workspace, admin):
    from app.scim.tokens import create_token, list_tokens, revoke_token
    token, secret = create_token(workspace, "Okta", actor=admin)
    db.session.commit()
    assert token.token_hash != secret and secret not in token.token_hash
    scim = ScimClient(client, secret)
    assert scim.get("/Users").status_code == 200
    db.session.refresh(token)
    first_use = token.last_used_at
    assert first_use is not None
    scim.get("/Users")
    db.session.refresh(token)
    assert token.last_used_at == first_use  # written at most once a minute
    assert [t.id for t in list_tokens(workspace.id)] == [token.id]
    revoke_token(workspace.id, token.id, actor=admin)
    db.session.commit()
    assert_scim_error(scim.get("/Users"), 401)
    assert list_tokens(workspace.id) == []


def test_token_of_workspace_a_never_reaches_b(client, workspace, make_workspace):
    other = make_workspace("Beta", "enterprise", "boss@beta.test")
    a = ScimClient(client, make_token(workspace))
    b = ScimClient(client, make_token(other))
    b_user = b.post("/Users", user_body("only-b@beta.test")).get_json(force=True)
    b_group = b.post("/Groups", {"displayName": "B team", "members": [{"value": b_user["id"]}]}).get_json(force=True)
    assert_scim_error(a.get(f"/Users/{b_user['id']}"), 404)
    assert_scim_error(a.put(f"/Users/{b_user['id']}", user_body("stolen@acme.test")), 404)
    assert_scim_error(a.get(f"/Groups/{b_group['id']}"), 404)
    assert_scim_error(a.patch(f"/Groups/{b_group['id']}", [{"op": "replace", "path": "displayName", "value": "x"}]), 404)
    assert a.get('/Users?filter=userName eq "only-b@beta.test"').get_json(force=True)["totalResults"] == 0
    assert a.get("/Groups").get_json(force=True)["totalResults"] == 0
    # A's group cannot take B's user.
    assert_scim_error(a.post("/Groups", {"displayName": "A", "members": [{"value": b_user["id"]}]}), 400, "invalidValue")
    # The same email may live in both workspaces.
    assert a.post("/Users", user_body("only-b@beta.test")).status_code == 201


def test_only_enterprise_workspaces_are_provisioned(client, make_workspace):
    from app.models import Workspace
    from app.scim.tokens import TokenError, create_token
    free = make_workspace("Freebie", "free", "boss@free.test")
    with pytest.raises(TokenError):
        create_token(free, "Okta", actor=None)
    enterprise = make_workspace("Downgraded", "enterprise", "boss@down.test")
    scim = ScimClient(client, make_token(enterprise))
    db.session.get(Workspace, enterprise.id).plan = "business"
    db.session.commit()
    assert_scim_error(scim.get("/Users"), 403)


def test_discovery_documents(scim):
    spc = scim.get("/ServiceProviderConfig")
    assert spc.status_code == 200 and spc.mimetype == SCIM
    body = spc.get_json(force=True)
    assert body["patch"]["supported"] and body["filter"]["supported"] and body["filter"]["maxResults"] == 200
    assert body["bulk"]["supported"] is False and body["etag"]["supported"] is True
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["documentationUri"] == "http://localhost/settings/security"  # on BASE_URL, where tokens are made
    types = scim.get("/ResourceTypes").get_json(force=True)
    user_type = next(r for r in types["Resources"] if r["id"] == "User")
    assert user_type["endpoint"] == "/Users" and user_type["schema"] == CORE_USER
    assert user_type["schemaExtensions"] == [{"schema": ROLE_EXT, "required": False}]
    assert scim.get("/ResourceTypes/Group").get_json(force=True)["endpoint"] == "/Groups"
    schemas = scim.get("/Schemas").get_json(force=True)
    assert schemas["totalResults"] == 3
    role_schema = scim.get(f"/Schemas/{ROLE_EXT}").get_json(force=True)
    (role,) = role_schema["attributes"]
    assert role["name"] == "role" and role["canonicalValues"] == ["admin", "creator", "creator_lite"]
    assert role["type"] == "string" and role["multiValued"] is False
    user_schema = scim.get(f"/Schemas/{CORE_USER}").get_json(force=True)
    user_name = next(a for a in user_schema["attributes"] if a["name"] == "userName")
    assert user_name["required"] and user_name["uniqueness"] == "server" and user_name["caseExact"] is False
    assert_scim_error(scim.get("/Schemas/urn:nope"), 404)
    assert_scim_error(scim.get("/ResourceTypes/Nope"), 404)


@pytest.mark.parametrize("raw, content_type, status, scim_type", [
    (b"{not json", SCIM, 400, "invalidSyntax"),
    (b"", SCIM, 400, "invalidSyntax"),
    (b"[1, 2]", SCIM, 400, "invalidSyntax"),
    (b'"userName"', SCIM, 400, "invalidSyntax"),
    (b'{"userName": NaN}', SCIM, 400, "invalidSyntax"),
    (b"\xff\xfe{}", SCIM, 400, "invalidSyntax"),
    (b"[" * 100000 + b"]" * 100000, SCIM, 400, "invalidSyntax"),
    (b'{"userName": "a@acme.test"}', "text/plain", 415, None),
    (b"userName=a@acme.test", "application/x-www-form-urlencoded", 415, None),
    (json.dumps({"userName": "a@acme.test", "bogus": 1}).encode(), SCIM, 400, "invalidSyntax"),
    (json.dumps({"schemas": ["urn:nope"], "userName": "a@acme.test"}).encode(), SCIM, 400, "invalidSyntax"),
    (json.dumps({"schemas": "x", "userName": "a@acme.test"}).encode(), SCIM, 400, "invalidSyntax"),
    (json.dumps({"userName": 5}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": ""}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"displayName": "no username"}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "a@acme.test", "active": "sometimes"}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "a@acme.test", "name": "Ada"}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "a@acme.test", "emails": "a@acme.test"}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "a@acme.test", ROLE_EXT: "admin"}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "a@acme.test", ROLE_EXT: {"role": 1}}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "a@acme.test", ROLE_EXT: {"level": "x"}}).encode(), SCIM, 400, "invalidSyntax"),
    (json.dumps({"userName": "a@acme.test", "displayName": "x" * 500}).encode(), SCIM, 400, "invalidValue"),
    (json.dumps({"userName": "x" * 300 + "@acme.test"}).encode(), SCIM, 400, "invalidValue"),
])
def test_bad_user_bodies_are_scim_errors(scim, raw, content_type, status, scim_type):
    assert_scim_error(scim.post("/Users", raw=raw, content_type=content_type), status, scim_type)
    assert db.session.scalar(select(User).where(User.email_normalized == "a@acme.test")) is None


def test_a_byte_order_mark_is_tolerated(scim):
    raw = b"\xef\xbb\xbf" + json.dumps(user_body("bom@acme.test")).encode()
    assert scim.post("/Users", raw=raw).status_code == 201


def test_huge_body_is_413(scim):
    raw = json.dumps({"userName": "big@acme.test", "displayName": "x" * (3 * 1024 * 1024)}).encode()
    assert_scim_error(scim.post("/Users", raw=raw), 413)


@pytest.mark.parametrize("method, path", [("GET", "/Nope"), ("GET", "/Users/1/extra"), ("DELETE", "/Users"),
                                          ("PUT", "/Groups"), ("POST", "/ServiceProviderConfig")])
def test_unknown_urls_and_methods_are_scim_errors(scim, method, path):
    response = scim.request(method, path)
    assert response.mimetype == SCIM and response.status_code in (404, 405)
    body = response.get_json(force=True)
    assert body["status"] == str(response.status_code) and "SCIM" in body["detail"]


@pytest.mark.parametrize("operations", [
    "not-a-list", [{"op": "replace", "path": "members[value eq", "value": 1}],
    [{"op": "add", "path": "members", "value": [{"value": "abc"}]}],
    [{"op": "add", "path": "members", "value": [{"value": "99999"}]}],
    [{"op": "add", "path": "members", "value": [{"value": "1", "type": "Group"}]}],
    [{"op": "replace", "path": "displayName", "value": ""}],
    [{"op": "remove", "path": "displayName"}],
    [{"op": "replace", "value": {"displayName": 5}}],
])
def test_bad_group_patches_are_400_and_change_nothing(scim, operations):
    group = scim.post("/Groups", {"displayName": "Stable"}).get_json(force=True)
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
    response = scim.request("PATCH", f"/Groups/{group['id']}", body)
    assert_scim_error(response, 400)
    after = scim.get(f"/Groups/{group['id']}").get_json(force=True)
    assert after["displayName"] == "Stable" and after.get("members") == []


def test_group_crud_and_uniqueness(scim):
    users = [scim.post("/Users", user_body(f"g{i}@acme.test")).get_json(force=True)["id"] for i in range(3)]
    group = scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Design",
                                  "members": [{"value": users[0]}, {"value": users[1]}]})
    assert group.status_code == 201 and group.headers["Location"].endswith("/Groups/" + group.get_json(force=True)["id"])
    group_id = group.get_json(force=True)["id"]
    assert_scim_error(scim.post("/Groups", {"displayName": "design"}), 409, "uniqueness")
    user = scim.get(f"/Users/{users[0]}").get_json(force=True)
    assert user["groups"] == [{"value": group_id, "$ref": f"http://localhost/scim/v2/Groups/{group_id}",
                               "display": "Design", "type": "direct"}]
    put = scim.put(f"/Groups/{group_id}", {"displayName": "Design Team", "members": [{"value": users[2]}]})
    assert put.status_code == 200
    assert [m["value"] for m in put.get_json(force=True)["members"]] == [users[2]]
    other = scim.post("/Groups", {"displayName": "Other"}).get_json(force=True)
    assert_scim_error(scim.patch(f"/Groups/{other['id']}", [{"op": "replace", "path": "displayName",
                                                              "value": "DESIGN TEAM"}]), 409, "uniqueness")
    assert scim.get(f"/Groups/{group_id}?excludedAttributes=members").get_json(force=True).get("members") is None
    assert scim.get("/Groups?attributes=displayName").get_json(force=True)["Resources"][0].keys() == {
        "schemas", "id", "displayName"}
    # Deleting a user (SCIM DELETE) drops them from groups.
    scim.delete(f"/Users/{users[2]}")
    assert scim.get(f"/Groups/{group_id}").get_json(force=True)["members"] == []
    assert scim.delete(f"/Groups/{group_id}").status_code == 204
    assert_scim_error(scim.delete(f"/Groups/{group_id}"), 404)


def test_search_endpoint(scim):
    scim.post("/Users", user_body("search@acme.test"))
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName sw "search"',
            "attributes": ["userName"], "count": 5}
    response = scim.post("/Users/.search", body)
    assert response.status_code == 200
    assert [r["userName"] for r in response.get_json(force=True)["Resources"]] == ["search@acme.test"]
    assert_scim_error(scim.post("/Users/.search", body | {"filter": "bogus pr"}), 400, "invalidFilter")


def test_request_log_is_pruned_by_age_and_count(scim, workspace):
    from app.models import utcnow
    from app.scim.requestlog import prune
    for _ in range(5):
        scim.get("/Users")
    old = db.session.scalars(select(ScimRequestLog)).first()
    old.created_at = utcnow() - dt.timedelta(days=31)
    db.session.commit()
    assert prune() == 1
    assert prune(keep=2) == 2
    assert db.session.scalar(select(db.func.count()).select_from(ScimRequestLog)) == 2


def test_cli_prints_only_the_token(app, workspace):
    result = app.test_cli_runner().invoke(args=["scim-token", "create", "--workspace", workspace.slug,
                                                                "--name", "Okta prod"])
    assert result.exit_code == 0, result.stderr
    (token,) = result.stdout.splitlines()
    client = app.test_client()
    assert client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert db.session.scalar(select(ScimToken.name).where(ScimToken.workspace_id == workspace.id)) == "Okta prod"
    bad = app.test_cli_runner().invoke(args=["scim-token", "create", "--workspace", "nope"])
    assert bad.exit_code == 1 and bad.stdout == "" and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("path", ["/Users/99999999999999999999999", "/Users/-1", "/Users/0", "/Groups/1e5",
                                  "/Groups/99999999999999999999999", "/Users?startIndex=99999999999999999999&count=5",
                                  '/Users?filter=id eq "99999999999999999999999"', "/Bulk", "/Me", "/.search"])
def test_out_of_range_ids_and_unsupported_endpoints(scim, path):
    response = scim.post(path, {"Operations": []}) if path in ("/Bulk", "/.search") else scim.get(path)
    assert response.status_code in (200, 404, 501) and response.mimetype == SCIM
    if response.status_code == 200:
        assert response.get_json(force=True)["Resources"] == []


def test_fuzzed_filters_paths_and_bodies_never_500(scim):
    import random
    rng = random.Random(7)
    atoms = ['userName', 'emails[type eq "work"]', 'name.givenName', 'eq', 'co', 'pr', 'and', 'or', 'not', '(', ')',
             '"x"', '"\\"', '1', 'true', 'null', '[', ']', '.', 'urn:ietf:params:scim:schemas:core:2.0:User:', 'gt',
             'meta.lastModified', '"2020-01-01T00:00:00Z"', 'members', 'value', '\u00e9', '%', '&', ' ']
    user = scim.post("/Users", user_body("fuzz@acme.test")).get_json(force=True)
    for _ in range(150):
        text = " ".join(rng.choice(atoms) for _ in range(rng.randint(1, 8)))
        from urllib.parse import quote
        response = scim.get(f"/Users?filter={quote(text)}")
        assert response.status_code in (200, 400), (text, response.get_data(as_text=True))
        operation = {"op": rng.choice(["add", "Replace", "remove", "bogus"]), "path": text,
                     "value": rng.choice([None, "x", 1, True, [], {}, [{"value": "1"}], {"givenName": 5}])}
        response = scim.patch(f"/Users/{user['id']}", [operation])
        assert response.status_code in (200, 400, 409), (operation, response.get_data(as_text=True))
        body = {rng.choice(["userName", "name", "emails", "active", ROLE_EXT, "externalId", "x"]):
                rng.choice([None, "a@b.test", 5, {"role": "admin"}, [1], [{"value": None}], {"givenName": []}])}
        response = scim.put(f"/Users/{user['id']}", body)
        assert response.status_code in (200, 400, 409), (body, response.get_data(as_text=True))


@pytest.mark.parametrize("op", ["add", "replace", "Add", "Replace"])
def test_filtered_patch_paths_with_values_that_are_not_objects_are_400(scim, op):
    """RFC 7644 §3.5.2.1/3: add and replace carry the value to set; on `attr[filter]` that is an
    object of sub-attributes, so null, a number, a string or a list is invalidValue, never a 500."""
    user = scim.post("/Users", user_body("fuzz@acme.test")).get_json(force=True)
    group = scim.post("/Groups", {"displayName": "G", "members": [{"value": user["id"]}]}).get_json(force=True)
    resources = {f"/Users/{user['id']}": ['emails[type eq "work"]', 'emails[type eq "home"]',
                                          'emails[value eq "fuzz@acme.test"]', 'emails[primary eq true]'],
                 f"/Groups/{group['id']}": [f'members[value eq "{user["id"]}"]', 'members[value eq "2"]',
                                            'members[value eq "99999"]']}
    for path, targets in resources.items():
        before = scim.get(path).get_json(force=True)
        for target in targets:
            for value in (None, 5, "x", [], [{"value": "1"}], True):
                response = scim.patch(path, [{"op": op, "path": target, "value": value}])
                assert_scim_error(response, 400, "invalidValue")
            for sub_path, value in ((target + ".value", None), (target + ".value", [1]), (target + ".type", {})):
                response = scim.patch(path, [{"op": op, "path": sub_path, "value": value}])
                assert response.status_code in (200, 400), (sub_path, value, response.get_data(as_text=True))
        if path.startswith("/Groups"):
            assert scim.get(path).get_json(force=True)["members"] == before["members"]


@pytest.mark.csrf
def test_scim_is_exempt_from_csrf(scim):
    response = scim.post("/Users", user_body("csrf@acme.test"))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers


def test_registered_verifiers_authenticate_after_static_tokens(client, workspace, monkeypatch):
    from app.scim import auth
    seen = []

    def verifier(bearer):
        seen.append(bearer)
        return auth.ScimPrincipal(workspace.id, "OAuth: Okta") if bearer == "oauth-access-token" else None

    monkeypatch.setattr(auth, "_verifiers", [verifier])
    scim = ScimClient(client, "oauth-access-token")
    created = scim.post("/Users", user_body("oauth@acme.test"))
    assert created.status_code == 201
    from app.models import AuditEvent
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.user_created"))
    assert event.actor_label == "OAuth: Okta"
    assert_scim_error(ScimClient(client, "other").get("/Users"), 401)
    static = ScimClient(client, make_token(workspace))
    seen.clear()
    assert static.get("/Users").status_code == 200 and seen == []  # static tokens never reach the verifiers


def test_prune_job_runs_on_a_real_worker(scim, jobs):
    from app.extensions import rq
    from app.models import utcnow
    from jobs.scim import prune_scim_request_log
    scim.get("/Users")
    scim.get("/Groups")
    old = db.session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id)).first()
    old.created_at = utcnow() - dt.timedelta(days=40)
    db.session.commit()
    job = rq.queue("default").enqueue(prune_scim_request_log)
    jobs()
    assert job.get_status(refresh=True) == "finished" and job.return_value() == 1
    db.session.expire_all()
    assert db.session.scalar(select(db.func.count()).select_from(ScimRequestLog)) == 1


@pytest.mark.postgres
def test_a_nul_in_the_logged_request_does_not_undo_the_write(db_backend, scim):
    """The log entry is committed with the change: a NUL PostgreSQL cannot store must not turn it into a 503."""
    response = scim.post("/Users", user_body("agent@acme.test"), headers={"User-Agent": "Okta\x00SCIM"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert db.session.scalar(select(ScimRequestLog.client).where(ScimRequestLog.method == "POST")) == \
        "SCIM: Okta · OktaSCIM"  # which token, then the client's own name
