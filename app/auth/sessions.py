"""Signed-in sessions: fresh on every sign-in, bound to the user's session
version, and ended by idle and absolute timeouts (and, for SSO, by the
assertion's SessionNotOnOrAfter).

Flask's cookie session has no server-side id, so "a fresh session" is
session.clear() plus a new per-sign-in nonce; the session version rides in
Flask-Login's user id, so bumping it ends every session and remember-cookie.
"""
from __future__ import annotations

import datetime as dt
import time

from flask import Flask, current_app, g, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy.orm.attributes import set_committed_value

from app.deferred_writes import update_at_commit
from app.extensions import db, login_manager
from app.htmx import is_background_poll
from app.models import User, utcnow
from app.security import new_secret


def start_session(user: User, *, method: str, remember: bool = False, not_after: dt.datetime | None = None) -> None:
    next_url = session.get("next")
    session.clear()  # no state survives from before sign-in (session fixation)
    login_user(user, remember=remember, fresh=True)
    now = int(time.time())
    session["auth_at"] = now
    session["seen_at"] = now
    session["nonce"] = new_secret(16)
    session["method"] = method
    if remember:
        session["remember"] = True
    if not_after is not None:
        session["not_after"] = int(not_after.timestamp())
    if next_url:
        session["next"] = next_url
    # Made with the commit (app/deferred_writes.py), not by the ORM's flush: every sign-in
    # stamps it, and it is bookkeeping. The last sign-in is not part of the provisioned
    # resource, so the member's SCIM version stays.
    signed_in_at = utcnow()
    if user.id is None:  # a member created in this request: the update needs the id
        db.session.flush()
    update_at_commit(db.session, User.__table__, {"id": user.id}, {"last_login_at": signed_in_at})
    set_committed_value(user, "last_login_at", signed_in_at)


def keep_this_session(user: User) -> None:
    """After `user.end_all_sessions()` by the user themself: their other sessions end, this
    one carries on under the new session version (its clocks and sign-in method unchanged)."""
    login_user(user, fresh=session.get("_fresh", False))


def end_session() -> None:
    """Sign out in this browser: the session and the "keep me signed in" cookie. (Clearing the
    session first: logout_user() marks that cookie for deletion in the session.)"""
    session.clear()
    logout_user()


def _session_expired() -> bool:
    """Idle and absolute timeouts; a "keep me signed in" session instead lasts the remember
    period from its sign-in (or from its restoring from the cookie), idle or not."""
    now = int(time.time())
    cfg = current_app.config
    auth_at, seen_at = session.get("auth_at", 0), session.get("seen_at", 0)
    if session.get("remember"):
        if now - auth_at > cfg["REMEMBER_COOKIE_DURATION"]:
            return True
    elif now - auth_at > cfg["SESSION_ABSOLUTE_TIMEOUT"] or now - seen_at > cfg["SESSION_IDLE_TIMEOUT"]:
        return True
    not_after = session.get("not_after")
    return not_after is not None and now >= not_after


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    raw_id, _, version = user_id.partition(":")
    if not raw_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(raw_id))
    if user is None or user.session_version != int(version) or not user.is_active:
        return None  # ended sessions (deactivated, signed out everywhere) come back anonymous
    return user


@login_manager.unauthorized_handler
def unauthorized():
    if getattr(request, "htmx", None):
        # Never swap the login page into a fragment: tell htmx to navigate.
        response = current_app.response_class(status=401)
        response.headers["HX-Redirect"] = url_for("auth.login")
        return response
    if request.method == "GET":
        session["next"] = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = None  # we run our own (version + timeouts); "strong" breaks behind NAT changes

    @app.teardown_request
    def forget_request_globals(_exc=None):
        # Flask-Login caches the user and Flask-WTF the CSRF token on `g`, which
        # lives as long as the app context; where one context spans several
        # requests (the test client inside a test's context) nothing may leak
        # from one request into the next.
        g.__dict__.clear()

    @app.before_request
    def enforce_session_limits():
        if request.endpoint == "static" or not current_user.is_authenticated:
            return
        if session.get("_remember") != "set" and "auth_at" not in session:
            # Restored from a remember-cookie: start the clocks now.
            session["auth_at"] = session["seen_at"] = int(time.time())
            session["remember"] = True
        if _session_expired():
            end_session()
            return
        if is_background_poll():  # an open page polling is not someone using it: the idle clock runs on
            return
        now = int(time.time())
        if now - session.get("seen_at", 0) > 60:  # avoid rewriting the cookie on every request
            session["seen_at"] = now
