"""The browser's side of a SAML sign-in (login CSRF), in two halves.

1. The binding: the browser that starts a sign-in gets a random id, and the
   response must arrive in that browser (see `BROWSER_COOKIE` in app.sso.saml).
   That stops an attacker posting their own valid response into a victim's
   browser, but not making the victim's browser *start* a sign-in to the
   attacker's workspace (a link to /sso/saml/<attacker's cid>/login, whose IdP
   the attacker runs and answers at once).
2. So a start is confirmed once, on a page naming the workspace (Continue is a
   same-origin POST), unless our own pages caused it (Fetch Metadata:
   `Sec-Fetch-Site: same-origin`, as on /login's redirect) or this browser has
   signed in to that workspace through SSO before (a signed list of workspace
   ids in a cookie). Anything else is asked: another site's link, a link opened
   from a mail or chat app (`none`), a HEAD or a fetch, a browser that sends no
   Fetch Metadata. The Okta bookmark app is such a link: its users click
   "Continue" the first time in each browser, and never again. And `next` never
   points at an SSO start (app.urls.safe_next), so a sign-in can't chain into one.
"""
from __future__ import annotations

from flask import current_app, request
from itsdangerous import BadSignature, URLSafeSerializer

from app.security import new_secret
from app.sso import saml

MAX_KNOWN_WORKSPACES = 20
_KNOWN_MAX_AGE = 400 * 86400  # the longest browsers keep a cookie


def browser_id() -> tuple[str | None, bool]:
    """(browser id, is it new) — only where the binding cookie can ride the IdP's POST (https)."""
    if not current_app.config["PRODUCTION"]:
        return None, False
    existing = request.cookies.get(saml.BROWSER_COOKIE)
    if existing and 20 <= len(existing) <= 64:
        return existing, False
    return new_secret(24), True


def with_browser_cookie(response, browser_id: str | None, is_new: bool):
    if browser_id and is_new:
        # SameSite=None so it is sent on the IdP's cross-site POST; Secure is required for that.
        response.set_cookie(saml.BROWSER_COOKIE, browser_id, max_age=30 * 86400, path="/",
                            secure=True, httponly=True, samesite="None")
    return response


def started_here() -> bool:
    """Did one of our own pages start this (a same-origin navigation), or the Continue button?"""
    return request.method == "POST" or request.headers.get("Sec-Fetch-Site") == "same-origin"


def _known_cookie() -> str:
    # __Host- (https only): a sibling subdomain can't plant its own signed list.
    return "__Host-gatehouse_sso_known" if current_app.config["PRODUCTION"] else "gatehouse_sso_known"


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="gatehouse-sso-known-workspaces")


def known_workspaces() -> list[int]:
    """Workspaces this browser has signed in to through SSO (most recent first)."""
    raw = request.cookies.get(_known_cookie())
    if not raw or len(raw) > 1024:
        return []
    try:
        ids = _serializer().loads(raw)
    except BadSignature:
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []


def remember_workspace(response, workspace_id: int):
    """After a real SSO sign-in: starts for this workspace from other sites go straight through."""
    ids = [workspace_id, *(i for i in known_workspaces() if i != workspace_id)][:MAX_KNOWN_WORKSPACES]
    production = current_app.config["PRODUCTION"]
    response.set_cookie(_known_cookie(), _serializer().dumps(ids), max_age=_KNOWN_MAX_AGE, path="/",
                        secure=production, httponly=True, samesite="Lax")
    return response
