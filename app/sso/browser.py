"""The browser binding of a SAML sign-in (login CSRF): see `BROWSER_COOKIE` in app.sso.saml."""
from __future__ import annotations

from flask import current_app, request

from app.security import new_secret
from app.sso import saml


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
