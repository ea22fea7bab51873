"""SCIM PATCH (RFC 7644 §3.5.2) applied to a resource document, with the dialects
real IdPs send: Okta's path-less `{"op": "replace", "value": {"active": false}}`,
Entra's "Replace"/"Add", booleans as strings ("False"), dotted keys and schema
URNs in a path-less value, `emails[type eq "work"].value`, `members[value eq "id"]`,
and Entra's `remove members` with a value list.

The document is the resource as plain JSON with canonical attribute names
(see resources.py); this module knows the schemas, not the database. The caller
validates the patched document and writes the difference.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from scim2_models import Path
from scim2_models.exceptions import SCIMException
from scim2_models.path import AttrPath, ValuePath

from app.scim.errors import ScimError, invalid_path, invalid_syntax, invalid_value, mutability, no_target
from app.scim.multivalued import Values, equalities, value_key
from app.scim.schema import PATCH_OP, Attr, Schema

MAX_OPERATIONS = 1000
READ_ONLY = frozenset({"id", "meta", "schemas"})
EXTERNAL_ID = Attr("externalId", case_exact=True, description="The IdP's identifier.")


@dataclass(frozen=True)
class ResourceSpec:
    core: Schema
    extensions: tuple[Schema, ...] = ()
    ignored_attributes: frozenset[str] = frozenset()   # lowercase core names accepted and dropped
    ignored_sub_attributes: dict[str, frozenset[str]] = field(default_factory=dict)  # lowercase attr -> subs dropped
    ignored_schemas: frozenset[str] = frozenset()      # lowercase URNs accepted and dropped
    read_only: frozenset[str] = frozenset()            # lowercase core names the client cannot set

    def extension(self, urn: str) -> Schema | None:
        return next((s for s in self.extensions if s.id.lower() == urn.lower()), None)

    def core_attr(self, name: str) -> Attr | None:
        if name.lower() == "externalid":
            return EXTERNAL_ID
        return self.core.attr(name)


@dataclass(frozen=True)
class Target:
    urn: str | None       # extension URN holding the attribute, None for core
    attr: Attr | None     # None: the whole extension object
    sub: str | None = None
    value_filter: Any = None


IGNORE = object()


def resolve_path(spec: ResourceSpec, text: str):
    """A PATCH path → Target, IGNORE (an attribute we accept and drop), or a 400 invalidPath."""
    if not isinstance(text, str) or not text.strip():
        raise invalid_path("path must be a non-empty string.")
    try:
        node = Path(text.strip()).ast
    except SCIMException as exc:
        raise invalid_path(f"Invalid path {text[:200]!r}: {exc}") from None
    value_filter = None
    if isinstance(node, ValuePath):
        attr_path, value_filter, sub = node.attr_path, node.val_filter, node.sub_attr
        if attr_path.sub_attr:
            raise invalid_path(f"Invalid path {text!r}.")
    elif isinstance(node, AttrPath):
        attr_path, sub = node, node.sub_attr
    else:
        raise invalid_path(f"{text!r} is a filter, not an attribute path.")
    return _target(spec, attr_path, sub, value_filter, text)


def _target(spec: ResourceSpec, path: AttrPath, sub: str | None, value_filter, text: str):
    urn = None
    if path.uri:
        whole = f"{path.uri}:{path.attr}"
        if spec.extension(whole) and not sub and value_filter is None:
            return Target(spec.extension(whole).id, None)
        if whole.lower() in spec.ignored_schemas or path.uri.lower() in spec.ignored_schemas:
            return IGNORE
        if path.uri.lower() == spec.core.id.lower():
            schema = spec.core
        elif extension := spec.extension(path.uri):
            schema, urn = extension, extension.id
        else:
            raise invalid_path(f"Unknown schema in path {text!r}.")
    else:
        schema = spec.core
    name = path.attr.lower()
    if urn is None:
        if name in spec.ignored_attributes or name == "password":
            return IGNORE
        if name in READ_ONLY or name in spec.read_only:
            raise mutability(f"{path.attr} is read-only.")
        attr = spec.core_attr(path.attr)
    else:
        attr = schema.attr(path.attr)
    if attr is None:
        raise invalid_path(f"Unknown attribute in path {text!r}.")
    if sub is not None:
        if sub.lower() in spec.ignored_sub_attributes.get(attr.name.lower(), ()):
            return IGNORE
        sub_attr = attr.child(sub)
        if sub_attr is None:
            raise invalid_path(f"Unknown sub-attribute in path {text!r}.")
        sub = sub_attr.name
    if value_filter is not None and not attr.multi:
        raise invalid_path(f"{attr.name} is single-valued; it cannot take a filter in {text!r}.")
    return Target(urn, attr, sub, value_filter)


# --- value coercion -------------------------------------------------------------------------------

def coerce(attr: Attr, value: Any, where: str):
    """A value for `attr`, from JSON as IdPs send it (Entra's "True"/"False" included)."""
    if value is None:
        return None
    if attr.type == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise invalid_value(f"{where} must be true or false.")
        return value
    if attr.type == "complex":
        if not isinstance(value, dict):
            raise invalid_value(f"{where} must be an object.")
        out = {}
        for key, sub_value in value.items():
            sub = attr.child(key) if isinstance(key, str) else None
            if sub is None:
                continue  # sub-attributes we do not keep (name.middleName, emails.display...) are dropped
            out[sub.name] = coerce(sub, sub_value, f"{where}.{sub.name}")
        return out
    # Ids (members.value) may come as numbers; every other string must be a string.
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, int) and attr.name != "value"):
        raise invalid_value(f"{where} must be a string.")
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL cannot store it: bad input, not a failed write
        raise invalid_value(f"{where} must not contain NUL characters.")
    return str(value)


