"""SCIM's HTTP conventions under /scim/v2, for the endpoints in routes.py: the
blueprint, a bearer token on every request, SCIM errors, one commit with its
request-log entry, and the parsing and rendering every endpoint shares."""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import unquote

from flask import Blueprint, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from app.extensions import csrf, db
from app.scim import requestlog
from app.scim.auth import authenticate, bearer_from_header, workspace_of
from app.scim.errors import MEDIA_TYPE, ScimError, error_response, invalid_syntax, invalid_value, scim_json
from app.scim.resources import project
from app.scim.schema import LIST_RESPONSE, MAX_RESULTS, SEARCH_REQUEST
from app.scim.users import Caller

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
    workspace = principal.workspace or workspace_of(principal.workspace_id)
    if workspace is None:
        raise ScimError(401, "A valid bearer token is required (Authorization: Bearer <token>).")
    g.scim_caller = Caller(workspace, principal.label)
    if not workspace.is_enterprise:
        raise ScimError(403, "SCIM provisioning needs the Enterprise plan for this workspace.")
    # Reads stop one byte past the limit, so a body without Content-Length (chunked) meets it
    # too: json_body sees that byte and answers 413 rather than parse a truncated body.
    request.max_content_length = MAX_BODY + 1
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
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
    body = g.get("scim_body")  # as json_body read it (a chunked body has no Content-Length)
    if body is None and request.content_length and request.content_length <= MAX_BODY:
        body = request.get_data(cache=True)
    requestlog.add_entry(caller.workspace_id, request.method, path, status,
                         int((time.perf_counter() - g.scim_started) * 1000), body, g.get("scim_user_id"),
                         # which credential (token or OAuth connection), then the client's own name
                         " · ".join(filter(None, (caller.label, request.headers.get("User-Agent")))))


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

def _too_large() -> ScimError:
    return ScimError(413, f"The request body is larger than {MAX_BODY} bytes.")


def json_body():
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large() from None
    if len(raw) > MAX_BODY:
        raise _too_large()
    g.scim_body = raw
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


def list_param(value) -> str | None:
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


def no_content():
    return current_app.response_class(status=204)


def search_params(body: dict) -> dict:
    """A SearchRequest (RFC 7644 §3.4.3) → the same parameters as a GET query."""
    fields = {k.lower(): v for k, v in body.items() if isinstance(k, str)}
    schemas = fields.get("schemas", [SEARCH_REQUEST])
    if not isinstance(schemas, list) or SEARCH_REQUEST not in schemas:
        raise invalid_syntax(f"A search body must list the schema {SEARCH_REQUEST}.")
    if fields.get("filter") is not None and not isinstance(fields["filter"], str):
        raise ScimError(400, "filter must be a string.", "invalidFilter")
    return {"filter": fields.get("filter"), "startIndex": fields.get("startindex"), "count": fields.get("count"),
            "attributes": fields.get("attributes"), "excludedAttributes": fields.get("excludedattributes")}

