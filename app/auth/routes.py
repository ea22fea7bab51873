"""Email-first sign-in, sign-out, password reset and invitation acceptance."""
from __future__ import annotations

import math
import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from limits import parse

from app.audit.service import record
from app.auth import service, tokens
from app.auth.policy import SignInMethod, sign_in_method, sign_in_method_once_active
from app.auth.forms import (AcceptInvitationForm, EmailStepForm, ForgotPasswordForm, LogoutForm, PasswordStepForm,
                            SetPasswordForm, WorkspaceChoiceForm)
from app.auth.sessions import end_session, start_session
from app.extensions import db, limiter
from app.models import TokenPurpose, User
from app.urls import safe_next

bp = Blueprint("auth", __name__)


def _failed(response) -> bool:
    return response.status_code == 422


def _account_key() -> str:
    return _account_key_for(request.form.get("email", ""))


def _account_key_for(email: str) -> str:
    return "account:" + User.normalize_email(email)[:254]


def _ip_limit() -> str:
    return f"{current_app.config['LOGIN_MAX_FAILURES_PER_IP']} per {current_app.config['LOGIN_FAILURE_WINDOW']} second"


def _account_limit() -> str:
    return (f"{current_app.config['LOGIN_MAX_FAILURES_PER_ACCOUNT']} per "
            f"{current_app.config['LOGIN_FAILURE_WINDOW']} second")


def _wait() -> str:
    minutes = math.ceil(current_app.config["LOGIN_FAILURE_WINDOW"] / 60)
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def _too_many() -> str:
    """The account's limit: a password reset lifts it (_forgive_failed_sign_ins)."""
    return f"Too many failed sign-in attempts. Wait {_wait()}, or reset your password."


def _too_many_here() -> str:
    """The address's limit: colleagues behind one NAT share it, and no reset lifts it."""
    return f"Too many failed sign-in attempts from your network. Wait {_wait()} and try again."


def _forgive_failed_sign_ins(email: str) -> None:
    """A new password lifts the per-account limit, as its message promises. Redis down: the
    counter expires on its own, and the reset stands."""
    try:
        limiter.limiter.clear(parse(_account_limit()), _account_key_for(email), "login-account")
    except limiter.storage.base_exceptions:
        current_app.logger.warning("could not clear the failed sign-ins of %s", email, exc_info=True)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_after_login_url())
    if request.args.get("next"):
        session["next"] = safe_next(request.args["next"])
    form = EmailStepForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form), 422 if request.method == "POST" else 200
    sso_url = service.sso_start_url(form.email.data)
    if sso_url:
        return redirect(sso_url, 303)
    return render_template("auth/password.html", form=PasswordStepForm(email=form.email.data, formdata=None),
                           sso_url=service.sso_offer(form.email.data))


@bp.post("/login/password")
@limiter.limit(_ip_limit, deduct_when=_failed, scope="login-ip", error_message=_too_many_here)
# Shared: its counter is named "login-account" alone, so a password reset can clear it.
@limiter.shared_limit(_account_limit, "login-account", key_func=_account_key, deduct_when=_failed,
                      error_message=_too_many)
def password_step():
    form = PasswordStepForm()
    if not form.validate_on_submit():
        return render_template("auth/password.html", form=form), 422
    outcome = service.check_password(form.email.data, form.password.data)
    if not outcome.users:
        form.password.errors.append(outcome.refusal or "That email and password don't match.")
        sso_url = service.sso_offer(form.email.data) if outcome.refusal else None
        return render_template("auth/password.html", form=form, sso_url=sso_url), 422
    if len(outcome.users) > 1:
        # The same email in several workspaces: ask which, after the password proved who they are.
        # Each account is remembered with its session version, for a few minutes, once.
        session["pending_login"] = [[u.id, u.session_version] for u in outcome.users]
        session["pending_login_at"] = int(time.time())
        session["pending_remember"] = bool(form.remember.data)
        return redirect(url_for("auth.choose_workspace"), 303)
    return _complete(outcome.users[0], remember=form.remember.data)


PENDING_LOGIN_SECONDS = 300


def _pending_login_users() -> list[User]:
    """The accounts the password step proved, still signing in by password now: not
    expired, not changed since (a new password or "sign out everywhere" bumps the session
    version), and not moved behind SSO meanwhile."""
    if int(time.time()) - session.get("pending_login_at", 0) > PENDING_LOGIN_SECONDS:
        return []
    users = []
    for entry in session.get("pending_login") or []:
        if not (isinstance(entry, list) and len(entry) == 2):
            continue
        user = db.session.get(User, entry[0]) if isinstance(entry[0], int) else None
        if user is not None and user.session_version == entry[1] and \
                sign_in_method(user) is SignInMethod.password:
            users.append(user)
    return users


