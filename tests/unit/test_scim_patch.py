"""PATCH on resource documents: RFC 7644 §3.5.2 and the dialects Okta and Entra send."""
from __future__ import annotations

import pytest

from app.scim.errors import ScimError
from app.scim.patch import apply_patch, parse_operations
from app.scim.resources import GROUP_SPEC, USER_SPEC, user_fields

ROLE = "urn:ietf:params:scim:schemas:extension:gatehouse:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def user_doc():
    return {"userName": "ada@acme.test", "emails": [{"value": "ada@acme.test", "type": "work", "primary": True}],
            "active": True, "name": {"givenName": "Ada", "familyName": "Lovelace"}, "displayName": "Ada Lovelace",
            ROLE: {"role": "creator"}}


def patch(doc, *operations, spec=USER_SPEC):
    return apply_patch(spec, doc, parse_operations({"schemas": [PATCH], "Operations": list(operations)}))


def test_okta_pathless_replace_active_false():
    doc = patch(user_doc(), {"op": "replace", "value": {"active": False}})
    assert doc["active"] is False and doc["userName"] == "ada@acme.test"


@pytest.mark.parametrize("raw", ["False", "false", "FALSE"])
def test_entra_capitalised_op_and_string_boolean(raw):
    doc = patch(user_doc(), {"op": "Replace", "path": "active", "value": raw})
    assert doc["active"] is False


def test_entra_dotted_keys_and_urn_keys_in_pathless_value():
    doc = patch(user_doc(), {"op": "Add", "value": {"name.givenName": "Augusta", "name.familyName": "King",
                                                    f"{ROLE}:role": "admin", "title": "Countess"}})
    assert doc["name"] == {"givenName": "Augusta", "familyName": "King"}
    assert doc[ROLE]["role"] == "admin" and "title" not in doc


def test_extension_object_in_pathless_value():
    doc = patch(user_doc(), {"op": "replace", "value": {ROLE: {"role": "creator_lite"}}})
    assert doc[ROLE] == {"role": "creator_lite"}


def test_entra_emails_work_value_replaces_the_address():
    doc = patch(user_doc(), {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "ada.k@acme.test"})
    assert doc["emails"][0]["value"] == "ada.k@acme.test"
    fields = user_fields(doc, current_email="ada@acme.test")
    assert fields.email == "ada.k@acme.test"


def test_value_filter_without_match_adds_a_value():
    doc = user_doc()
    doc["emails"] = []
    doc = patch(doc, {"op": "add", "path": 'emails[type eq "work"].value', "value": "new@acme.test"})
    assert doc["emails"] == [{"type": "work", "value": "new@acme.test"}]


def test_remove_with_path_and_complex_merge():
    doc = patch(user_doc(), {"op": "remove", "path": "name.familyName"},
                {"op": "replace", "path": "name", "value": {"givenName": "A."}})
    assert doc["name"] == {"givenName": "A."}


def test_group_members_add_remove_and_filters():
    doc = {"displayName": "Eng", "members": [{"value": "1"}, {"value": "2"}]}
    doc = patch(doc, {"op": "add", "path": "members", "value": [{"value": "3", "display": "c"}, {"value": "2"}]},
                spec=GROUP_SPEC)
    assert [m["value"] for m in doc["members"]] == ["1", "2", "3"]
    doc = patch(doc, {"op": "remove", "path": 'members[value eq "2"]'}, spec=GROUP_SPEC)
    assert [m["value"] for m in doc["members"]] == ["1", "3"]
    doc = patch(doc, {"op": "Remove", "path": "members", "value": [{"value": "1"}]}, spec=GROUP_SPEC)
    assert [m["value"] for m in doc["members"]] == ["3"]
    doc = patch(doc, {"op": "remove", "path": 'members[value eq "404"]'}, spec=GROUP_SPEC)  # idempotent
    assert [m["value"] for m in doc["members"]] == ["3"]
    doc = patch(doc, {"op": "replace", "value": {"id": "7", "displayName": "Engineering"}}, spec=GROUP_SPEC)
    assert doc["displayName"] == "Engineering"
    doc = patch(doc, {"op": "replace", "path": "members", "value": []}, spec=GROUP_SPEC)
    assert doc["members"] == []


