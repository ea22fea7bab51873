"""Real HTTP against the app, in the order and dialect Okta and Microsoft Entra ID use."""
from __future__ import annotations

from urllib.parse import quote

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Group, GroupMember, User
from tests.integration.scim_helpers import (CORE_GROUP, CORE_USER, PATCH, ROLE_EXT, LiveScim, live_app_url,  # noqa: F401
                                            make_token)


def test_okta_sequence(live_app_url, workspace):
    okta = LiveScim(live_app_url, make_token(workspace, "Okta"), "Okta SCIM Client 1.0.0")
    # "Test API credentials" sends exactly these two.
    assert okta.send("GET", "/Users?startIndex=1&count=2").status_code == 200
    assert okta.send("GET", "/Groups?startIndex=1&count=100").status_code == 200
    # Assign: look the user up (other case), then create.
    found = okta.send("GET", "/Users?filter=" + quote('userName eq "Jane.Doe@Acme.test"') + "&startIndex=1&count=100")
    assert found.json()["totalResults"] == 0 and found.headers["Content-Type"].startswith("application/scim+json")
    body = {"schemas": [CORE_USER, ROLE_EXT], "userName": "jane.doe@acme.test",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"primary": True, "value": "jane.doe@acme.test", "type": "work"}],
            "displayName": "Jane Doe", "locale": "en-US", "externalId": "00u1abcd", "groups": [],
            "password": "Okta-generated-1!", "active": True, ROLE_EXT: {"role": "creator"}}
    created = okta.send("POST", "/Users", body)
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert created.headers["Location"].endswith(f"/scim/v2/Users/{user_id}")
    found = okta.send("GET", "/Users?filter=" + quote('userName eq "JANE.DOE@acme.test"')).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user_id
    duplicate = okta.send("POST", "/Users", body)
    assert duplicate.status_code == 409 and duplicate.json()["scimType"] == "uniqueness"
    assert duplicate.json()["status"] == "409"
    # Paging through everyone.
    for index in range(3):
        okta.send("POST", "/Users", body | {"userName": f"p{index}@acme.test", "emails": [], "externalId": None})
    first = okta.send("GET", "/Users?startIndex=1&count=2").json()
    second = okta.send("GET", "/Users?startIndex=3&count=2").json()
    third = okta.send("GET", "/Users?startIndex=5&count=2").json()
    assert first["totalResults"] == second["totalResults"] == 5
    ids = [r["id"] for page in (first, second, third) for r in page["Resources"]]
    assert len(ids) == len(set(ids)) == 5
    # Profile push (PUT, as AIW apps do) and a role change.
    put = okta.send("PUT", f"/Users/{user_id}", body | {"id": user_id, "name": {"givenName": "Janet", "familyName": "Doe"},
                                                       ROLE_EXT: {"role": "admin"}})
    assert put.status_code == 200 and put.json()["name"]["givenName"] == "Janet" and put.json()[ROLE_EXT]["role"] == "admin"
    # Deactivate (path-less), then reactivate.
    off = okta.send("PATCH", f"/Users/{user_id}", {"schemas": [PATCH],
                                                   "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert off.status_code == 200 and off.json()["active"] is False
    assert okta.send("GET", f"/Users/{user_id}").json()["active"] is False
    on = okta.send("PATCH", f"/Users/{user_id}", {"schemas": [PATCH],
                                                  "Operations": [{"op": "replace", "value": {"active": True}}]})
    assert on.json()["active"] is True
    # Group push: create with a member, add, remove, rename.
    other_id = second["Resources"][0]["id"]
    group = okta.send("POST", "/Groups", {"schemas": [CORE_GROUP], "displayName": "Okta Eng",
                                          "members": [{"value": user_id, "display": "jane.doe@acme.test"}]})
    assert group.status_code == 201, group.text
    group_id = group.json()["id"]
    add = okta.send("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": other_id, "display": "p"}]}]})
    assert sorted(m["value"] for m in add.json()["members"]) == sorted([user_id, other_id])
    remove = okta.send("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH], "Operations": [
        {"op": "remove", "path": f'members[value eq "{user_id}"]'}]})
    assert [m["value"] for m in remove.json()["members"]] == [other_id]
    rename = okta.send("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "value": {"id": group_id, "displayName": "Okta Engineering"}}]})
    assert rename.status_code == 200 and rename.json()["displayName"] == "Okta Engineering"
    listed = okta.send("GET", "/Groups?filter=" + quote('displayName eq "okta engineering"')).json()
    assert listed["totalResults"] == 1
    assert okta.send("DELETE", f"/Groups/{group_id}").status_code == 204
    assert okta.send("GET", f"/Groups/{group_id}").status_code == 404
    # What the admin sees: audited, by the token's name.
    db.session.expire_all()
    actions = set(db.session.scalars(select(AuditEvent.action).where(AuditEvent.actor_label == "SCIM: Okta")))
    assert {"scim.user_created", "member.role_changed", "member.deactivated", "member.reactivated",
            "scim.group_created", "scim.group_members_added", "scim.group_members_removed", "scim.group_renamed",
            "scim.group_deleted"} <= actions


def test_entra_sequence(live_app_url, workspace):
    entra = LiveScim(live_app_url, make_token(workspace, "Entra"), "Azure Active Directory SCIM Client")
    assert entra.send("GET", "/Users?filter=" + quote('externalId eq "a1b2"')).json()["totalResults"] == 0
    body = {"schemas": [CORE_USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "a1b2", "userName": "Sam.Lee@acme.test", "active": True, "displayName": "Sam Lee",
            "title": "Engineer", "preferredLanguage": "en-GB",
            "emails": [{"primary": True, "type": "work", "value": "Sam.Lee@acme.test"}],
            "name": {"formatted": "Sam Lee", "familyName": "Lee", "givenName": "Sam"},
            "addresses": [{"type": "work", "country": "GB", "primary": False}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}
    created = entra.send("POST", "/Users", body, content_type="application/scim+json")
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    found = entra.send("GET", "/Users?filter=" + quote('externalId eq "a1b2"')).json()
    assert [r["id"] for r in found["Resources"]] == [user_id]
    assert entra.send("GET", "/Users?filter=" + quote('externalId eq "A1B2"')).json()["totalResults"] == 0
    patched = entra.send("PATCH", f"/Users/{user_id}", {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "sam.lee2@acme.test"},
        {"op": "Replace", "path": "name.familyName", "value": "Lee-Smith"},
        {"op": "Add", "value": {"name.givenName": "Samuel", "title": "Lead",
                                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops",
                                f"{ROLE_EXT}:role": "creator"}},
    ]})
    assert patched.status_code == 200, patched.text
    got = patched.json()
    # Entra changed mail, not the UPN: the address moves, and userName stays what Entra holds.
    assert got["id"] == user_id and got["userName"] == "Sam.Lee@acme.test"
    assert got["emails"] == [{"value": "sam.lee2@acme.test", "type": "work", "primary": True}]
    assert got["name"]["givenName"] == "Samuel" and got["name"]["familyName"] == "Lee-Smith"
    assert got[ROLE_EXT]["role"] == "creator"
    by_email = entra.send("GET", "/Users?filter=" + quote('emails[type eq "work"].value eq "SAM.LEE2@acme.test"'))
    assert [r["id"] for r in by_email.json()["Resources"]] == [user_id]
    disabled = entra.send("PATCH", f"/Users/{user_id}", {"schemas": [PATCH], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]})
    assert disabled.json()["active"] is False
    filtered = entra.send("GET", "/Users?filter=" + quote('userName eq "sam.lee@acme.test"')).json()
    assert [r["id"] for r in filtered["Resources"]] == [user_id] and filtered["Resources"][0]["active"] is False
    assert entra.send("GET", "/Users?filter=" + quote('userName eq "sam.lee2@acme.test"')).json()["totalResults"] == 0
    group = entra.send("POST", "/Groups", {"schemas": [CORE_GROUP], "displayName": "Entra Group", "externalId": "g-9",
                                           "members": []}).json()
    entra.send("PATCH", f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": user_id}]}]})
    check = entra.send("GET", "/Groups?excludedAttributes=members&filter=" +
                       quote(f'id eq "{group["id"]}" and members[value eq "{user_id}"]')).json()
    assert check["totalResults"] == 1 and "members" not in check["Resources"][0]
    entra.send("PATCH", f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "Remove", "path": "members", "value": [{"value": user_id}]}]})
    assert entra.send("GET", f"/Groups/{group['id']}").json().get("members") == []
    assert entra.send("DELETE", f"/Users/{user_id}").status_code == 204
    assert entra.send("GET", f"/Users/{user_id}").status_code == 404
    db.session.expire_all()
    user = db.session.get(User, int(user_id))
    assert user.status == "deactivated" and user.email_normalized == "sam.lee2@acme.test"
    assert db.session.scalar(select(GroupMember).where(GroupMember.user_id == user.id)) is None
    assert db.session.scalar(select(Group).where(Group.external_id == "g-9")) is not None
