"""Rows ↔ SCIM resources: the JSON a client sees, the document PATCH works on,
and the validated fields a request may write. No database access here."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from app.emails import InvalidEmail, normalize_address
from app.scim.errors import invalid_syntax, invalid_value
from app.scim.patch import READ_ONLY, ResourceSpec, coerce_attr
from app.scim.schema import (CORE_GROUP, CORE_USER, ENTERPRISE_USER, GATEHOUSE_USER, GROUP_SCHEMA,
                             IGNORED_NAME_PARTS, IGNORED_USER_ATTRIBUTES, ROLE_SCHEMA, ROLES, USER_SCHEMA)

USER_SPEC = ResourceSpec(core=USER_SCHEMA, extensions=(ROLE_SCHEMA,), ignored_attributes=IGNORED_USER_ATTRIBUTES,
                         ignored_sub_attributes={"name": IGNORED_NAME_PARTS},
                         ignored_schemas=frozenset({ENTERPRISE_USER.lower()}), read_only=frozenset({"groups"}))
GROUP_SPEC = ResourceSpec(core=GROUP_SCHEMA)


MAX_ID = 2**62  # beyond any id we issue, and within what every database binds


def parse_id(value) -> int | None:
    """A resource id from a URL, filter or member reference; None when it cannot be one of ours."""
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if 0 < number < MAX_ID else None


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def version(updated_at: dt.datetime, row_id: int) -> str:
    return f'W/"{row_id:x}-{int(updated_at.timestamp() * 1_000_000):x}"'


def user_version(user, groups: list) -> str:
    """A user's ETag. Its groups (ids and names) are part of what an IdP reads, so joining,
    leaving or a rename moves it too; folded in here, a change to a large group writes no
    member rows (and a user in no group keeps the version it always had)."""
    plain = version(user.updated_at, user.id)
    if not groups:
        return plain
    listed = "\n".join(f"{g.id}:{g.display_name}" for g in sorted(groups, key=lambda g: g.id))
    return f'{plain[:-1]}-{hashlib.blake2b(listed.encode(), digest_size=6).hexdigest()}"'


# --- request bodies → documents -------------------------------------------------------------------

def body_to_document(spec: ResourceSpec, body: Any) -> dict:
    """A POST/PUT body → the document of the attributes it sets, with canonical names.

    readOnly attributes (id, meta, groups) are ignored as RFC 7644 §3.3 says;
    attributes of RFC 7643 Gatehouse has no use for are accepted and dropped;
    anything else unknown is a 400.
    """
    if not isinstance(body, dict):
        raise invalid_syntax("The request body must be a JSON object.")
    schemas = next((v for k, v in body.items() if isinstance(k, str) and k.lower() == "schemas"), None)
    if schemas is not None:
        if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
            raise invalid_syntax("schemas must be a list of schema URNs.")
        known = {spec.core.id.lower(), *(e.id.lower() for e in spec.extensions), *spec.ignored_schemas}
        unknown = [s for s in schemas if s.lower() not in known]
        if unknown:
            raise invalid_syntax(f"Unknown schema {unknown[0]!r}.")
    doc: dict = {}
    for key, value in body.items():
        if not isinstance(key, str):
            continue
        name = key.lower()
        if name in READ_ONLY or name in spec.read_only or name in spec.ignored_attributes or name == "password":
            continue
        if name in spec.ignored_schemas:
            continue
        if extension := spec.extension(key):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise invalid_value(f"{extension.id} must be an object.")
            part = {}
            for sub_key, sub_value in value.items():
                attr = extension.attr(sub_key) if isinstance(sub_key, str) else None
                if attr is None:
                    raise invalid_syntax(f"Unknown attribute {sub_key!r} in {extension.id}.")
                part[attr.name] = coerce_attr(attr, sub_value, f"{extension.id}:{attr.name}")
            doc[extension.id] = part
            continue
        attr = spec.core_attr(key)
        if attr is None:
            raise invalid_syntax(f"Unknown attribute {key!r}.")
        doc[attr.name] = coerce_attr(attr, value, attr.name)
    return doc


# --- users ----------------------------------------------------------------------------------------

@dataclass
class UserFields:
    email: str
    user_name: str | None  # the IdP's userName when it differs from `email`; None: userName is `email`
    external_id: str | None
    given_name: str | None
    family_name: str | None
    display_name: str
    active: bool | None  # None: not given
    role: str | None     # None: not given


def user_document(user, user_name: str | None = None) -> dict:
    name = {k: v for k, v in (("givenName", user.given_name), ("familyName", user.family_name)) if v}
    doc = {"userName": user_name or user.email, "emails": [{"value": user.email, "type": "work", "primary": True}],
           "active": user.status != "deactivated", GATEHOUSE_USER: {"role": user.role}}
    if name:
        doc["name"] = name
    if user.name:
        doc["displayName"] = user.name
    if user.external_id:
        doc["externalId"] = user.external_id
    return doc


def _text(value, field: str, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > limit:
        raise invalid_value(f"{field} is longer than {limit} characters.")
    return value or None


def _email(value: str, field: str) -> str:
    try:
        address = normalize_address(value)
    except InvalidEmail as exc:
        raise invalid_value(f"{field} must be the member's email address ({value[:100]!r}: {exc}).") from None
    if len(address) > 254:
        raise invalid_value(f"{field} is longer than 254 characters.")
    return address


def _chosen_email(emails: list[dict]) -> str | None:
    """The member's one address: the primary one, else the work one, else the first."""
    usable = [e for e in emails if isinstance(e, dict) and e.get("value")]
    for pick in (lambda e: e.get("primary") is True, lambda e: str(e.get("type", "")).lower() == "work", lambda e: True):
        found = next((e for e in usable if pick(e)), None)
        if found:
            return found["value"]
    return None


