"""Redirect targets are only ever our own paths (no open redirects)."""
from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlsplit

from flask import current_app


def safe_next(target: str | None) -> str | None:
    """Return `target` as a local path if it points at our own origin, else None."""
    if not target or len(target) > 2000 or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        base = urlsplit(current_app.config["BASE_URL"])
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            return None
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    routed = _as_routed(parts.path)
    if routed == "/sso" or routed.startswith("/sso/"):
        # A sign-in must not chain into an SSO start (another workspace's, say): those are
        # confirmed by the person (app.sso.browser), and a redirect would look like our own page.
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _as_routed(path: str) -> str:
    """The path as the router will see it once the browser has resolved dot segments and the
    server has decoded it (`/%73so/…`, `/library/../sso/…` are `/sso/…`)."""
    for _ in range(3):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return posixpath.normpath(path)


def external_url(endpoint: str, **values) -> str:
    """An absolute URL on BASE_URL, with or without a request (jobs, CLI, SCIM)."""
    from urllib.parse import urlsplit as _split
    base = _split(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(base.netloc, url_scheme=base.scheme)
    return adapter.build(endpoint, values, force_external=True)