def coerce_attr(attr: Attr, value: Any, where: str):
    if attr.multi:
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        return [coerce(attr, item, where) for item in items]
    return coerce(attr, value, where)


# --- the operations -------------------------------------------------------------------------------

def parse_operations(body: Any) -> list[tuple[str, str | None, Any]]:
    """The PatchOp envelope → [(op, path, value)] with ops lowercased (Entra sends "Replace")."""
    if not isinstance(body, dict):
        raise invalid_syntax("A PATCH body must be a JSON object.")
    keys = {k.lower(): k for k in body if isinstance(k, str)}
    schemas = body.get(keys.get("schemas", ""), [PATCH_OP])
    if not isinstance(schemas, list) or PATCH_OP not in schemas:
        raise invalid_syntax(f"A PATCH body must list the schema {PATCH_OP}.")
    operations = body.get(keys.get("operations", ""))
    if not isinstance(operations, list) or not operations:
        raise invalid_syntax("A PATCH body needs a non-empty Operations list.")
    if len(operations) > MAX_OPERATIONS:
        raise ScimError(400, f"At most {MAX_OPERATIONS} operations per PATCH.", "tooMany")
    parsed = []
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict):
            raise invalid_syntax(f"Operations[{index}] must be an object.")
        fields = {k.lower(): v for k, v in operation.items() if isinstance(k, str)}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in ("add", "remove", "replace"):
            raise invalid_syntax(f"Operations[{index}].op must be add, remove or replace.")
        path = fields.get("path")
        if path is not None and not isinstance(path, str):
            raise invalid_path(f"Operations[{index}].path must be a string.")
        if path is not None and not path.strip():
            path = None
        op = op.lower()
        if op == "remove" and path is None:
            raise no_target(f"Operations[{index}]: remove needs a path.")
        if op in ("add", "replace") and "value" not in fields:
            raise invalid_value(f"Operations[{index}]: {op} needs a value.")
        parsed.append((op, path, fields.get("value")))
    return parsed


def apply_patch(spec: ResourceSpec, document: dict, operations: list[tuple[str, str | None, Any]], *,
                touched: set[str] | None = None) -> dict:
    """Apply every operation to a copy of the document; all or nothing.

    `touched`, when given, collects the core attributes the operations address
    (canonical names): what the client sent, whether or not it changed anything.
    """
    doc = copy.deepcopy(document)
    for op, path, value in operations:
        steps = _pathless_steps(spec, op, value) if path is None else [(resolve_path(spec, path), value, path)]
        for target, item, where in steps:
            if touched is not None and target is not IGNORE and target.urn is None:
                touched.add(target.attr.name)
            _apply(spec, doc, op, target, item, where)
    for container in (doc, *(v for v in doc.values() if isinstance(v, dict))):
        for name, values in container.items():
            if isinstance(values, Values):
                container[name] = values.to_list()
    return doc


def _pathless_steps(spec: ResourceSpec, op: str, value: Any):
    """A path-less operation's value → (target, value, where) for each attribute it names."""
    if not isinstance(value, dict):
        raise invalid_value(f"A {op} without a path needs an object of attributes as its value.")
    for key, item in value.items():
        if not isinstance(key, str) or key.lower() in READ_ONLY:
            continue  # Okta's group rename sends the group's own id along
        extension = spec.extension(key)
        if extension is not None and isinstance(item, dict):
            for sub_key, sub_value in item.items():
                yield resolve_path(spec, f"{extension.id}:{sub_key}"), sub_value, sub_key
            continue
        if key.lower() in spec.ignored_schemas:
            continue
        yield resolve_path(spec, key), item, key  # "active", "name.givenName", "urn:…:User:role"


