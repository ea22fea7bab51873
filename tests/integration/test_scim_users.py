"""SCIM Users over HTTP (Flask test client): create, read, list, replace, patch, delete."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, User
from tests.support.sso import idp  # noqa: F401  (fixture)
from tests.integration.scim_helpers import (ROLE_EXT, SCIM, ScimClient, assert_scim_error, make_token,  # noqa: F401
                                            scim, user_body)


def test_create_returns_201_location_etag_and_default_role(scim, workspace):
    response = scim.post("/Users", user_body("grace@acme.test", given="Grace", family="Hopper"))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.mimetype == SCIM
    body = response.get_json(force=True)
    assert response.headers["Location"] == f"http://localhost/scim/v2/Users/{body['id']}"
    assert body["meta"]["location"] == response.headers["Location"]
    assert response.headers["ETag"] == body["meta"]["version"] and body["meta"]["version"].startswith('W/"')
    assert body["userName"] == "grace@acme.test" and body["active"] is True
    assert body["name"]["givenName"] == "Grace" and body["name"]["familyName"] == "Hopper"
    assert body[ROLE_EXT]["role"] == workspace.default_role == "creator_lite"
    user = db.session.get(User, int(body["id"]))
    assert user.source == "scim" and user.role == "creator_lite" and user.workspace_id == workspace.id
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.user_created")).actor_label == "SCIM: Okta"


def test_create_with_role_and_unknown_role(scim):
    response = scim.post("/Users", user_body("boss@acme.test", role="admin"))
    assert response.status_code == 201 and response.get_json(force=True)[ROLE_EXT]["role"] == "admin"
    assert_scim_error(scim.post("/Users", user_body("x@acme.test", role="superuser")), 400, "invalidValue")


@pytest.mark.postgres
def test_duplicate_username_any_case_is_409(db_backend, scim):
    assert scim.post("/Users", user_body("dup@acme.test")).status_code == 201
    assert_scim_error(scim.post("/Users", user_body("DUP@Acme.TEST")), 409, "uniqueness")
    # an existing non-SCIM member counts too
    assert_scim_error(scim.post("/Users", user_body("ADMIN@acme.test")), 409, "uniqueness")


def test_get_and_404s(scim, make_workspace):
    created = scim.post("/Users", user_body("get@acme.test")).get_json(force=True)
    response = scim.get(f"/Users/{created['id']}")
    assert response.status_code == 200 and response.get_json(force=True)["userName"] == "get@acme.test"
    assert_scim_error(scim.get("/Users/999999"), 404)
    assert_scim_error(scim.get("/Users/not-a-number"), 404)
    other = make_workspace("Other", "enterprise", "boss@other.test")
    other_user = db.session.scalar(select(User).where(User.workspace_id == other.id))
    assert_scim_error(scim.get(f"/Users/{other_user.id}"), 404)
    assert_scim_error(scim.patch(f"/Users/{other_user.id}", [{"op": "replace", "value": {"active": False}}]), 404)
    assert_scim_error(scim.delete(f"/Users/{other_user.id}"), 404)
    assert db.session.get(User, other_user.id).status == "active"


def test_password_is_accepted_and_ignored(scim):
    body = user_body("pw@acme.test") | {"password": "hunter2!"}
    response = scim.post("/Users", body)
    assert response.status_code == 201 and "password" not in response.get_json(force=True)
    user = db.session.scalar(select(User).where(User.email_normalized == "pw@acme.test"))
    assert user.password_hash is None


def test_put_replaces_and_keeps_id(scim):
    created = scim.post("/Users", user_body("put@acme.test", external_id="ext-1")).get_json(force=True)
    body = user_body("put.renamed@acme.test", given="Put", family="Renamed", external_id="ext-1", role="creator")
    response = scim.put(f"/Users/{created['id']}", body)
    assert response.status_code == 200, response.get_data(as_text=True)
    got = response.get_json(force=True)
    assert got["id"] == created["id"] and got["userName"] == "put.renamed@acme.test"
    assert got[ROLE_EXT]["role"] == "creator" and got["name"]["familyName"] == "Renamed"
    assert db.session.get(User, int(created["id"])).email_normalized == "put.renamed@acme.test"


def test_email_change_keeps_the_same_user_and_conflicts_are_409(scim):
    a = scim.post("/Users", user_body("a@acme.test")).get_json(force=True)
    scim.post("/Users", user_body("b@acme.test"))
    response = scim.patch(f"/Users/{a['id']}", [{"op": "replace", "path": "userName", "value": "a.new@acme.test"}])
    assert response.status_code == 200 and response.get_json(force=True)["id"] == a["id"]
    assert response.get_json(force=True)["emails"][0]["value"] == "a.new@acme.test"
    assert_scim_error(scim.patch(f"/Users/{a['id']}", [{"op": "replace", "path": "userName", "value": "B@acme.test"}]),
                      409, "uniqueness")
    assert_scim_error(scim.patch(f"/Users/{a['id']}", [{"op": "replace", "path": "userName", "value": "bad@"}]),
                      400, "invalidValue")


def test_deactivate_ends_sessions_and_reactivate(scim, client, make_user, app):
    from tests.conftest import sign_in
    member = make_user(db.session.get(User, 1).workspace, "member@acme.test")
    browser = app.test_client()
    sign_in(browser, "member@acme.test")
    assert browser.get("/library").status_code == 200
    response = scim.patch(f"/Users/{member.id}", [{"op": "replace", "value": {"active": False}}])
    assert response.status_code == 200 and response.get_json(force=True)["active"] is False
    db.session.refresh(member)
    assert member.status == "deactivated" and member.display_name == "Deactivated user"
    assert browser.get("/library").status_code in (302, 303, 401)
    events = db.session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == str(member.id))).all()
    assert "member.deactivated" in events
    response = scim.patch(f"/Users/{member.id}", [{"op": "replace", "path": "active", "value": True}])
    assert response.get_json(force=True)["active"] is True
    db.session.refresh(member)
    assert member.status == "active"


@pytest.mark.postgres
def test_last_admin_demotion_is_refused_with_mutability(db_backend, scim, admin):
    response = scim.patch(f"/Users/{admin.id}", [{"op": "replace", "path": f"{ROLE_EXT}:role", "value": "creator"}])
    assert_scim_error(response, 400, "mutability")
    db.session.refresh(admin)
    assert admin.role == "admin"


def test_idp_deactivation_of_last_admin_wins(scim, admin):
    response = scim.patch(f"/Users/{admin.id}", [{"op": "replace", "value": {"active": False}}])
    assert response.status_code == 200
    db.session.refresh(admin)
    assert admin.status == "deactivated"
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "member.last_admin_deactivated_by_idp" in actions


def test_idp_offboarding_of_last_admin_deactivates_and_demotes_in_one_request(scim, admin):
    """Entra sends one cycle's changes in one PATCH: "disable the account, remove the role"."""
    response = scim.patch(f"/Users/{admin.id}", [{"op": "Replace", "value": {"active": "False",
                                                                            f"{ROLE_EXT}:role": "creator"}}])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json(force=True)[ROLE_EXT]["role"] == "creator"
    db.session.refresh(admin)
    assert (admin.status, admin.role) == ("deactivated", "creator")
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert {"member.last_admin_deactivated_by_idp", "member.role_changed"} <= set(actions)


