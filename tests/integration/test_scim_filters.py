"""SCIM filters translated to SQL: same answers on SQLite and PostgreSQL, 400 for anything unknown."""
from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest

from tests.integration.scim_helpers import ROLE_EXT, ScimClient, assert_scim_error, make_token, user_body

pytestmark = pytest.mark.postgres


@pytest.fixture
def seeded(db_backend, client, workspace):
    scim = ScimClient(client, make_token(workspace))
    people = [("Alice.Smith@Acme.test", "Alice", "Smith", "ext-A", "admin"),
              ("bob_jones@acme.test", "Bob", "Jones", "ext-b", "creator"),
              ("carol%x@acme.test", "Carol", "O'Neil", "EXT-C", None),
              ("dave@other-corp.test", "Dave", None, None, None)]
    ids = {}
    for email, given, family, ext, role in people:
        body = user_body(email, given=given, family=family or "", role=role, external_id=ext)
        if family is None:
            body["name"] = {"givenName": given}
        response = scim.post("/Users", body)
        assert response.status_code == 201, response.get_data(as_text=True)
        ids[given] = response.get_json(force=True)["id"]
    scim.patch(f"/Users/{ids['Dave']}", [{"op": "replace", "value": {"active": False}}])
    scim.ids = ids
    return scim


def names(scim, expression, **params):
    query = "&".join([f"filter={quote(expression)}"] + [f"{k}={v}" for k, v in params.items()])
    response = scim.get(f"/Users?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json(force=True)
    got = sorted(r.get("name", {}).get("givenName", r["userName"]) for r in body["Resources"])
    assert body["totalResults"] >= len(got)
    return got


@pytest.mark.parametrize("expression, expected", [
    ('userName eq "alice.smith@acme.test"', ["Alice"]),
    ('USERNAME EQ "ALICE.SMITH@ACME.TEST"', ["Alice"]),
    ('userName ne "alice.smith@acme.test"', ["Bob", "Carol", "Dave", "admin@acme.test"]),
    ('userName co "_jones"', ["Bob"]),
    ('userName co "%"', ["Carol"]),
    ('userName sw "ALICE"', ["Alice"]),
    ('userName ew "@ACME.test"', ["Alice", "Bob", "Carol", "admin@acme.test"]),
    ('userName gt "c"', ["Carol", "Dave"]),
    ('externalId eq "ext-A"', ["Alice"]),
    ('externalId eq "ext-a"', []),  # caseExact
    ('externalId sw "EXT"', ["Carol"]),
    ('externalId co "xt-"', ["Alice", "Bob"]),
    ('externalId ew "-b"', ["Bob"]),
    ('externalId pr', ["Alice", "Bob", "Carol"]),
    ('not (externalId pr)', ["Dave", "admin@acme.test"]),
    ('name.givenName eq "bob"', ["Bob"]),
    ('name.familyName co "\'ne"', ["Carol"]),
    ('name.familyName pr and active eq true', ["Alice", "Bob", "Carol"]),
    ('active eq false', ["Dave"]),
    ('emails[type eq "work"].value eq "BOB_JONES@acme.test"', ["Bob"]),
    ('emails[type eq "work" and value co "smith"]', ["Alice"]),
    ('emails[type eq "home"]', []),
    ('emails.value sw "dave"', ["Dave"]),
    ('emails co "carol"', ["Carol"]),
    (f'{ROLE_EXT}:role eq "creator"', ["Bob"]),
    ('userName eq "bob_jones@acme.test" or name.givenName eq "Carol"', ["Bob", "Carol"]),
    ('(userName sw "a" or userName sw "b") and not (name.givenName eq "Alice")', ["Bob", "admin@acme.test"]),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "dave@other-corp.test"', ["Dave"]),
])
def test_user_filters(seeded, expression, expected):
    assert names(seeded, expression) == expected


def test_letters_beyond_ascii_compare_without_case(db_backend, client, workspace):
    """SQLite's own lower() folds ASCII only; the app's folds every letter, as PostgreSQL's does."""
    scim = ScimClient(client, make_token(workspace))
    body = user_body("orjan@acme.test", given="Ørjan", family="Ærø") | {"displayName": "Ærø Ørjan"}
    assert scim.post("/Users", body).status_code == 201
    scim.post("/Users", user_body("orvar@acme.test", given="Orvar", family="Aer"))
    for expression in ('name.givenName eq "ørjan"', 'displayName sw "ær"', 'name.familyName eq "ÆRØ"',
                       'displayName co "Ø ØR"', 'name.givenName ne "ØRJAN" and userName sw "o"'):
        expected = ["Orvar"] if " ne " in expression else ["Ørjan"]
        assert names(scim, expression) == expected, expression


def test_id_and_meta_filters(seeded):
    bob = seeded.ids["Bob"]
    assert names(seeded, f'id eq "{bob}"') == ["Bob"]
    assert names(seeded, 'id eq "not-an-id"') == []
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert names(seeded, f'meta.lastModified gt "{future}"') == []
    assert len(names(seeded, 'meta.lastModified gt "2020-01-01T00:00:00Z"')) == 5
    created = seeded.get(f"/Users/{bob}").get_json(force=True)["meta"]["created"]
    assert "Bob" in names(seeded, f'meta.created le "{created}"')


@pytest.mark.parametrize("expression", [
    'bogus eq "x"', 'name.bogus eq "x"', 'userName zz "x"', 'userName eq', 'userName eq "x" and', '(userName eq "x"',
    'title eq "x"', 'name.formatted eq "x"', 'userName eq 42', 'active eq "yes"', 'active gt true',
    'meta.lastModified gt "yesterday"', 'meta.created co "2020"', 'urn:example:x:1.0:User:role eq "a"',
    'name eq "x"', 'displayName[value eq "x"]', 'id gt "5"', '"x" eq userName', 'userName eq "x" xor active eq true',
    'meta.created gt "9999-12-31T23:59:59-23:00"', 'meta.lastModified lt "0001-01-01T00:00:00+23:59"',  # not in UTC's range
])
def test_bad_filters_are_400_invalid_filter(seeded, expression):
    assert_scim_error(seeded.get(f"/Users?filter={quote(expression)}"), 400, "invalidFilter")


def test_paging_is_stable_with_right_totals(seeded):
    seen, start = [], 1
    while True:
        body = seeded.get(f"/Users?startIndex={start}&count=2").get_json(force=True)
        assert body["totalResults"] == 5 and body["startIndex"] == start
        if not body["Resources"]:
            break
        assert body["itemsPerPage"] == len(body["Resources"]) <= 2
        seen += [r["id"] for r in body["Resources"]]
        start += 2
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen, key=int)
    assert seeded.get("/Users?count=0").get_json(force=True) | {"Resources": None} == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 5, "startIndex": 1,
        "itemsPerPage": 0, "Resources": None}
    body = seeded.get("/Users?startIndex=0&count=1000").get_json(force=True)
    assert body["startIndex"] == 1 and len(body["Resources"]) == 5
    assert_scim_error(seeded.get("/Users?count=abc"), 400, "invalidValue")