def user_fields(doc: dict, *, current_email: str | None = None, current_user_name: str | None = None,
                emails_sent: bool = True) -> UserFields:
    """Validate a user document. One rule gives the address and the userName, so the
    same document always gives the same member, however often it is sent:

    - the address is the IdP's primary (else work, else first) email whenever it sends
      emails (`emails_sent`: in a POST/PUT body; in a PATCH, an operation on emails);
    - without emails, an email-shaped userName is the address when the member is
      created, or when its userName was its address (`current_user_name` None: an IdP
      that maps only userName); otherwise the address stays as it is;
    - a userName that differs from the address (in more than letter case) is kept
      beside it as the IdP's userName, email-shaped or not.
    """
    user_name = doc.get("userName")
    if not user_name or not isinstance(user_name, str) or not user_name.strip():
        raise invalid_value("userName is required (usually the member's work email address).")
    user_name = user_name.strip()
    chosen = _chosen_email(doc.get("emails") or []) if emails_sent else None
    creating = current_email is None
    if chosen:
        email = _email(chosen, "emails.value")
    elif "@" in user_name and (creating or current_user_name is None):
        # The stored address was normalized when stored: a PATCH that leaves it as it is skips that.
        email = current_email if user_name == current_email else _email(user_name, "userName")
    elif not creating:
        email = current_email
    else:
        raise invalid_value("A userName that is not an email address needs the member's address in emails.")
    if user_name.lower() == email.lower():
        return _with_profile(doc, email, None)
    if len(user_name) > 255:
        raise invalid_value("userName is longer than 255 characters.")
    return _with_profile(doc, email, user_name)


def _with_profile(doc: dict, email: str, user_name: str | None) -> UserFields:
    name = doc.get("name") or {}
    given = _text(name.get("givenName"), "name.givenName", 100)
    family = _text(name.get("familyName"), "name.familyName", 100)
    display = _text(doc.get("displayName"), "displayName", 200) \
        or _text(name.get("formatted"), "name.formatted", 200) or " ".join(p for p in (given, family) if p)
    role = (doc.get(GATEHOUSE_USER) or {}).get("role")
    if role is not None:
        if role.strip().lower() not in ROLES:
            raise invalid_value(f"role must be one of {', '.join(ROLES)} (got {role[:50]!r}).")
        role = role.strip().lower()
    return UserFields(email=email, user_name=user_name, external_id=_text(doc.get("externalId"), "externalId", 255),
                      given_name=given,
                      family_name=family, display_name=display, active=doc.get("active"), role=role)


def user_resource(user, base_url: str, groups: list | None = None, user_name: str | None = None) -> dict:
    location = f"{base_url}/Users/{user.id}"
    resource = {"schemas": [CORE_USER, GATEHOUSE_USER], "id": str(user.id), **user_document(user, user_name)}
    name = resource.get("name")
    if name:
        name["formatted"] = " ".join(p for p in (user.given_name, user.family_name) if p)
    resource["groups"] = [{"value": str(g.id), "$ref": f"{base_url}/Groups/{g.id}", "display": g.display_name,
                           "type": "direct"} for g in groups or []]
    resource["meta"] = {"resourceType": "User", "created": timestamp(user.created_at),
                        "lastModified": timestamp(user.updated_at), "location": location,
                        "version": user_version(user, groups or [])}
    return resource


