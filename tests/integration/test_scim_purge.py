"""The SCIM purge steps: a deleted user's log entries, group memberships and detachment go,
a batch at a time, idempotently; other users' traces stay."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.members.purge import purge_steps
from app.models import GroupMember, ScimDetachedUser, ScimRequestLog, User
from tests.integration.scim_helpers import scim, user_body  # noqa: F401


def count(model, **where):
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return db.session.scalar(query)


def test_purge_steps_remove_scim_traces_in_batches(scim, workspace):
    leaver = scim.post("/Users", user_body("leaver@acme.test")).get_json(force=True)
    stayer = scim.post("/Users", user_body("stayer@acme.test")).get_json(force=True)
    for name in ("A", "B", "C"):
        scim.post("/Groups", {"displayName": name, "members": [{"value": leaver["id"]}, {"value": stayer["id"]}]})
    scim.get('/Users?filter=userName eq "leaver@acme.test"')  # names them before any id: found by address
    for _ in range(3):
        scim.get(f"/Users/{leaver['id']}")
    leaver_id, stayer_id = int(leaver["id"]), int(stayer["id"])
    steps = purge_steps()
    assert {"scim_request_log", "scim_group_memberships", "scim_detachment"} <= set(steps)

    assert steps["scim_group_memberships"](workspace.id, leaver_id, 2) == 2  # a batch at most
    assert steps["scim_group_memberships"](workspace.id, leaver_id, 2) == 1
    assert steps["scim_group_memberships"](workspace.id, leaver_id, 2) == 0  # idempotent: nothing left
    db.session.commit()
    assert count(GroupMember, user_id=leaver_id) == 0 and count(GroupMember, user_id=stayer_id) == 3

    before_other = count(ScimRequestLog) - count(ScimRequestLog, user_id=leaver_id)
    removed = 0
    while (batch := steps["scim_request_log"](workspace.id, leaver_id, 2)):
        assert batch <= 2
        removed += batch
    db.session.commit()
    remaining = db.session.scalars(select(ScimRequestLog.path)).all()
    assert removed >= 5 and not any("leaver@acme.test" in p for p in remaining)
    assert count(ScimRequestLog, user_id=leaver_id) == 0
    assert count(ScimRequestLog) >= before_other - 2  # the stayer's and the group requests stay (bar the filter)

    scim.delete(f"/Users/{leaver_id}")
    assert count(ScimDetachedUser, user_id=leaver_id) == 1
    assert steps["scim_detachment"](workspace.id, leaver_id, 10) == 1
    assert steps["scim_detachment"](workspace.id, leaver_id, 10) == 0
    # Another workspace's id never matches.
    assert steps["scim_group_memberships"](workspace.id + 1000, stayer_id, 10) == 0


def test_purge_removes_a_stored_user_name_last(scim, workspace, admin_client, jobs):
    """The stored userName outlives every step (the final pass finds log entries written meanwhile
    by it) and goes with the user row."""
    from app.models import ScimUserName
    created = scim.post("/Users", user_body("named@acme.test") | {"userName": "named.one"}).get_json(force=True)
    user_id = int(created["id"])
    for step in purge_steps().values():
        while step(workspace.id, user_id, 10):
            pass
    assert count(ScimUserName, user_id=user_id) == 1
    scim.patch(f"/Users/{user_id}", [{"op": "replace", "path": "active", "value": False}])
    assert admin_client.post(f"/settings/members/{user_id}/delete", data={"confirm": "y"}).status_code == 303
    jobs()
    db.session.expire_all()
    assert db.session.get(User, user_id) is None and count(ScimUserName, user_id=user_id) == 0


def test_log_purge_leaves_entries_naming_another_member_whose_address_contains_theirs(scim, workspace):
    """Purging lee@acme.test must not delete the log of ada.lee@acme.test or of lee@acme.test.example."""
    leaver = scim.post("/Users", user_body("lee@acme.test")).get_json(force=True)
    scim.post("/Users", user_body("ada.lee@acme.test"))
    scim.post("/Users", user_body("lee@acme.test.example"))
    scim.get('/Users?filter=userName eq "ada.lee@acme.test"')
    scim.get('/Users?filter=userName eq "lee@acme.test"')
    while purge_steps()["scim_request_log"](workspace.id, int(leaver["id"]), 100):
        pass
    db.session.commit()
    remaining = [f"{r.path} {r.body}" for r in db.session.scalars(select(ScimRequestLog))]
    assert not any('"lee@acme.test"' in entry for entry in remaining)
    assert len([e for e in remaining if "ada.lee@acme.test" in e]) == 2  # its POST and its filter
    assert len([e for e in remaining if "lee@acme.test.example" in e]) == 1


@pytest.mark.postgres
def test_deleting_a_member_removes_log_entries_naming_them_by_user_name_or_external_id(db_backend, scim, admin_client,
                                                                                        jobs):
    """Entra looks a user up by UPN (and Okta by externalId) before creating them: entries with no
    user id, naming them only by what the IdP calls them."""
    upn = "Ada.Lovelace@corp.onmicrosoft.com"
    for lookup in (f'userName eq "{upn}"', 'externalId eq "Oid-Ada"', 'userName eq "ada.lovelace.example"'):
        assert scim.get("/Users", query_string={"filter": lookup}).get_json(force=True)["totalResults"] == 0
    ada = scim.post("/Users", user_body("ada@acme.test", external_id="Oid-Ada") | {"userName": upn}
                    ).get_json(force=True)
    scim.post("/Users", user_body("ada.lovelace@acme.test", external_id="Oid-Ada-2")
              | {"userName": "ada.lovelace.example"})
    assert scim.patch(f"/Users/{ada['id']}", [{"op": "replace", "path": "active", "value": False}]).status_code == 200
    assert admin_client.post(f"/settings/members/{ada['id']}/delete", data={"confirm": "y"}).status_code == 303
    jobs()
    db.session.expire_all()
    assert db.session.get(User, int(ada["id"])) is None
    remaining = [f"{r.method} {r.path} {r.body}" for r in db.session.scalars(select(ScimRequestLog))]
    assert not [e for e in remaining if "onmicrosoft" in e.lower() or '"oid-ada"' in e.lower()]
    # Another member's entries stay: their lookup and their create.
    assert len([e for e in remaining if "ada.lovelace.example" in e]) == 2


def test_an_external_id_equal_to_another_members_id_purges_only_entries_about_them(scim, workspace):
    """An externalId such as an employee number "2" is also member 2's id in a group's member list:
    matched only where it stands as externalId (a body, a PATCH, a filter)."""
    stayer = scim.post("/Users", user_body("stayer@acme.test")).get_json(force=True)
    leaver = scim.post("/Users", user_body("leaver@acme.test", external_id=stayer["id"])).get_json(force=True)
    group = scim.post("/Groups", {"displayName": "Eng", "members": []}).get_json(force=True)
    scim.patch(f"/Groups/{group['id']}", [{"op": "add", "path": "members", "value": [{"value": stayer["id"]}]}])
    scim.get("/Users", query_string={"filter": f'externalId eq "{stayer["id"]}"'})  # Okta's look-up of the leaver
    db.session.commit()
    group_patch = f"/scim/v2/Groups/{group['id']}"
    assert count(ScimRequestLog, path=group_patch, method="PATCH") == 1
    while purge_steps()["scim_request_log"](workspace.id, int(leaver["id"]), 100):
        pass
    db.session.commit()
    assert count(ScimRequestLog, path=group_patch, method="PATCH") == 1  # the stayer's membership stays logged
    remaining = " ".join(f"{r.path} {r.body}" for r in db.session.scalars(select(ScimRequestLog)))
    assert "leaver@acme.test" not in remaining and f'externalId eq "{stayer["id"]}"' not in remaining


def test_look_ups_by_post_search_are_purged_too(scim, workspace):
    """POST /Users/.search carries its filter inside a JSON string, its quotes escaped."""
    search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
    for lookup in ('externalId eq "Oid-Leaver"', 'userName eq "leaver@acme.test"', 'userName eq "Leaver.UPN@corp.test"'):
        found = scim.post("/Users/.search", {"schemas": [search], "filter": lookup})
        assert found.status_code == 200 and found.get_json(force=True)["totalResults"] == 0
    scim.post("/Users/.search", {"schemas": [search], "filter": 'externalId eq "Oid-Stayer"'})
    leaver = scim.post("/Users", user_body("leaver@acme.test", external_id="Oid-Leaver")
                       | {"userName": "Leaver.UPN@corp.test"}).get_json(force=True)
    db.session.commit()
    while purge_steps()["scim_request_log"](workspace.id, int(leaver["id"]), 100):
        pass
    db.session.commit()
    remaining = [f"{r.path} {r.body}".lower() for r in db.session.scalars(select(ScimRequestLog))]
    assert not [e for e in remaining if "oid-leaver" in e or "leaver@acme.test" in e or "leaver.upn" in e]
    assert [e for e in remaining if "oid-stayer" in e]  # someone else's look-up stays
