"""Friendly error pages, HTMX-aware fragments, and JSON for APIs."""
from __future__ import annotations

import logging
from typing import Callable

from flask import Flask, make_response, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.extensions import db
from app.htmx import is_background_poll, wants_fragment

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Bad request", "We couldn't understand that request."),
    401: ("Please sign in", "Your session has ended. Sign in again to continue."),
    403: ("You don't have access", "Only admins of this workspace can see this page. Ask an admin if you need access."),
    404: ("Page not found", "There is nothing here. Check the link, or go back to your library."),
    405: ("Not allowed", "This page doesn't accept that kind of request."),
    413: ("Too large", "What you sent is larger than we accept."),
    422: ("Check the form", "Some fields need another look."),
    429: ("Too many attempts", "Too many attempts. Wait a few minutes and try again."),
    500: ("Something went wrong", "An unexpected error happened on our side. It has been logged; try again."),
}

# URL prefix -> renderer(status, message) for APIs with their own error format (SCIM, OAuth).
api_error_renderers: dict[str, Callable[[int, str], object]] = {}


def render_error(status: int, message: str | None = None, title: str | None = None):
    for prefix, renderer in api_error_renderers.items():
        if request.path.startswith(prefix):
            return renderer(status, message or MESSAGES.get(status, ("", ""))[1])
    default_title, default_message = MESSAGES.get(status, MESSAGES[500])
    context = {"status": status, "title": title or default_title, "message": message or default_message}
    template = "partials/_error.html" if wants_fragment() else "error.html"
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    if wants_fragment() and is_background_poll() and status in (401, 403, 404):
        # Refused now, refused on every poll: reload, so that the page itself says why (signed
        # out, no longer an admin, gone) instead of the same message flashing every few seconds.
        response.headers["HX-Refresh"] = "true"
    elif wants_fragment():
        # htmx swaps error responses only where told to (see htmx-config); retarget to the flash area.
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_error(400, "This form has expired. Reload the page and try again.", "Form expired")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        own_words = getattr(error, "_gatehouse_message", False) or isinstance(error, RateLimitExceeded)
        message = error.description if own_words else None
        response = render_error(error.code, message)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        # Nothing of a request that failed is kept; and after a failed statement PostgreSQL
        # refuses every other one until a rollback, the page's own reads (the member's workspace).
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - a lost connection: the page reads nothing it hasn't loaded
            log.exception("rollback after the error failed")
        return render_error(500)


def abort_with(status: int, message: str):
    """abort() whose message is shown to the user as written."""
    from werkzeug.exceptions import default_exceptions
    exc = default_exceptions.get(status, InternalServerError)(description=message)
    exc._gatehouse_message = True
    raise exc
