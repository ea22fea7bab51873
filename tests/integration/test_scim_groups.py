"""SCIM Groups over HTTP: member items are validated, and one PATCH with many member
operations on a large group applies them all (RFC 7644 §3.5.2.2/3)."""
from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from app.extensions import db
from app.models import GroupMember, User, utcnow
from tests.integration.scim_helpers import assert_scim_error, scim  # noqa: F401 (fixture)


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