def test_group_filters(seeded):
    bob, carol = seeded.ids["Bob"], seeded.ids["Carol"]
    eng = seeded.post("/Groups", {"displayName": "Engineering", "externalId": "G-1",
                                  "members": [{"value": bob}]}).get_json(force=True)
    seeded.post("/Groups", {"displayName": "Sales_Team", "members": [{"value": carol}]})

    def group_names(expression):
        body = seeded.get(f"/Groups?filter={quote(expression)}&excludedAttributes=members").get_json(force=True)
        assert all("members" not in r for r in body["Resources"])
        return sorted(r["displayName"] for r in body["Resources"])

    assert group_names('displayName eq "engineering"') == ["Engineering"]
    assert group_names('displayName co "_"') == ["Sales_Team"]
    assert group_names('externalId eq "G-1"') == ["Engineering"]
    assert group_names(f'members[value eq "{bob}"]') == ["Engineering"]
    assert group_names(f'id eq "{eng["id"]}" and members[value eq "{carol}"]') == []
    assert group_names(f'members.value eq "{carol}"') == ["Sales_Team"]
    assert_scim_error(seeded.get(f"/Groups?filter={quote('bogus eq 1')}"), 400, "invalidFilter")
    assert names(seeded, f'groups[value eq "{eng["id"]}"]') == ["Bob"]
