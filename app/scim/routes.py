"""The SCIM 2.0 endpoints under /scim/v2: discovery, Users and Groups. Each one
parses, calls a service, commits once and renders; web.py holds the conventions
they share (authentication, errors, the request log)."""
from __future__ import annotations

from flask import current_app, g, request

from app.scim import groups as group_service
from app.scim import user_writes, users as user_service
from app.scim.errors import ScimError, not_found, scim_json
from app.scim.resources import group_resource, project, requested, user_resource, user_version, version
from app.scim.schema import resource_type_documents, schema_documents, service_provider_config
from app.scim.web import (base_url, bp, check_if_match, commit, json_body, list_param, list_response, no_content,
                          paging, search_params, single)
from app.urls import external_url


# --- discovery ------------------------------------------------------------------------------------

@bp.get("/ServiceProviderConfig")
def service_provider_config_view():
    return scim_json(service_provider_config(base_url(), external_url("settings.security")))


@bp.get("/ResourceTypes")
def resource_types():
    documents = resource_type_documents(base_url())
    return list_response(documents, len(documents), 1)


@bp.get("/ResourceTypes/<name>")
def resource_type(name: str):
    found = next((d for d in resource_type_documents(base_url()) if d["id"].lower() == name.lower()), None)
    if found is None:
        raise not_found(f"No resource type {name!r}.")
    return scim_json(found)


@bp.get("/Schemas")
def schemas():
    documents = schema_documents(base_url())
    return list_response(documents, len(documents), 1)


@bp.get("/Schemas/<path:schema_id>")
def schema(schema_id: str):
    found = next((d for d in schema_documents(base_url()) if d["id"].lower() == schema_id.lower()), None)
    if found is None:
        raise not_found(f"No schema {schema_id!r}.")
    return scim_json(found)


@bp.route("/.search", methods=["POST"])
@bp.route("/Bulk", methods=["POST"])
@bp.route("/Me", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_implemented():
    """Announced as unsupported (RFC 7644 §3.4.3 root search, §3.7 bulk, §3.11 /Me)."""
    raise ScimError(501, "Not supported by this service provider.")


# --- users ----------------------------------------------------------------------------------------

def _list_users(params: dict):
    start, count = paging(params)
    total, found = user_service.list_users(g.scim_caller, filter_text=params.get("filter"), start_index=start,
                                           count=count)
    groups = user_service.groups_of([f.user.id for f in found])
    if len(found) == 1:
        g.scim_user_id = found[0].user.id
    attributes, excluded = list_param(params.get("attributes")), list_param(params.get("excludedAttributes"))
    resources = [project(user_resource(f.user, base_url(), groups[f.user.id], f.user_name), attributes, excluded)
                 for f in found]
    return list_response(resources, total, start)


def _user_json(found) -> dict:
    return user_resource(found.user, base_url(), found.groups, found.user_name)


@bp.get("/Users")
def list_users():
    return _list_users(request.args.to_dict())


@bp.post("/Users/.search")
def search_users():
    return _list_users(search_params(json_body()))


@bp.post("/Users")
def create_user():
    found = user_writes.create_user(g.scim_caller, json_body())
    g.scim_user_id = found.user.id
    # Rendered before the commit expires the row (saves a reload); a new or re-linked user is in no group.
    resource = _user_json(found)
    commit(201)
    return single(resource, 201, location=True)


@bp.get("/Users/<user_id>")
def get_user(user_id: str):
    found = user_service.get_user_and_groups(g.scim_caller, user_id)
    g.scim_user_id = found.user.id
    resource = _user_json(found)
    if request.headers.get("If-None-Match", "").strip() == resource["meta"]["version"]:
        not_modified = current_app.response_class(status=304)
        not_modified.headers["ETag"] = resource["meta"]["version"]
        return not_modified
    return single(resource)


def _change_user(user_id: str, change):
    """PUT and PATCH: load, parse, check If-Match, apply `change`, render before the commit."""
    found = user_service.get_user_and_groups(g.scim_caller, user_id)
    g.scim_user_id = found.user.id
    body = json_body()
    check_if_match(user_version(found.user, found.groups))
    resource = _user_json(change(g.scim_caller, found, body))
    commit(200)
    return single(resource)


@bp.put("/Users/<user_id>")
def replace_user(user_id: str):
    return _change_user(user_id, user_writes.replace_user)


@bp.patch("/Users/<user_id>")
def patch_user(user_id: str):
    return _change_user(user_id, user_writes.patch_user)


@bp.delete("/Users/<user_id>")
def delete_user(user_id: str):
    found = user_service.get_user_and_groups(g.scim_caller, user_id)
    g.scim_user_id = found.user.id
    check_if_match(user_version(found.user, found.groups))
    user_writes.delete_user(g.scim_caller, found.user)
    commit(204)
    return no_content()


# --- groups ---------------------------------------------------------------------------------------

def _wants_members(attributes: str | None, excluded: str | None) -> bool:
    """Members are a query of their own: skipped when the client's projection leaves them out."""
    return requested("members", attributes, excluded)


def _members_requested() -> bool:
    return _wants_members(request.args.get("attributes"), request.args.get("excludedAttributes"))


def _group_json(group, with_members: bool = True) -> dict:
    members = group_service.members_of([group.id])[group.id] if with_members else None
    return group_resource(group, base_url(), members)


def _list_groups(params: dict):
    start, count = paging(params)
    total, groups = group_service.list_groups(g.scim_caller, filter_text=params.get("filter"), start_index=start,
                                              count=count)
    attributes, excluded = list_param(params.get("attributes")), list_param(params.get("excludedAttributes"))
    wants = _wants_members(attributes, excluded)
    members = group_service.members_of([grp.id for grp in groups]) if wants else {}
    resources = [project(group_resource(grp, base_url(), members.get(grp.id) if wants else None), attributes, excluded)
                 for grp in groups]
    return list_response(resources, total, start)


@bp.get("/Groups")
def list_groups():
    return _list_groups(request.args.to_dict())


@bp.post("/Groups/.search")
def search_groups():
    return _list_groups(search_params(json_body()))


@bp.post("/Groups")
def create_group():
    group = group_service.create_group(g.scim_caller, json_body())
    resource = _group_json(group)
    commit(201)
    return single(resource, 201, location=True)


@bp.get("/Groups/<group_id>")
def get_group(group_id: str):
    group = group_service.get_group(g.scim_caller, group_id)
    return single(_group_json(group, _members_requested()))


def _change_group(group_id: str, change):
    """PUT and PATCH: load, parse, check If-Match, apply `change`, render before the commit."""
    group = group_service.get_group(g.scim_caller, group_id)
    body = json_body()
    check_if_match(version(group.updated_at, group.id))
    change(g.scim_caller, group, body)
    resource = _group_json(group, _members_requested())
    commit(200)
    return single(resource)


@bp.put("/Groups/<group_id>")
def replace_group(group_id: str):
    return _change_group(group_id, group_service.replace_group)


@bp.patch("/Groups/<group_id>")
def patch_group(group_id: str):
    return _change_group(group_id, group_service.patch_group)


@bp.delete("/Groups/<group_id>")
def delete_group(group_id: str):
    group = group_service.get_group(g.scim_caller, group_id)
    check_if_match(version(group.updated_at, group.id))
    group_service.delete_group(g.scim_caller, group)
    commit(204)
    return no_content()