def test_a_deactivated_last_admin_can_be_demoted_later(scim, admin):
    assert scim.patch(f"/Users/{admin.id}", [{"op": "replace", "value": {"active": False}}]).status_code == 200
    response = scim.patch(f"/Users/{admin.id}", [{"op": "replace", "path": f"{ROLE_EXT}:role", "value": "creator"}])
    assert response.status_code == 200, response.get_data(as_text=True)
    db.session.refresh(admin)
    assert (admin.status, admin.role) == ("deactivated", "creator")


@pytest.mark.postgres
def test_delete_detaches_and_post_relinks(db_backend, scim):
    created = scim.post("/Users", user_body("leaver@acme.test", external_id="okta-1")).get_json(force=True)
    response = scim.delete(f"/Users/{created['id']}")
    assert response.status_code == 204 and response.get_data() == b""
    assert_scim_error(scim.get(f"/Users/{created['id']}"), 404)
    listed = scim.get('/Users?filter=userName eq "leaver@acme.test"').get_json(force=True)
    assert listed["totalResults"] == 0
    user = db.session.get(User, int(created["id"]))
    assert user is not None and user.status == "deactivated"  # data kept
    again = scim.post("/Users", user_body("Leaver@acme.test", external_id="okta-2"))
    assert again.status_code == 201
    body = again.get_json(force=True)
    assert body["id"] == created["id"] and body["active"] is True and body["externalId"] == "okta-2"
    assert scim.get(f"/Users/{created['id']}").status_code == 200


