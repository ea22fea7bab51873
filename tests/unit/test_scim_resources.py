"""Row ↔ resource rules, projection and log masking, without a database."""
from __future__ import annotations

import json

import pytest

from app.scim.errors import ScimError
from app.scim.requestlog import mask_body
from app.scim.resources import USER_SPEC, body_to_document, parse_id, project, user_fields

ROLE = "urn:ietf:params:scim:schemas:extension:gatehouse:2.0:User"


def test_username_is_the_address_and_emails_can_move_it():
    # Only userName: it is the address.
    doc = body_to_document(USER_SPEC, {"UserName": "Ada@Acme.test", "NAME": {"GivenName": "Ada"}})
    fields = user_fields(doc)
    assert fields.email == "Ada@acme.test" and fields.user_name is None
    assert fields.given_name == "Ada" and fields.display_name == "Ada"
    # With emails, the address is the primary one, else the work one, else the first; a
    # userName that differs is kept as the IdP's userName, email-shaped or not.
    doc["emails"] = [{"value": "other@acme.test", "type": "home"}]
    fields = user_fields(doc)
    assert (fields.email, fields.user_name) == ("other@acme.test", "Ada@Acme.test")
    doc["emails"] = [{"value": "home@acme.test", "type": "home"}, {"value": "work@acme.test", "type": "work"}]
    assert user_fields(doc).email == "work@acme.test"
    doc["emails"].append({"value": "main@acme.test", "primary": True})
    assert user_fields(doc).email == "main@acme.test"
    # The same userName with a new primary address: the address moves (Entra's emails[type eq "work"].value).
    doc["emails"] = [{"value": "ada.new@acme.test", "primary": True}]
    fields = user_fields(doc, current_email="ada@acme.test")
    assert (fields.email, fields.user_name) == ("ada.new@acme.test", "Ada@Acme.test")
    # Both changed: emails win, and the same document gives the same member every time.
    doc["userName"] = "ada.un@acme.test"
    for current in ("ada@acme.test", "ada.new@acme.test"):
        for current_user_name in (None, "Ada@Acme.test", "ada.un@acme.test"):
            fields = user_fields(doc, current_email=current, current_user_name=current_user_name)
            assert (fields.email, fields.user_name) == ("ada.new@acme.test", "ada.un@acme.test")
    # userName differing only in letter case from the address is the address.
    doc["userName"] = "ADA.NEW@acme.test"
    assert user_fields(doc, current_email="ada@acme.test").user_name is None


def test_without_emails_username_moves_the_address_only_when_it_was_the_address():
    doc = {"userName": "ada.k@acme.test"}
    # No stored userName: the userName was the address (an IdP mapping only userName), so it moves.
    assert user_fields(doc, current_email="ada@acme.test", current_user_name=None).email == "ada.k@acme.test"
    # A userName kept beside the address: the address stays, the new userName is kept.
    fields = user_fields(doc, current_email="ada@acme.test", current_user_name="ada.opaque")
    assert (fields.email, fields.user_name) == ("ada@acme.test", "ada.k@acme.test")
    # A PATCH whose operations left emails alone sends none, whatever the document shows.
    doc = {"userName": "ada.k@acme.test", "emails": [{"value": "ada@acme.test", "type": "work", "primary": True}]}
    fields = user_fields(doc, current_email="ada@acme.test", current_user_name=None, emails_sent=False)
    assert (fields.email, fields.user_name) == ("ada.k@acme.test", None)
    # An opaque userName keeps the address; at creation it needs emails.
    fields = user_fields({"userName": "u123"}, current_email="ada@acme.test")
    assert (fields.email, fields.user_name) == ("ada@acme.test", "u123")
    with pytest.raises(ScimError) as info:
        user_fields({"userName": "u123"})
    assert info.value.scim_type == "invalidValue"


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