def _container(doc: dict, target: Target) -> dict:
    if target.urn is None:
        return doc
    extension = doc.get(target.urn)
    if not isinstance(extension, dict):
        extension = doc[target.urn] = {}
    return extension


def _apply(spec: ResourceSpec, doc: dict, op: str, target, value: Any, where: str) -> None:
    if target is IGNORE:
        return
    if target.attr is None:  # the whole extension object
        if op == "remove":
            doc.pop(target.urn, None)
            return
        if not isinstance(value, dict):
            raise invalid_value(f"{where} must be an object.")
        schema = spec.extension(target.urn)
        for key, sub_value in value.items():
            attr = schema.attr(key) if isinstance(key, str) else None
            if attr is None:
                raise invalid_path(f"Unknown attribute {key!r} in {target.urn}.")
            _apply(spec, doc, op, Target(target.urn, attr), sub_value, f"{where}:{key}")
        return
    container = _container(doc, target)
    attr = target.attr
    if attr.mutability == "readOnly":
        raise mutability(f"{attr.name} is read-only.")
    if attr.multi:
        _apply_multi(container, op, target, value, where)
    elif attr.type == "complex":
        current = container.get(attr.name) or {}
        if op == "remove":
            if target.sub:
                current.pop(target.sub, None)
                container[attr.name] = current
            else:
                container.pop(attr.name, None)
        elif target.sub:
            current[target.sub] = coerce(attr.child(target.sub), value, where)
            container[attr.name] = current
        else:
            # add and replace both merge the given sub-attributes (Okta sends only what changed).
            if value is None:
                container.pop(attr.name, None)
            else:
                current.update(coerce(attr, value, where))
                container[attr.name] = current
    else:
        if target.sub:
            raise invalid_path(f"{attr.name} has no sub-attributes.")
        if op == "remove" or value is None:
            container.pop(attr.name, None)
        else:
            container[attr.name] = coerce(attr, value, where)


def _apply_multi(container: dict, op: str, target: Target, value: Any, where: str) -> None:
    """RFC 7644 §3.5.2 on a multi-valued attribute. Its values stay a `Values` (ordered,
    indexed) until the whole PATCH is applied, so each operation costs what it touches."""
    attr = target.attr
    values = container.get(attr.name)
    if not isinstance(values, Values):
        values = container[attr.name] = Values(values or [])
    if target.value_filter is None and target.sub is None:
        if op == "remove":
            if value is None:
                values.clear()
            else:  # Entra: {"op": "Remove", "path": "members", "value": [{"value": "id"}]}
                doomed = coerce_attr(attr, value, where)
                for key in {value_key(d) for d in doomed if isinstance(d, dict)}:
                    values.discard_key(key)
            return
        new = [i for i in coerce_attr(attr, value, where) if i]
        if op == "replace":
            values.clear()
            written = new
            for item in new:
                values.append(item)
        else:
            written = []
            for item in new:
                if not values.has(value_key(item)):
                    values.append(item)
                    written.append(item)
        _one_primary(attr, values, [i for i in written if i.get("primary") is True])
        return
    selected = values.matching(target.value_filter)
    if op == "remove":
        for serial, item in selected:
            if target.sub:
                item.pop(target.sub, None)
                values.reindex(serial)
            else:
                values.discard(serial)
        return
    if not selected:
        seed = equalities(target.value_filter) if target.value_filter is not None else {}
        if seed is None:
            raise no_target(f"No value of {attr.name} matches {where!r}.")
        item = coerce(attr, seed, where)
        selected = [(values.append(item), item)]
    if target.sub:
        new_value = coerce(attr.child(target.sub), value, where)
        change = {target.sub: new_value}
    else:
        change = coerce(attr, value, where)
        if change is None:  # RFC 7644 §3.5.2.1/3: add and replace carry a value; null is none
            raise invalid_value(f"{where}: {op} needs an object of {attr.name} sub-attributes as its value, not null.")
    for serial, item in selected:
        item.update(change)
        values.reindex(serial)
    if change.get("primary") is True:
        _one_primary(attr, values, [item for _, item in selected])


def _one_primary(attr: Attr, values: Values, made_primary: list[dict]) -> None:
    """RFC 7644 §3.5.2: a value made primary clears `primary` on the others (the first one wins)."""
    if not made_primary or attr.child("primary") is None:
        return
    winner = made_primary[0]
    for _, item in values:
        if item is not winner and item.get("primary") is True:
            item["primary"] = False