def test_a_relinking_post_without_a_role_gives_the_default_role(scim, workspace, admin):
    """README: the re-link takes the POST's values, and a missing role is the default one. A PUT
    without a role still leaves it as it is."""
    boss = scim.post("/Users", user_body("boss@acme.test", role="admin")).get_json(force=True)
    kept = scim.put(f"/Users/{boss['id']}", user_body("boss@acme.test"))
    assert kept.status_code == 200 and kept.get_json(force=True)[ROLE_EXT]["role"] == "admin"
    assert scim.delete(f"/Users/{boss['id']}").status_code == 204
    again = scim.post("/Users", user_body("boss@acme.test"))
    assert again.status_code == 201, again.get_data(as_text=True)
    body = again.get_json(force=True)
    assert body["id"] == boss["id"] and body[ROLE_EXT]["role"] == workspace.default_role == "creator_lite"
    assert scim.get(f"/Users/{boss['id']}").get_json(force=True)[ROLE_EXT]["role"] == "creator_lite"
    assert db.session.get(User, int(boss["id"])).role == "creator_lite"
    change = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "member.role_changed",
                                                        AuditEvent.target_id == boss["id"]))
    assert change.details == {"old": "admin", "new": "creator_lite"} and change.actor_label == "SCIM: Okta"
    # The workspace's last admin, deleted by the IdP and added back without a role: active again as
    # a non-admin would leave no admin who can sign in, so it is refused as the same PATCH is, and
    # nothing of it is written; with the role, the re-link goes through.
    assert scim.delete(f"/Users/{admin.id}").status_code == 204
    assert_scim_error(scim.post("/Users", user_body(admin.email)), 400, "mutability")
    db.session.expire_all()
    assert (db.session.get(User, admin.id).status, db.session.get(User, admin.id).role) == ("deactivated", "admin")
    again = scim.post("/Users", user_body(admin.email, role="admin"))
    assert again.status_code == 201, again.get_data(as_text=True)
    assert again.get_json(force=True)[ROLE_EXT]["role"] == "admin" and again.get_json(force=True)["active"]


@pytest.mark.parametrize("write", ["put", "patch"])
def test_a_member_the_idp_links_and_writes_to_is_managed_by_it(app, admin_client, workspace, make_user, write):
    """Okta's import: found by userName, then written. From then on the IdP decides whether they
    are active, as for members it created."""
    jit = make_user(workspace, "jit@acme.test", source="sso_jit")
    okta = ScimClient(app.test_client(), make_token(workspace))
    assert okta.get('/Users?filter=userName eq "jit@acme.test"').get_json(force=True)["totalResults"] == 1
    response = (okta.put(f"/Users/{jit.id}", user_body("jit@acme.test", given="Jit", family="User")) if write == "put"
                else okta.patch(f"/Users/{jit.id}", [{"op": "replace", "path": "name.givenName", "value": "Jit"}]))
    assert response.status_code == 200, response.get_data(as_text=True)
    okta.patch(f"/Users/{jit.id}", [{"op": "replace", "path": "name.familyName", "value": "Again"}])

    refused = admin_client.post(f"/settings/members/{jit.id}/deactivate", follow_redirects=True)
    assert "managed by your identity provider" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, jit.id).status == "active"
    admin_client.post(f"/settings/members/{jit.id}/deactivate", data={"override": "1"})
    db.session.expire_all()
    assert db.session.get(User, jit.id).status == "deactivated"
    linked = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "scim.user_linked")).all()
    assert [(e.target_id, e.details["source"], e.actor_label) for e in linked] == [
        (str(jit.id), "sso_jit", "SCIM: Okta")]


def test_names_keep_no_line_breaks_or_control_characters(scim):
    body = user_body("crlf@acme.test", given="Ada\r\nMary", family="Love\tlace") | {
        "displayName": "Ada\r\nLove\x07lace"}
    created = scim.post("/Users", body)
    assert created.status_code == 201, created.get_data(as_text=True)
    read = scim.get(f"/Users/{created.get_json(force=True)['id']}").get_json(force=True)
    assert read["displayName"] == "Ada Lovelace"
    assert (read["name"]["givenName"], read["name"]["familyName"]) == ("Ada Mary", "Love lace")
    user = db.session.get(User, int(read["id"]))
    assert (user.name, user.given_name, user.family_name) == ("Ada Lovelace", "Ada Mary", "Love lace")
    # The IdP sending the same again changes nothing: no update event, the same ETag.
    again = scim.put(f"/Users/{read['id']}", body)
    assert again.headers["ETag"] == read["meta"]["version"]
    assert not db.session.scalars(select(AuditEvent).where(AuditEvent.action == "scim.user_updated")).all()


