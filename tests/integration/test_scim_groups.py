"""SCIM Groups over HTTP: member items are validated, one PATCH with many member
operations on a large group applies them all (RFC 7644 §3.5.2.2/3), and a group's
version moves whenever its members do."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert, select

from app.extensions import db
from app.models import GroupMember, User, utcnow
from tests.integration.scim_helpers import assert_scim_error, scim, user_body  # noqa: F401 (fixture)


@pytest.mark.parametrize("members", [[None], ["5"], [5], [[]], [{}], [{"value": None}], [{"display": "x"}], {}])
def test_member_items_that_are_not_a_user_reference_are_400(scim, members):
    assert_scim_error(scim.post("/Groups", {"displayName": "Team", "members": members}), 400, "invalidValue")
    group = scim.post("/Groups", {"displayName": "Kept"}).get_json(force=True)
    assert_scim_error(scim.put(f"/Groups/{group['id']}", {"displayName": "Kept", "members": members}),
                      400, "invalidValue")
    assert scim.get("/Groups?filter=displayName eq \"Team\"").get_json(force=True)["totalResults"] == 0


def _users(workspace, count: int) -> list[int]:
    now = utcnow()
    db.session.execute(insert(User), [
        {"workspace_id": workspace.id, "email": f"u{i}@acme.test", "email_normalized": f"u{i}@acme.test", "name": "",
         "role": "creator", "status": "active", "source": "scim", "created_at": now, "updated_at": now,
         "session_version": 1} for i in range(count)])
    db.session.commit()
    return list(db.session.scalars(select(User.id).where(User.workspace_id == workspace.id,
                                                         User.email_normalized.like("u%")).order_by(User.id)))


@pytest.mark.postgres
def test_a_thousand_member_operations_on_a_large_group(db_backend, scim, workspace):
    """Okta and Entra send a change per member; each one is a look-up, and all of them apply."""
    ids = _users(workspace, 6000)
    group = scim.post("/Groups", {"displayName": "Everyone", "members": [{"value": str(i)} for i in ids[:5000]]})
    assert group.status_code == 201, group.get_data(as_text=True)[:300]
    path = f"/Groups/{group.get_json(force=True)['id']}"
    removed, added, readded = ids[:400], ids[5000:5400], ids[:100]
    operations = ([{"op": "remove", "path": f'members[value eq "{i}"]'} for i in removed[:300]]
                  + [{"op": "Remove", "path": "members", "value": [{"value": str(i)} for i in removed[300:]]}]
                  + [{"op": "add", "path": "members", "value": [{"value": str(i)}]} for i in added[:299]]
                  + [{"op": "Add", "path": "members", "value": [{"value": str(i)} for i in added[299:]]}]
                  + [{"op": "add", "path": "members", "value": [{"value": str(i)}]} for i in readded]
                  + [{"op": "remove", "path": 'members[value eq "99999999"]'}]  # no such member: nothing happens
                  + [{"op": "add", "path": f'members[value eq "{ids[5999]}"]', "value": {}}])  # none matches: added
    assert len(operations) <= 1000
    response = scim.patch(path, operations, query_string={"excludedAttributes": "members"})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert "members" not in response.get_json(force=True)
    expected = (set(ids[:5000]) - set(removed)) | set(added) | set(readded) | {ids[5999]}
    db.session.expire_all()
    stored = set(db.session.scalars(select(GroupMember.user_id).where(GroupMember.group_id == int(path.split("/")[-1]))))
    assert stored == expected
    listed = scim.get(path).get_json(force=True)["members"]
    assert [m["value"] for m in listed] == [str(i) for i in sorted(expected)]


def _version_and_members(scim, group_id: str) -> tuple[str, dt.datetime, list[str]]:
    response = scim.get(f"/Groups/{group_id}")
    body = response.get_json(force=True)
    assert response.headers["ETag"] == body["meta"]["version"]
    return (body["meta"]["version"], dt.datetime.fromisoformat(body["meta"]["lastModified"].replace("Z", "+00:00")),
            [m["value"] for m in body["members"]])


def _stale_if_match_is_412(scim, group_id: str, version: str) -> None:
    rename = {"op": "replace", "path": "displayName", "value": "Renamed"}
    assert_scim_error(scim.patch(f"/Groups/{group_id}", [rename], headers={"If-Match": version}), 412)
    assert scim.get(f"/Groups/{group_id}").get_json(force=True)["displayName"] != "Renamed"


@pytest.mark.postgres
def test_a_member_deleted_by_the_idp_moves_the_version_of_their_groups(db_backend, scim):
    leaver = scim.post("/Users", user_body("leaver@acme.test")).get_json(force=True)["id"]
    stayer = scim.post("/Users", user_body("stayer@acme.test")).get_json(force=True)["id"]
    groups = [scim.post("/Groups", {"displayName": name, "members": [{"value": leaver}, {"value": stayer}]}
                        ).get_json(force=True)["id"] for name in ("Eng", "Ops")]
    other = scim.post("/Groups", {"displayName": "Sales", "members": [{"value": stayer}]}).get_json(force=True)["id"]
    before = {g: _version_and_members(scim, g) for g in groups + [other]}
    assert scim.delete(f"/Users/{leaver}").status_code == 204
    for group_id in groups:
        version, last_modified, members = _version_and_members(scim, group_id)
        assert members == [stayer]
        assert version != before[group_id][0] and last_modified > before[group_id][1]
        _stale_if_match_is_412(scim, group_id, before[group_id][0])
    assert _version_and_members(scim, other) == before[other]  # not theirs: untouched


@pytest.mark.postgres
def test_a_purged_member_moves_the_version_of_their_groups(db_backend, scim, admin_client, jobs):
    leaver = scim.post("/Users", user_body("leaver@acme.test")).get_json(force=True)["id"]
    group_id = scim.post("/Groups", {"displayName": "Eng", "members": [{"value": leaver}]}).get_json(force=True)["id"]
    # Deactivated (not deleted) by the IdP: still in the group until an admin deletes them permanently.
    assert scim.patch(f"/Users/{leaver}", [{"op": "replace", "path": "active", "value": False}]).status_code == 200
    version, last_modified, members = _version_and_members(scim, group_id)
    assert members == [leaver]
    assert admin_client.post(f"/settings/members/{leaver}/delete", data={"confirm": "y"}).status_code == 303
    jobs()
    assert db.session.get(User, int(leaver)) is None
    after, after_modified, members = _version_and_members(scim, group_id)
    assert members == [] and after != version and after_modified > last_modified
    _stale_if_match_is_412(scim, group_id, version)