def test_ignored_and_readonly_attributes():
    doc = patch(user_doc(), {"op": "add", "path": "phoneNumbers[type eq \"work\"].value", "value": "555"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                 "value": "R&D"}, {"op": "replace", "path": "password", "value": "x"})
    assert doc == user_doc()


@pytest.mark.parametrize("body, scim_type", [
    ({"Operations": [{"op": "replace", "value": {"active": False}}]}, None),  # schemas may be omitted
    ({"schemas": ["urn:wrong"], "Operations": [{"op": "add", "value": {}}]}, "invalidSyntax"),
    ({"schemas": [PATCH]}, "invalidSyntax"),
    ({"schemas": [PATCH], "Operations": []}, "invalidSyntax"),
    ({"schemas": [PATCH], "Operations": ["x"]}, "invalidSyntax"),
    ({"schemas": [PATCH], "Operations": [{"op": "move", "path": "x", "value": 1}]}, "invalidSyntax"),
    ({"schemas": [PATCH], "Operations": [{"op": "remove"}]}, "noTarget"),
    ({"schemas": [PATCH], "Operations": [{"op": "add", "path": "userName"}]}, "invalidValue"),
    ({"schemas": [PATCH], "Operations": [{"op": "add", "path": 5, "value": 1}]}, "invalidPath"),
    ({"schemas": [PATCH], "Operations": [{"op": "add"}] * 1001}, "tooMany"),
])
def test_envelope_errors(body, scim_type):
    if scim_type is None:
        assert parse_operations(body) == [("replace", None, {"active": False})]
        return
    with pytest.raises(ScimError) as info:
        parse_operations(body)
    assert info.value.scim_type == scim_type and info.value.status == 400


@pytest.mark.parametrize("operation, scim_type", [
    ({"op": "replace", "path": "bogus", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": "name.bogus", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": "emails[type eq", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": "userName eq \"x\"", "value": 1}, "invalidPath"),
    ({"op": "replace", "path": "urn:example:unknown:1.0:User:role", "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": "id", "value": "5"}, "mutability"),
    ({"op": "add", "path": "groups", "value": [{"value": "1"}]}, "mutability"),
    ({"op": "replace", "path": "active", "value": "maybe"}, "invalidValue"),
    ({"op": "replace", "path": "name", "value": "Ada"}, "invalidValue"),
    ({"op": "replace", "path": "userName", "value": {"x": 1}}, "invalidValue"),
    ({"op": "replace", "value": ["not", "an", "object"]}, "invalidValue"),
    ({"op": "replace", "value": {"bogus": 1}}, "invalidPath"),
    ({"op": "replace", "path": "displayName[value eq \"x\"]", "value": "y"}, "invalidPath"),
])
def test_operation_errors(operation, scim_type):
    with pytest.raises(ScimError) as info:
        patch(user_doc(), operation)
    assert info.value.scim_type == scim_type, info.value.detail


@pytest.mark.parametrize("path", ['emails[type eq "work"]', 'emails[type eq "home"]', 'emails[primary eq true]'])
@pytest.mark.parametrize("value", [None, 5, "x", [], [{"value": "a@acme.test"}]])
@pytest.mark.parametrize("op", ["add", "replace"])
def test_filtered_add_or_replace_needs_an_object(op, path, value):
    """RFC 7644 §3.5.2.1/3: the value of `attr[filter]` is an object of sub-attributes."""
    with pytest.raises(ScimError) as info:
        patch(user_doc(), {"op": op, "path": path, "value": value})
    assert info.value.scim_type == "invalidValue" and info.value.status == 400
    with pytest.raises(ScimError) as info:
        patch({"displayName": "G", "members": [{"value": "2"}]},
              {"op": op, "path": 'members[value eq "2"]', "value": value}, spec=GROUP_SPEC)
    assert info.value.scim_type == "invalidValue"