def test_attributes_and_excluded_attributes(scim):
    created = scim.post("/Users", user_body("proj@acme.test")).get_json(force=True)
    body = scim.get(f"/Users/{created['id']}?attributes=userName,name.givenName").get_json(force=True)
    assert set(body) == {"schemas", "id", "userName", "name"} and body["name"] == {"givenName": "Ada"}
    body = scim.get(f"/Users/{created['id']}?excludedAttributes=emails,meta").get_json(force=True)
    assert "emails" not in body and "meta" not in body and body["userName"] == "proj@acme.test"
    listed = scim.get("/Users?attributes=userName&count=1").get_json(force=True)
    assert set(listed["Resources"][0]) == {"schemas", "id", "userName"}


def test_if_match_mismatch_is_412(scim):
    created = scim.post("/Users", user_body("etag@acme.test")).get_json(force=True)
    response = scim.patch(f"/Users/{created['id']}", [{"op": "replace", "path": "displayName", "value": "X"}],
                          headers={"If-Match": 'W/"nope"'})
    assert_scim_error(response, 412)
    response = scim.patch(f"/Users/{created['id']}", [{"op": "replace", "path": "displayName", "value": "X"}],
                          headers={"If-Match": created["meta"]["version"]})
    assert response.status_code == 200
    assert response.headers["ETag"] != created["meta"]["version"]


def test_signing_in_leaves_the_etag_and_last_modified_alone(app, scim, workspace, make_user):
    """The last sign-in is not part of the SCIM resource: an IdP holding the ETag keeps using it."""
    from tests.conftest import sign_in
    user = make_user(workspace, "member@acme.test")
    before = scim.get(f"/Users/{user.id}")
    sign_in(app.test_client(), "member@acme.test")
    db.session.expire_all()
    assert db.session.get(User, user.id).last_login_at is not None
    after = scim.get(f"/Users/{user.id}")
    assert after.headers["ETag"] == before.headers["ETag"]
    assert after.get_json(force=True)["meta"]["lastModified"] == before.get_json(force=True)["meta"]["lastModified"]
    response = scim.patch(f"/Users/{user.id}", [{"op": "replace", "path": "displayName", "value": "M"}],
                          headers={"If-Match": before.headers["ETag"]})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_the_etag_moves_with_what_an_idp_reads_and_nothing_else(scim, workspace, make_user, admin):
    from app.auth.service import set_password
    from app.members.service import change_role, deactivate
    user = make_user(workspace, "member@acme.test")

    def etag():
        db.session.expire_all()
        return scim.get(f"/Users/{user.id}").headers["ETag"]

    first = etag()
    user = db.session.get(User, user.id)
    user.end_all_sessions()  # e.g. SSO turned on, a domain removed
    set_password(user, "another long passphrase 9")
    db.session.commit()
    assert etag() == first
    change_role(db.session.get(User, user.id), "admin", actor=admin)
    db.session.commit()
    second = etag()
    assert second != first
    deactivate(db.session.get(User, user.id), actor=admin)
    db.session.commit()
    assert etag() not in (first, second)


def test_request_log_masks_secrets(scim, workspace):
    from app.models import ScimRequestLog
    scim.post("/Users", user_body("logged@acme.test") | {"password": "s3cret-pass"})
    entry = db.session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id.desc())).first()
    assert entry.method == "POST" and entry.status == 201 and entry.path == "/scim/v2/Users"
    assert "s3cret-pass" not in entry.body and "***" in entry.body and scim.token not in (entry.body or "")
    assert entry.user_id is not None and entry.workspace_id == workspace.id
    # A password set by PATCH, in any spelling of the keys (SCIM names are case-insensitive).
    for operation in ({"op": "replace", "path": "password", "value": "Hunter2-Secret!"},
                      {"op": "replace", "Path": "password", "Value": "Hunter2-Secret!"},
                      {"Op": "Replace", "PATH": "Password", "VALUE": "Hunter2-Secret!"}):
        assert scim.patch(f"/Users/{entry.user_id}", [operation]).status_code == 200
        entry = db.session.scalars(select(ScimRequestLog).order_by(ScimRequestLog.id.desc())).first()
        assert entry.method == "PATCH" and "Hunter2-Secret!" not in entry.body and "***" in entry.body


