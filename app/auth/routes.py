"""Email-first sign-in, sign-out, password reset and invitation acceptance."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user

from app.audit.service import record
from app.auth import service, tokens
from app.auth.policy import SignInMethod, sign_in_method
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
    return "account:" + User.normalize_email(request.form.get("email", ""))[:254]


def _ip_limit() -> str:
    return f"{current_app.config['LOGIN_MAX_FAILURES_PER_IP']} per {current_app.config['LOGIN_FAILURE_WINDOW']} second"


def _account_limit() -> str:
    return (f"{current_app.config['LOGIN_MAX_FAILURES_PER_ACCOUNT']} per "
            f"{current_app.config['LOGIN_FAILURE_WINDOW']} second")


TOO_MANY = "Too many failed sign-in attempts. Wait 15 minutes, or reset your password."


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
@limiter.limit(_ip_limit, deduct_when=_failed, scope="login-ip", error_message=TOO_MANY)
@limiter.limit(_account_limit, key_func=_account_key, deduct_when=_failed, scope="login-account",
               error_message=TOO_MANY)
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
    form.workspace.choices = [(u.workspace_id, u.workspace.name) for u in users]
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


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit("10 per hour", methods=["POST"], error_message="Too many reset requests. Try again in an hour.")
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
    service.complete_password_reset(found, form.password.data)
    db.session.commit()
    end_session()
    flash("Your password is set. Sign in with it now.", "success")
    return redirect(url_for("auth.login"), 303)


@bp.route("/invitations/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    found = tokens.find_usable(token, TokenPurpose.invitation)
    if found is None:
        return render_template("auth/link_invalid.html", what="invitation"), 404
    form = AcceptInvitationForm()
    if request.method == "GET" and not form.name.data:
        form.name.data = found.user.name
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("auth/accept_invitation.html", form=form, user=found.user), status
    if not tokens.consume(found):
        return render_template("auth/link_invalid.html", what="invitation"), 404
    user = service.accept_invitation(found, form.name.data, form.password.data)
    method = sign_in_method(user)
    if method is not SignInMethod.password:  # SSO enforced (or blocked): no password session
        db.session.commit()
        flash(f"Welcome to {user.workspace.name}! " + (
            "Your workspace requires single sign-on: sign in with SSO." if method is SignInMethod.sso else
            "Your workspace doesn't allow you to sign in. Contact an admin of your workspace."), "info")
        return redirect(url_for("auth.login"), 303)
    start_session(user, method="password")
    db.session.commit()
    flash(f"Welcome to {user.workspace.name}!", "success")
    return redirect(url_for("main.library"), 303)