# --- groups ---------------------------------------------------------------------------------------

@dataclass
class GroupFields:
    display_name: str
    external_id: str | None
    member_ids: list[int] | None  # None: not given


def group_document(group, member_ids: list[int] | None) -> dict:
    doc = {"displayName": group.display_name}
    if group.external_id:
        doc["externalId"] = group.external_id
    if member_ids is not None:
        doc["members"] = [{"value": str(i)} for i in member_ids]
    return doc


def group_fields(doc: dict) -> GroupFields:
    display = _text(doc.get("displayName"), "displayName", 200)
    if not display:
        raise invalid_value("displayName is required.")
    members = None
    if "members" in doc:
        members = []
        for index, member in enumerate(doc.get("members") or []):
            if not isinstance(member, dict) or member.get("value") is None:
                raise invalid_value(f"members[{index}] must be an object whose value is the id of a user.")
            kind = str(member.get("type") or "User")
            if kind.lower() != "user":
                raise invalid_value("Only users can be group members (nested groups are not supported).")
            user_id = parse_id(member.get("value"))
            if user_id is None:
                raise invalid_value(f"members.value {str(member.get('value'))[:50]!r} is not the id of a user.")
            members.append(user_id)
        members = list(dict.fromkeys(members))
    return GroupFields(display_name=display, external_id=_text(doc.get("externalId"), "externalId", 255),
                       member_ids=members)


def group_resource(group, base_url: str, members: list | None) -> dict:
    resource = {"schemas": [CORE_GROUP], "id": str(group.id), "displayName": group.display_name}
    if group.external_id:
        resource["externalId"] = group.external_id
    if members is not None:
        resource["members"] = [{"value": str(u.id), "$ref": f"{base_url}/Users/{u.id}", "display": u.email,
                                "type": "User"} for u in members]
    resource["meta"] = {"resourceType": "Group", "created": timestamp(group.created_at),
                        "lastModified": timestamp(group.updated_at), "location": f"{base_url}/Groups/{group.id}",
                        "version": version(group.updated_at, group.id)}
    return resource


# --- attributes / excludedAttributes (RFC 7644 §3.4.2.5) -------------------------------------------

ALWAYS = {"id", "schemas"}


def _split(names: str | None) -> list[tuple[str, str | None]]:
    out = []
    for raw in (names or "").split(","):
        raw = raw.strip()
        if not raw:
            continue
        lowered = raw.lower()
        for urn in (CORE_USER.lower(), CORE_GROUP.lower()):
            if lowered.startswith(urn + ":"):
                raw = raw[len(urn) + 1:]
        if raw.lower().startswith("urn:"):
            prefix, _, attr = raw.rpartition(":")
            if prefix.lower() == GATEHOUSE_USER.lower():
                out.append((GATEHOUSE_USER.lower(), attr.lower()))
            else:
                out.append((raw.lower(), None))
            continue
        attr, _, sub = raw.partition(".")
        out.append((attr.lower(), sub.lower() or None))
    return out


def project(resource: dict, attributes: str | None, excluded: str | None) -> dict:
    wanted, unwanted = _split(attributes), _split(excluded)
    if not wanted and not unwanted:
        return resource
    out = {}
    for key, value in resource.items():
        lowered = key.lower()
        if lowered in ALWAYS:
            out[key] = value
            continue
        if wanted:
            subs = [sub for attr, sub in wanted if attr == lowered]
            if not subs:
                continue
            if None in subs or not isinstance(value, (dict, list)):
                out[key] = value
            else:
                out[key] = _pick(value, set(subs), keep=True)
        else:
            subs = [sub for attr, sub in unwanted if attr == lowered]
            if None in subs:
                continue
            value = _pick(value, set(subs), keep=False) if subs and isinstance(value, (dict, list)) else value
            if value != {}:  # an extension whose only attribute was excluded goes with it
                out[key] = value
    return out


def requested(name: str, attributes: str | None, excluded: str | None) -> bool:
    """Whether a top-level attribute survives `project` (full URNs included), so the
    query that fills it (a group's members) can be skipped when it doesn't."""
    name = name.lower()
    wanted = _split(attributes)
    if wanted:
        return any(attr == name for attr, _ in wanted)
    return not any(attr == name and sub is None for attr, sub in _split(excluded))


def _pick(value, subs: set[str], keep: bool):
    if isinstance(value, list):
        return [_pick(v, subs, keep) for v in value]
    return {k: v for k, v in value.items() if (k.lower() in subs) == keep}
