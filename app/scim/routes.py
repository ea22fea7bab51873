"""The SCIM 2.0 web adapter under /scim/v2: authenticate, parse, call a service,
commit once, render. Every failure is a SCIM Error (see errors.py)."""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import unquote

from flask import Blueprint, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import csrf, db
from app.models import Workspace
from app.scim import groups as group_service
from app.scim import requestlog
from app.scim import users as user_service
from app.scim.auth import authenticate, bearer_from_header
from app.scim.errors import MEDIA_TYPE, ScimError, error_response, invalid_syntax, invalid_value, not_found, scim_json
from app.scim.resources import group_resource, project, user_resource, version
from app.scim.schema import (LIST_RESPONSE, MAX_RESULTS, SEARCH_REQUEST, resource_type_documents, schema_documents,
                             service_provider_config)

log = logging.getLogger(__name__)

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
csrf.exempt(bp)

MAX_BODY = 1024 * 1024
DEFAULT_COUNT = 100
MAX_START_INDEX = 2**31  # past every row; keeps OFFSET within what databases bind
JSON_TYPES = {"application/scim+json", "application/json"}


def base_url() -> str:
    return current_app.config["BASE_URL"] + "/scim/v2"


# --- request lifecycle ----------------------------------------------------------------------------

@bp.before_request
def authenticate_request():
    g.scim_started = time.perf_counter()
    g.scim_user_id = None
    principal = authenticate(bearer_from_header(request.headers.get("Authorization")))
    if principal is None:
        raise ScimError(401, "A valid bearer token is required (Authorization: Bearer <token>).")
    workspace = principal.workspace or db.session.get(Workspace, principal.workspace_id)
    if workspace is None:
        raise ScimError(401, "A valid bearer token is required (Authorization: Bearer <token>).")
    g.scim_caller = user_service.Caller(workspace, principal.label)
    if not workspace.is_enterprise:
        raise ScimError(403, "SCIM provisioning needs the Enterprise plan for this workspace.")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ScimError(413, f"The request body is larger than {MAX_BODY} bytes.")
    if request.method in ("POST", "PUT", "PATCH"):
        if request.mimetype and request.mimetype not in JSON_TYPES:
            raise ScimError(415, f"Send the body as {MEDIA_TYPE} (got {request.mimetype}).")


@bp.errorhandler(ScimError)
def scim_error(error: ScimError):
    db.session.rollback()
    return error_response(error.status, error.detail, error.scim_type)


@bp.errorhandler(SQLAlchemyError)
def database_error(error: SQLAlchemyError):
    db.session.rollback()
    log.exception("database error on SCIM %s %s", request.method, request.path)
    return error_response(503, "The service is busy; retry the request.")


@bp.after_request
def log_request(response):
    caller = g.get("scim_caller")
    if caller is None or g.get("scim_logged"):
        return response
    try:
        _add_log_entry(caller, response.status_code)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.warning("could not write the SCIM request log", exc_info=True)
    return response


def _add_log_entry(caller, status: int) -> None:
    path = request.path + ("?" + unquote(request.query_string.decode("latin-1")) if request.query_string else "")
    body = request.get_data(cache=True) if request.content_length and request.content_length <= MAX_BODY else None
    requestlog.add_entry(caller.workspace_id, request.method, path, status,
                         int((time.perf_counter() - g.scim_started) * 1000), body, g.get("scim_user_id"),
                         request.headers.get("User-Agent"))


def commit(status: int) -> None:
    """Commit the change and its request-log entry together."""
    _add_log_entry(g.scim_caller, status)
    g.scim_logged = True
    db.session.commit()


OUTSIDE_MESSAGES = {
    404: "No such SCIM endpoint or resource.",
    405: "This SCIM endpoint does not accept that method.",
    413: "The request body is too large.",
    500: "An unexpected error happened; it has been logged. Retry the request.",
}


def render_error(status: int, message: str):
    """Errors raised outside our views (unknown URL, wrong method, body too large): the
    app's page messages speak to people in a browser, these to an IdP's log."""
    return error_response(status, OUTSIDE_MESSAGES.get(status, message))


# --- parsing --------------------------------------------------------------------------------------

