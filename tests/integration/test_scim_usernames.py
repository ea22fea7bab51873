"""A member's address and userName under every IdP dialect: one rule, so the same document
always gives the same member however often it is sent, and userName stays unique."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, User
from tests.integration.scim_helpers import CORE_USER, assert_scim_error, scim, user_body  # noqa: F401


def email_changes() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "scim.user_email_changed"))


def found_by(scim, expression: str) -> list[str]:
    return [r["id"] for r in scim.get("/Users", query_string={"filter": expression}).get_json(force=True)["Resources"]]


def address_of(user_id) -> str:
    db.session.expire_all()
    return db.session.get(User, int(user_id)).email


@pytest.mark.postgres
def test_an_identical_put_or_patch_keeps_the_member_as_it_is(db_backend, scim):
    """userName and the primary email differ (an Entra UPN, Okta's login): sending the same
    body again must not move the address back and forth."""
    body = {"schemas": [CORE_USER], "userName": "ada@corp.acme.test", "name": {"givenName": "Ada", "familyName": "L"},
            "emails": [{"value": "ada.lovelace@acme.test", "type": "work", "primary": True}], "active": True}
    created = scim.post("/Users", body)
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id, etag = created.get_json(force=True)["id"], created.headers["ETag"]
    okta_patch = [{"op": "replace", "value": {"userName": "ada@corp.acme.test", "emails": body["emails"]}}]
    for response in [scim.put(f"/Users/{user_id}", body) for _ in range(3)] + \
                    [scim.patch(f"/Users/{user_id}", okta_patch) for _ in range(2)]:
        assert response.status_code == 200, response.get_data(as_text=True)
        got = response.get_json(force=True)
        assert got["userName"] == "ada@corp.acme.test"
        assert got["emails"] == [{"value": "ada.lovelace@acme.test", "type": "work", "primary": True}]
        assert response.headers["ETag"] == etag
    assert address_of(user_id) == "ada.lovelace@acme.test"
    assert email_changes() == 0
    assert found_by(scim, 'userName eq "ADA@corp.acme.test"') == [user_id]
    assert found_by(scim, 'userName eq "ada.lovelace@acme.test"') == []


def test_entras_sync_loop_settles(scim):
    """Entra compares what it holds with a GET and PATCHes the differences, every cycle."""
    upn, mail = "ada@contoso.onmicrosoft.test", "ada@contoso.test"
    created = scim.post("/Users", {"schemas": [CORE_USER], "userName": upn, "externalId": "oid-1", "active": True,
                                   "emails": [{"value": mail, "type": "work", "primary": True}],
                                   "displayName": "Ada"})
    user_id = created.get_json(force=True)["id"]

    def differences(upn, mail):
        current = scim.get(f"/Users/{user_id}").get_json(force=True)
        ops = []
        if current["userName"] != upn:
            ops.append({"op": "Replace", "path": "userName", "value": upn})
        if current["emails"][0]["value"] != mail:
            ops.append({"op": "Replace", "path": 'emails[type eq "work"].value', "value": mail})
        return ops

    assert differences(upn, mail) == []
    # The mail changes in Entra: one PATCH of emails, and the next cycles find nothing to do.
    mail = "ada.lovelace@contoso.test"
    ops = differences(upn, mail)
    assert ops == [{"op": "Replace", "path": 'emails[type eq "work"].value', "value": mail}]
    assert scim.patch(f"/Users/{user_id}", ops).status_code == 200
    for _ in range(2):
        assert differences(upn, mail) == []
    # So does a new UPN.
    upn = "ada.l@contoso.onmicrosoft.test"
    assert scim.patch(f"/Users/{user_id}", differences(upn, mail)).status_code == 200
    assert differences(upn, mail) == [] and address_of(user_id) == mail
    assert email_changes() == 1


def test_okta_patch_of_username_alone_moves_the_address_that_was_the_username(scim):
    created = scim.post("/Users", user_body("ada@acme.test")).get_json(force=True)
    response = scim.patch(f"/Users/{created['id']}", [{"op": "replace", "path": "userName",
                                                       "value": "ada.king@acme.test"}])
    got = response.get_json(force=True)
    assert got["userName"] == "ada.king@acme.test" and got["emails"][0]["value"] == "ada.king@acme.test"
    response = scim.patch(f"/Users/{created['id']}", [{"op": "replace", "value": {"userName": "augusta@acme.test"}}])
    assert response.get_json(force=True)["emails"][0]["value"] == "augusta@acme.test"
    assert address_of(created["id"]) == "augusta@acme.test" and email_changes() == 2
    assert found_by(scim, 'userName eq "augusta@acme.test"') == [created["id"]]


def test_an_idp_that_sends_only_username(scim):
    created = scim.post("/Users", {"schemas": [CORE_USER], "userName": "sam@acme.test"})
    assert created.status_code == 201, created.get_data(as_text=True)
    user_id = created.get_json(force=True)["id"]
    assert created.get_json(force=True)["emails"] == [{"value": "sam@acme.test", "type": "work", "primary": True}]
    moved = scim.put(f"/Users/{user_id}", {"schemas": [CORE_USER], "userName": "samuel@acme.test"})
    assert moved.get_json(force=True)["userName"] == "samuel@acme.test"
    assert address_of(user_id) == "samuel@acme.test"
    again = scim.put(f"/Users/{user_id}", {"schemas": [CORE_USER], "userName": "samuel@acme.test"})
    assert again.headers["ETag"] == moved.headers["ETag"]
    assert found_by(scim, 'userName eq "samuel@acme.test"') == [user_id] and found_by(scim, 'userName eq "sam@acme.test"') == []
    assert email_changes() == 1


def test_adding_a_primary_email_moves_the_address_and_keeps_the_username(scim):
    created = scim.post("/Users", user_body("ada@acme.test")).get_json(force=True)
    response = scim.patch(f"/Users/{created['id']}", [{"op": "add", "path": "emails", "value": [
        {"value": "ada.new@acme.test", "type": "work", "primary": True}]}])
    got = response.get_json(force=True)
    assert got["emails"] == [{"value": "ada.new@acme.test", "type": "work", "primary": True}]
    assert got["userName"] == "ada@acme.test"  # the IdP did not change it
    assert found_by(scim, 'userName eq "ada@acme.test"') == [created["id"]]


@pytest.mark.postgres
def test_a_stored_email_shaped_username_and_another_members_address_never_share_a_username(db_backend, scim):
    # Ada: userName ada@corp.acme.test, address ada@acme.test. Bob: userName and address bob@acme.test.
    ada = scim.post("/Users", user_body("ada@acme.test") | {"userName": "ada@corp.acme.test"}).get_json(force=True)
    bob = scim.post("/Users", user_body("bob@acme.test")).get_json(force=True)
    assert ada["userName"] == "ada@corp.acme.test" and ada["emails"][0]["value"] == "ada@acme.test"

    # Someone new taking Ada's stored userName as theirs, or Bob's userName (his address) as a stored one.
    assert_scim_error(scim.post("/Users", user_body("ADA@corp.acme.test")), 409, "uniqueness")
    assert_scim_error(scim.post("/Users", user_body("carol@acme.test") | {"userName": "Bob@acme.test"}),
                      409, "uniqueness")
    # Bob, by PUT and by PATCH, taking Ada's userName (as his address, or stored beside it).
    assert_scim_error(scim.put(f"/Users/{bob['id']}", user_body("ada@corp.acme.test")), 409, "uniqueness")
    assert_scim_error(scim.put(f"/Users/{bob['id']}", user_body("bob@acme.test") | {"userName": "ada@CORP.acme.test"}),
                      409, "uniqueness")
    assert_scim_error(scim.patch(f"/Users/{bob['id']}", [{"op": "replace", "path": "userName",
                                                          "value": "ada@corp.acme.test"}]), 409, "uniqueness")
    # Ada, by PUT and by PATCH, taking Bob's userName beside her own address.
    assert_scim_error(scim.put(f"/Users/{ada['id']}", user_body("ada@acme.test") | {"userName": "bob@acme.test"}),
                      409, "uniqueness")
    assert_scim_error(scim.patch(f"/Users/{ada['id']}", [{"op": "replace", "path": "userName",
                                                          "value": "BOB@acme.test"}]), 409, "uniqueness")
    # Ada giving her address up for Bob's: the address is taken.
    assert_scim_error(scim.patch(f"/Users/{ada['id']}", [{"op": "replace", "path": 'emails[type eq "work"].value',
                                                          "value": "bob@acme.test"}]), 409, "uniqueness")

    assert found_by(scim, 'userName eq "ada@corp.acme.test"') == [ada["id"]]
    assert found_by(scim, 'userName eq "bob@acme.test"') == [bob["id"]]
    assert address_of(ada["id"]) == "ada@acme.test" and address_of(bob["id"]) == "bob@acme.test"
    # An address may equal another member's userName when that member's userName is not its
    # address: each of userName and address is unique on its own.
    dora = scim.post("/Users", user_body("ada@corp.acme.test") | {"userName": "dora"})
    assert dora.status_code == 201, dora.get_data(as_text=True)
    assert found_by(scim, 'userName eq "ada@corp.acme.test"') == [ada["id"]]
    assert found_by(scim, 'emails.value eq "ada@corp.acme.test"') == [dora.get_json(force=True)["id"]]


@pytest.mark.postgres
def test_a_post_relinks_a_member_the_idp_deleted_by_username_or_address(db_backend, scim):
    # By address and externalId: the IdP deleted Dan and brings him back under another userName.
    dan = scim.post("/Users", user_body("dan@acme.test", external_id="oid-dan") | {"userName": "dan.opaque"}
                    ).get_json(force=True)
    assert scim.delete(f"/Users/{dan['id']}").status_code == 204
    # The address alone is not Dan: someone else given his recycled address doesn't get his account.
    for stranger in (user_body("dan@acme.test") | {"userName": "dan.new"},
                     user_body("dan@acme.test", external_id="oid-other") | {"userName": "dan.new"}):
        body = assert_scim_error(scim.post("/Users", stranger), 409, "uniqueness")
        assert "not linked to them" in body["detail"]
    again = scim.post("/Users", user_body("dan@acme.test", external_id="oid-dan") | {"userName": "dan.new"})
    assert again.status_code == 201, again.get_data(as_text=True)
    assert again.get_json(force=True)["id"] == dan["id"] and again.get_json(force=True)["userName"] == "dan.new"
    assert found_by(scim, 'userName eq "dan.new"') == [dan["id"]] and found_by(scim, 'userName eq "dan.opaque"') == []
    # By an email-shaped stored userName, with a new address.
    eve = scim.post("/Users", user_body("eve@acme.test") | {"userName": "eve@corp.acme.test"}).get_json(force=True)
    scim.delete(f"/Users/{eve['id']}")
    again = scim.post("/Users", user_body("eve@corp.acme.test"))
    assert again.status_code == 201 and again.get_json(force=True)["id"] == eve["id"]
    assert address_of(eve["id"]) == "eve@corp.acme.test"
    assert found_by(scim, 'userName eq "eve@corp.acme.test"') == [eve["id"]]


@pytest.mark.postgres
def test_a_deleted_members_address_or_username_is_409_when_someone_else_holds_the_other(db_backend, scim):
    fay = scim.post("/Users", user_body("fay@acme.test")).get_json(force=True)
    scim.delete(f"/Users/{fay['id']}")
    gus = scim.post("/Users", user_body("gus@acme.test")).get_json(force=True)
    # userName of a visible member, address of a deleted one.
    assert_scim_error(scim.post("/Users", user_body("fay@acme.test") | {"userName": "gus@acme.test"}),
                      409, "uniqueness")
    # Two deleted members: one holds the userName, the other the address.
    hal = scim.post("/Users", user_body("hal@acme.test") | {"userName": "hal.opaque"}).get_json(force=True)
    scim.delete(f"/Users/{hal['id']}")
    body = assert_scim_error(scim.post("/Users", user_body("fay@acme.test") | {"userName": "hal.opaque"}),
                             409, "uniqueness")
    assert "two members the IdP deleted" in body["detail"]
    # A visible member moving onto a deleted member's address is told why.
    body = assert_scim_error(scim.patch(f"/Users/{gus['id']}", [{"op": "replace", "path": "userName",
                                                                  "value": "fay@acme.test"}]), 409, "uniqueness")
    assert "deleted earlier" in body["detail"]
    assert address_of(gus["id"]) == "gus@acme.test"