def test_a_value_made_primary_clears_primary_on_the_others():
    """RFC 7644 §3.5.2: the server sets primary to false on the other values."""
    added = patch(user_doc(), {"op": "add", "path": "emails",
                               "value": [{"value": "new@acme.test", "type": "work", "primary": True}]})
    assert added["emails"] == [{"value": "ada@acme.test", "type": "work", "primary": False},
                               {"value": "new@acme.test", "type": "work", "primary": True}]
    assert user_fields(added, current_email="ada@acme.test").email == "new@acme.test"
    doc = user_doc()
    doc["emails"].append({"value": "home@acme.test", "type": "home"})
    doc = patch(doc, {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True})
    assert [e.get("primary") for e in doc["emails"]] == [False, True]
    doc = patch(doc, {"op": "replace", "path": 'emails[type eq "work"]', "value": {"primary": "True"}})
    assert [e.get("primary") for e in doc["emails"]] == [True, False]
    # Adding a value that is not primary leaves the primary one alone.
    doc = patch(doc, {"op": "add", "path": "emails", "value": [{"value": "x@acme.test", "primary": False}]})
    assert [e.get("primary") for e in doc["emails"]] == [True, False, False]


def test_the_operations_a_patch_names_are_reported():
    touched = set()
    patch_ops = [{"op": "replace", "value": {"userName": "a@acme.test", "name.givenName": "A", f"{ROLE}:role": "admin",
                                             "title": "ignored"}},
                 {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "b@acme.test"}]
    apply_patch(USER_SPEC, user_doc(), parse_operations({"schemas": [PATCH], "Operations": patch_ops}),
                touched=touched)
    assert touched == {"userName", "name", "emails"}


def test_member_operations_keep_their_meaning_in_any_number_and_order():
    """Each operation is a look-up in an index, not a pass over the members: the result must be
    exactly what applying them one by one to a plain list gives."""
    import random
    rng = random.Random(11)
    for _ in range(30):
        members = [str(i) for i in rng.sample(range(1, 60), rng.randint(0, 40))]
        expected, operations = list(members), []
        for _ in range(rng.randint(1, 60)):
            number = str(rng.randint(1, 70))
            kind = rng.choice(["add", "add-list", "remove-filter", "remove-list", "replace-sub", "add-filter"])
            if kind == "add":
                operations.append({"op": "add", "path": "members", "value": [{"value": number}]})
                expected += [number] if number not in expected else []
            elif kind == "add-list":
                more = [str(rng.randint(1, 70)) for _ in range(3)]
                operations.append({"op": "Add", "path": "members", "value": [{"value": m} for m in more]})
                expected += [m for m in dict.fromkeys(more) if m not in expected]
            elif kind == "remove-filter":
                operations.append({"op": "remove", "path": f'members[value eq "{number}"]'})
                expected = [m for m in expected if m != number]
            elif kind == "remove-list":
                operations.append({"op": "Remove", "path": "members", "value": [{"value": number}]})
                expected = [m for m in expected if m != number]
            elif kind == "replace-sub" and expected:
                old = rng.choice(expected)
                operations.append({"op": "replace", "path": f'members[value eq "{old}"].value', "value": number})
                expected = [number if m == old else m for m in expected]
            elif kind == "add-filter":
                operations.append({"op": "add", "path": f'members[value eq "{number}"]', "value": {}})
                expected += [number] if number not in expected else []
        doc = patch({"displayName": "G", "members": [{"value": m} for m in members]}, *operations, spec=GROUP_SPEC)
        assert [m["value"] for m in doc["members"]] == expected, operations