@bp.route("/login/workspace", methods=["GET", "POST"])
def choose_workspace():
    users = _pending_login_users()
    if not users:
        for key in ("pending_login", "pending_login_at", "pending_remember"):
            session.pop(key, None)
        flash("Enter your email and password again.", "info")
        return redirect(url_for("auth.login"))
    form = WorkspaceChoiceForm()
    # The slug too: two workspaces may have the same name.
    form.workspace.choices = [(u.workspace_id, f"{u.workspace.name} ({u.workspace.slug})") for u in users]
    if not form.validate_on_submit():
        return render_template("auth/choose_workspace.html", form=form), 422 if request.method == "POST" else 200
    user = next(u for u in users if u.workspace_id == form.workspace.data)
    return _complete(user, remember=session.get("pending_remember", False))


def _complete(user: User, *, remember: bool):
    start_session(user, method="password", remember=bool(remember))
    record(user.workspace_id, "auth.signed_in", actor=user, target=user, method="password")
    db.session.commit()
    return redirect(_after_login_url(), 303)


def _after_login_url() -> str:
    return safe_next(session.pop("next", None)) or url_for("main.library")


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    form = LogoutForm()
    if request.method == "GET":
        return render_template("auth/logout.html", form=form)
    if not form.validate_on_submit():
        return render_template("auth/logout.html", form=form), 400
    if current_user.is_authenticated:
        record(current_user.workspace_id, "auth.signed_out", actor=current_user, target=current_user)
        db.session.commit()
    end_session()
    flash("You have signed out.", "info")
    return redirect(url_for("auth.login"), 303)


def _reset_ip_limit() -> str:
    return f"{current_app.config['PASSWORD_RESET_MAX_PER_IP']} per hour"


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_reset_ip_limit, methods=["POST"], error_message="Too many reset requests. Try again in an hour.")
# Per address too, whoever asks (so it says nothing about whether an account exists): one
# inbox can't be flooded from many addresses.
@limiter.limit("5 per hour", methods=["POST"], key_func=_account_key, scope="reset-address",
               error_message="Several reset links were sent to this address in the last hour. Use the latest one, "
                             "or try again in an hour.")
def forgot_password():
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        return render_template("auth/forgot.html", form=form), 422 if request.method == "POST" else 200
    service.send_password_reset(form.email.data)
    db.session.commit()
    return render_template("auth/forgot_sent.html", email=form.email.data)


# Why a member may not use a password, and what to do instead.
_NO_PASSWORD_SIGN_IN = {
    SignInMethod.sso: "your workspace requires single sign-on. Sign in with SSO.",
    SignInMethod.blocked: "your workspace doesn't allow you to sign in. Contact an admin of your workspace.",
}


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    found = tokens.find_usable(token, TokenPurpose.password_reset)
    if found is None:
        return render_template("auth/link_invalid.html", what="password reset link"), 404
    form = SetPasswordForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("auth/reset.html", form=form, user=found.user), status
    if not tokens.consume(found):
        return render_template("auth/link_invalid.html", what="password reset link"), 404
    user = service.complete_password_reset(found, form.password.data)
    db.session.commit()
    _forgive_failed_sign_ins(user.email)
    end_session()
    method = sign_in_method(user)
    if method is SignInMethod.password:
        flash("Your password is set. Sign in with it now.", "success")
    else:
        flash("Your password is set, but you can't sign in with it: " + _NO_PASSWORD_SIGN_IN[method], "info")
    return redirect(url_for("auth.login"), 303)


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    found = tokens.find_usable(token, TokenPurpose.invitation)
    if found is None:
        return _invitation_invalid(token)
    method = sign_in_method_once_active(found.user)
    if method is not SignInMethod.password:
        # No password to choose: signing in through SSO accepts the invitation (app.sso.signin);
        # someone SSO would block can't join with this address at all.
        sso_url = (service.sso_start_for(found.user) or url_for("auth.login")) if method is SignInMethod.sso else None
        return render_template("auth/accept_invitation.html", user=found.user, method=method, sso_url=sso_url), \
            200 if request.method == "GET" else 409
    form = AcceptInvitationForm()
    if request.method == "GET" and not form.name.data:
        form.name.data = found.user.name
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("auth/accept_invitation.html", form=form, user=found.user, method=method), status
    if not tokens.consume(found):
        return _invitation_invalid(token)
    user = service.accept_invitation(found, form.name.data, form.password.data)
    start_session(user, method="password")
    db.session.commit()
    flash(f"Welcome to {user.workspace.name}!", "success")
    return redirect(url_for("main.library"), 303)


def _invitation_invalid(token: str):
    """An invitee can't get a new invitation themself: say who can, naming the workspace when
    the link's row is still there (a revoked invitation's went with the invitee)."""
    return render_template("auth/link_invalid.html", what="invitation",
                           invitee=service.invitee_of_link(token)), 404