def test_write_responses_match_a_later_read(scim):
    created = scim.post("/Users", user_body("same@acme.test"))
    read = scim.get(f"/Users/{created.get_json(force=True)['id']}")
    assert created.get_json(force=True) == read.get_json(force=True)
    patched = scim.patch(f"/Users/{created.get_json(force=True)['id']}",
                         [{"op": "replace", "path": "name.givenName", "value": "Eve"}])
    read = scim.get(f"/Users/{created.get_json(force=True)['id']}")
    assert patched.get_json(force=True) == read.get_json(force=True)
    assert patched.headers["ETag"] == read.headers["ETag"] != created.headers["ETag"]
    not_modified = scim.get(f"/Users/{created.get_json(force=True)['id']}", headers={"If-None-Match": read.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.get_data() == b""


@pytest.mark.parametrize("direct_limit", [1000, 1])
def test_totals_leave_detached_users_out_on_every_page(scim, monkeypatch, direct_limit):
    from app.scim import users
    monkeypatch.setattr(users, "DIRECT_PAGE_LIMIT", direct_limit)
    ids = [scim.post("/Users", user_body(f"t{i}@acme.test")).get_json(force=True)["id"] for i in range(3)]
    scim.delete(f"/Users/{ids[1]}")
    for query in ("count=1", "count=1&startIndex=2", "count=10", 'filter=userName sw "t"&count=1'):
        body = scim.get(f"/Users?{query}").get_json(force=True)
        expected = 2 if "filter" in query else 3  # the admin, t0 and t2
        assert body["totalResults"] == expected, query
        assert ids[1] not in [r["id"] for r in body["Resources"]]


@pytest.mark.parametrize("direct_limit", [1000, 1])  # rows at once, and ids first (deep pages)
def test_both_paging_paths_agree(scim, monkeypatch, direct_limit):
    from app.scim import users
    monkeypatch.setattr(users, "DIRECT_PAGE_LIMIT", direct_limit)
    ids = [scim.post("/Users", user_body(f"page{i}@acme.test")).get_json(force=True)["id"] for i in range(5)]
    seen = []
    for start in (1, 3, 5, 7):
        body = scim.get(f"/Users?startIndex={start}&count=2").get_json(force=True)
        assert body["totalResults"] == 6 and body["startIndex"] == start
        seen += [r["id"] for r in body["Resources"]]
    assert seen == sorted(seen, key=int) and len(seen) == 6 and set(ids) <= set(seen)


@pytest.mark.postgres
def test_a_user_name_that_is_not_an_email(db_backend, scim):
    body = user_body("ada@acme.test") | {"userName": "ADA.lovelace"}
    created = scim.post("/Users", body)
    assert created.status_code == 201, created.get_data(as_text=True)
    got = created.get_json(force=True)
    assert got["userName"] == "ADA.lovelace" and got["emails"][0]["value"] == "ada@acme.test"
    user = db.session.get(User, int(got["id"]))
    assert user.email_normalized == "ada@acme.test"  # the member's address comes from emails
    for expression in ('userName eq "ada.LOVELACE"', 'userName sw "ada."', 'emails.value eq "ada@acme.test"'):
        listed = scim.get(f"/Users?filter={expression}").get_json(force=True)
        assert [r["id"] for r in listed["Resources"]] == [got["id"]], expression
    assert scim.get('/Users?filter=userName eq "ada@acme.test"').get_json(force=True)["totalResults"] == 0
    assert_scim_error(scim.post("/Users", user_body("other@acme.test") | {"userName": "ada.Lovelace"}), 409, "uniqueness")
    assert_scim_error(scim.post("/Users", user_body("x@acme.test") | {"userName": "nomail", "emails": []}),
                      400, "invalidValue")
    renamed = scim.patch(f"/Users/{got['id']}", [{"op": "replace", "path": "userName", "value": "ada.king"}])
    assert renamed.get_json(force=True)["userName"] == "ada.king"
    assert renamed.headers["ETag"] != created.headers["ETag"]
    # This member's userName was never its address (the address comes from emails): an
    # email-shaped userName is kept as the IdP's userName, and the address stays.
    back = scim.patch(f"/Users/{got['id']}", [{"op": "replace", "path": "userName", "value": "ada.king@acme.test"}])
    assert back.get_json(force=True)["userName"] == "ada.king@acme.test"
    assert back.get_json(force=True)["emails"][0]["value"] == "ada@acme.test"
    assert db.session.get(User, int(got["id"])).email_normalized == "ada@acme.test"
    # DELETE then POST with the same (non-email) userName links the same member again.
    scim.patch(f"/Users/{got['id']}", [{"op": "replace", "path": "userName", "value": "ada.k"}])
    assert scim.delete(f"/Users/{got['id']}").status_code == 204
    again = scim.post("/Users", user_body("ada.king@acme.test") | {"userName": "ada.k"})
    assert again.status_code == 201 and again.get_json(force=True)["id"] == got["id"]


def test_email_change_that_locks_out_the_last_admin_is_refused(scim, admin, workspace, idp):
    """With SSO on, moving the only admin off the authorized domains would leave nobody who can sign in."""
    from app.auth.policy import can_sign_in
    from tests.support.sso import setup_sso
    setup_sso(workspace, idp)
    assert can_sign_in(db.session.get(User, admin.id))
    response = scim.patch(f"/Users/{admin.id}", [{"op": "replace", "path": "userName",
                                                  "value": "admin@elsewhere.test"}])
    assert_scim_error(response, 400, "mutability")
    db.session.expire_all()
    assert db.session.get(User, admin.id).email == "admin@acme.test"
    # A move within the authorized domains is fine.
    response = scim.patch(f"/Users/{admin.id}", [{"op": "replace", "path": "userName", "value": "boss@acme.test"}])
    assert response.status_code == 200, response.get_data(as_text=True)
    # The IdP may still deactivate the last admin, new address and all.
    response = scim.patch(f"/Users/{admin.id}", [{"op": "replace", "value": {"active": False,
                                                                            "userName": "gone@elsewhere.test"}}])
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.postgres
def test_nul_characters_are_400_not_a_503_retry(db_backend, scim):
    """PostgreSQL cannot store NUL in text: refused as bad input, never "busy; retry" (the IdP would retry forever)."""
    created = scim.post("/Users", user_body("nul@acme.test")).get_json(force=True)
    for response in (scim.post("/Users", user_body("nul2@acme.test", given="a\u0000b")),
                     scim.post("/Users", user_body("nul3@acme.test", external_id="a\u0000b")),
                     scim.post("/Users", user_body("nul4@acme.test") | {"userName": "x\u0000y"}),
                     scim.post("/Groups", {"displayName": "a\u0000b"}),
                     scim.patch(f"/Users/{created['id']}", [{"op": "replace", "path": "displayName", "value": "a\u0000"}])):
        assert_scim_error(response, 400, "invalidValue")


@pytest.mark.postgres
def test_an_address_taken_meanwhile_is_409_not_a_retry(db_backend, scim, workspace):
    """Another member gets the address between our look-up and our write: the unique index
    decides, and the IdP hears 409 uniqueness (not "busy; retry"), with nothing half written.
    (SQLite serializes writers, so the other insert can't commit in between: PostgreSQL only.)"""
    if db_backend == "sqlite":
        pytest.skip("SQLite serializes the two writers; the race needs concurrent ones")
    from sqlalchemy import event, insert
    from app.models import utcnow
    created = scim.post("/Users", user_body("ada@acme.test")).get_json(force=True)
    taken = []

    def other_member_takes_it(conn, cursor, statement, parameters, context, executemany):
        if not taken and 'FROM "user"' in statement and "taken@acme.test" in str(parameters):
            taken.append(True)
            with db.engine.begin() as other:
                other.execute(insert(User.__table__).values(
                    workspace_id=workspace.id, email="taken@acme.test", email_normalized="taken@acme.test",
                    name="Other", role="creator", status="active", source="password", session_version=1,
                    created_at=utcnow(), updated_at=utcnow()))

    event.listen(db.engine, "after_cursor_execute", other_member_takes_it)
    try:
        response = scim.patch(f"/Users/{created['id']}", [
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "taken@acme.test"}])
    finally:
        event.remove(db.engine, "after_cursor_execute", other_member_takes_it)
    assert taken, "the look-up by address never ran"
    assert_scim_error(response, 409, "uniqueness")
    db.session.expire_all()
    assert db.session.get(User, int(created["id"])).email == "ada@acme.test"
    assert not db.session.scalar(select(AuditEvent).where(AuditEvent.action == "scim.user_email_changed"))
