"""HTMX helpers: one URL serves the page and its fragment (STYLE.md)."""
from __future__ import annotations

from flask import make_response, render_template, request


def wants_fragment() -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def is_background_poll() -> bool:
    """A request an element makes on its own timer (`hx-trigger="every …"`), which marks its URL
    `poll=1`: nobody is at the keyboard for it. In the URL, not an `hx-headers` header: htmx
    merges those into every request made inside the element, its buttons' included."""
    return request.args.get("poll") == "1"


def render(page_template: str, fragment_template: str, /, status: int = 200, **context):
    """Render the fragment for HTMX requests and the full page otherwise; the page
    template includes the fragment, so no markup is written twice."""
    response = make_response(render_template(fragment_template if wants_fragment() else page_template, **context), status)
    response.vary.add("HX-Request")
    return response