def json_body():
    raw = request.get_data(cache=True)
    if not raw or not raw.strip():
        raise invalid_syntax("The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw.decode("utf-8-sig"), parse_constant=_reject_constant)  # a BOM is tolerated
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid_syntax(f"The request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise invalid_syntax("The request body must be a JSON object.")
    return body


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _int_param(source: dict, name: str, default: int) -> int:
    raw = source.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(str(raw).strip())
    except ValueError:
        raise invalid_value(f"{name} must be an integer (got {str(raw)[:50]!r}).") from None


def paging(source: dict) -> tuple[int, int]:
    start = min(max(1, _int_param(source, "startIndex", 1)), MAX_START_INDEX)
    count = min(MAX_RESULTS, max(0, _int_param(source, "count", DEFAULT_COUNT)))
    return start, count


def _list_param(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def check_if_match(current_version: str) -> None:
    wanted = request.headers.get("If-Match")
    if wanted and wanted.strip() != "*" and current_version not in [v.strip() for v in wanted.split(",")]:
        raise ScimError(412, "The resource changed since you read it (If-Match does not match its version).")


def single(resource: dict, status: int = 200, location: bool = False):
    headers = {"ETag": resource["meta"]["version"]}
    if location:
        headers["Location"] = resource["meta"]["location"]
    body = project(resource, request.args.get("attributes"), request.args.get("excludedAttributes"))
    return scim_json(body, status, headers)


def list_response(resources: list[dict], total: int, start: int) -> object:
    return scim_json({"schemas": [LIST_RESPONSE], "totalResults": total, "startIndex": start,
                      "itemsPerPage": len(resources), "Resources": resources})


# --- discovery ------------------------------------------------------------------------------------

@bp.get("/ServiceProviderConfig")
def service_provider_config_view():
    return scim_json(service_provider_config(base_url(), current_app.config["BASE_URL"] + "/settings/security"))


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
    attributes, excluded = _list_param(params.get("attributes")), _list_param(params.get("excludedAttributes"))
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
    return _list_users(_search_params(json_body()))


@bp.post("/Users")
def create_user():
    found = user_service.create_user(g.scim_caller, json_body())
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
    check_if_match(version(found.user.updated_at, found.user.id))
    resource = _user_json(change(g.scim_caller, found, body))
    commit(200)
    return single(resource)


@bp.put("/Users/<user_id>")
def replace_user(user_id: str):
    return _change_user(user_id, user_service.replace_user)


@bp.patch("/Users/<user_id>")
def patch_user(user_id: str):
    return _change_user(user_id, user_service.patch_user)


@bp.delete("/Users/<user_id>")
def delete_user(user_id: str):
    user = user_service.get_user(g.scim_caller, user_id)
    g.scim_user_id = user.id
    check_if_match(version(user.updated_at, user.id))
    user_service.delete_user(g.scim_caller, user)
    commit(204)
    return no_content()


def no_content():
    return current_app.response_class(status=204)


# --- groups ---------------------------------------------------------------------------------------

def _wants_members() -> bool:
    attributes, excluded = request.args.get("attributes"), request.args.get("excludedAttributes")
    if excluded and "members" in [a.strip().lower() for a in excluded.split(",")]:
        return False
    if attributes and "members" not in [a.strip().lower().split(".")[0] for a in attributes.split(",")]:
        return False
    return True


def _group_json(group, with_members: bool = True) -> dict:
    members = group_service.members_of([group.id])[group.id] if with_members else None
    return group_resource(group, base_url(), members)


def _list_groups(params: dict):
    start, count = paging(params)
    total, groups = group_service.list_groups(g.scim_caller, filter_text=params.get("filter"), start_index=start,
                                              count=count)
    attributes, excluded = _list_param(params.get("attributes")), _list_param(params.get("excludedAttributes"))
    wants = not (excluded and "members" in excluded.lower().split(",")) and \
        not (attributes and "members" not in [a.strip().lower().split(".")[0] for a in attributes.split(",")])
    members = group_service.members_of([grp.id for grp in groups]) if wants else {}
    resources = [project(group_resource(grp, base_url(), members.get(grp.id) if wants else None), attributes, excluded)
                 for grp in groups]
    return list_response(resources, total, start)


@bp.get("/Groups")
def list_groups():
    return _list_groups(request.args.to_dict())


@bp.post("/Groups/.search")
def search_groups():
    return _list_groups(_search_params(json_body()))


@bp.post("/Groups")
def create_group():
    group = group_service.create_group(g.scim_caller, json_body())
    resource = _group_json(group)
    commit(201)
    return single(resource, 201, location=True)


@bp.get("/Groups/<group_id>")
def get_group(group_id: str):
    group = group_service.get_group(g.scim_caller, group_id)
    return single(_group_json(group, _wants_members()))


def _change_group(group_id: str, change):
    """PUT and PATCH: load, parse, check If-Match, apply `change`, render before the commit."""
    group = group_service.get_group(g.scim_caller, group_id)
    body = json_body()
    check_if_match(version(group.updated_at, group.id))
    change(g.scim_caller, group, body)
    resource = _group_json(group, _wants_members())
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


def _search_params(body: dict) -> dict:
    """A SearchRequest (RFC 7644 §3.4.3) → the same parameters as a GET query."""
    fields = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
    schemas = fields.get("schemas", [SEARCH_REQUEST])
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise invalid_syntax(f"A search body must list the schema {SEARCH_REQUEST}.")
    if fields.get("filter") is not None and not isinstance(fields["filter"], str):
        raise ScimError(400, "filter must be a string.", "invalidFilter")
    return {"filter": fields.get("filter"), "startIndex": fields.get("startindex"), "count": fields.get("count"),
            "attributes": fields.get("attributes"), "excludedAttributes": fields.get("excludedattributes")}

