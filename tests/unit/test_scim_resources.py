"""Row ↔ resource rules, projection and log masking, without a database."""
from __future__ import annotations

import json

import pytest

from app.scim.errors import ScimError
from app.scim.requestlog import mask_body
from app.scim.resources import USER_SPEC, body_to_document, parse_id, project, user_fields

ROLE = "urn:ietf:params:scim:schemas:extension:gatehouse:2.0:User"


def test_username_is_the_address_and_emails_can_move_it():
    doc = body_to_document(USER_SPEC, {"UserName": "Ada@Acme.test", "NAME": {"GivenName": "Ada"},
                                       "emails": [{"value": "other@acme.test", "type": "home"}]})
    fields = user_fields(doc)
    assert fields.email == "Ada@acme.test" and fields.given_name == "Ada" and fields.display_name == "Ada"
    # The same userName with a new primary address: the address moves (Entra's emails[type eq "work"].value).
    doc["emails"] = [{"value": "ada.new@acme.test", "primary": True}]
    assert user_fields(doc, current_email="ada@acme.test").email == "ada.new@acme.test"
    # Both changed: userName wins.
    doc["userName"] = "ada.un@acme.test"
    assert user_fields(doc, current_email="ada@acme.test").email == "ada.un@acme.test"


@pytest.mark.parametrize("role, expected", [("admin", "admin"), (" Creator_Lite ", "creator_lite"), (None, None)])
def test_roles(role, expected):
    doc = {"userName": "a@acme.test"}
    if role is not None:
        doc[ROLE] = {"role": role}
    assert user_fields(doc).role == expected


def test_unknown_role_is_invalid_value():
    with pytest.raises(ScimError) as info:
        user_fields({"userName": "a@acme.test", ROLE: {"role": "owner"}})
    assert info.value.scim_type == "invalidValue" and "admin, creator, creator_lite" in info.value.detail


def test_ignored_attributes_are_dropped_and_unknown_ones_refused():
    doc = body_to_document(USER_SPEC, {"userName": "a@acme.test", "title": "CTO", "phoneNumbers": [{"value": "1"}],
                                       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"x": 1},
                                       "id": "9", "meta": {}, "groups": [{"value": "1"}], "password": "p"})
    assert doc == {"userName": "a@acme.test"}
    with pytest.raises(ScimError) as info:
        body_to_document(USER_SPEC, {"userName": "a@acme.test", "shoeSize": 42})
    assert info.value.scim_type == "invalidSyntax"


def test_projection():
    resource = {"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "g", "familyName": "f"},
                "emails": [{"value": "v", "type": "work"}], ROLE: {"role": "admin"}, "meta": {"version": "v"}}
    assert project(resource, "name.familyName,emails.value", None) == {
        "schemas": ["s"], "id": "1", "name": {"familyName": "f"}, "emails": [{"value": "v"}]}
    assert project(resource, f"{ROLE}:role", None) == {"schemas": ["s"], "id": "1", ROLE: {"role": "admin"}}
    assert project(resource, None, "name.givenName,meta,id") == {
        "schemas": ["s"], "id": "1", "userName": "u", "name": {"familyName": "f"},
        "emails": [{"value": "v", "type": "work"}], ROLE: {"role": "admin"}}


@pytest.mark.parametrize("value, expected", [("12", 12), (12, 12), (" 7 ", 7), ("0", None), ("-1", None),
                                             ("1e3", None), ("9" * 25, None), (True, None), (None, None)])
def test_parse_id(value, expected):
    assert parse_id(value) == expected


def test_log_bodies_are_masked_and_short():
    body = json.dumps({"userName": "a@acme.test", "password": "hunter2", "Operations": [
        {"op": "replace", "path": "password", "value": "hunter3"}], "client_secret": "s", "x": "y" * 2000}).encode()
    masked = mask_body(body)
    assert "hunter2" not in masked and "hunter3" not in masked and '"client_secret":"***"' in masked
    assert len(masked) <= 500 and masked.endswith("…")
    assert mask_body(b"not json") == "<8 bytes, not JSON>" and mask_body(b"") is None
