"""Forms whose POST must act once, such as those that show a new secret once.

Reloading the page a POST answered makes the browser send that POST again, with a
still-valid CSRF token: a recovery-code or token form would quietly make new secrets
and invalidate the ones just saved. Such forms carry a token kept in the session,
which the POST takes: a second POST of the same form is told so instead of acting.
"""
from __future__ import annotations

import hmac

from flask import Flask, request, session

from app.security import new_secret

FIELD = "once"
REPEATED = ("Nothing new was made: this form had already been sent (reloading the page sends it again). "
            "If you didn't keep what it showed, make a new one here.")


def once_token(purpose: str) -> str:
    """The hidden field's value; the same until a POST takes it, so re-rendered fragments agree."""
    key = f"once:{purpose}"
    if key not in session:
        session[key] = new_secret(16)
    return session[key]


def redeem(purpose: str) -> bool:
    expected = session.pop(f"once:{purpose}", None)
    return expected is not None and hmac.compare_digest(expected, request.form.get(FIELD, ""))


def init_app(app: Flask) -> None:
    app.jinja_env.globals["once_token"] = once_token
