"""Authorized domains in Settings → Security, and the emailed verification link.

One URL serves each page and its fragment: /settings/domains is the list
(the Security page includes it), /settings/domains/<id> is one row, which
polls itself while it is pending and answers 204 when nothing changed."""
from __future__ import annotations

import functools
import hashlib

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from app.auth.decorators import admin_required
from app.domains import coverage, service
from app.domains.forms import ActionForm, AddDomainForm, MethodForm
from app.domains.names import relative_to_zone
from app.errors import abort_with
from app.extensions import db, limiter
from app.htmx import render, wants_fragment
from app.models import Domain, Workspace
from app.scoping import get_scoped, get_scoped_or_404
from jobs.domains import enqueue_check

bp = Blueprint("domains", __name__)
SECTION_URL = "settings.security"


def enterprise_admin_required(view):
    @functools.wraps(view)
    @admin_required
    def wrapped(*args, **kwargs):
        if not current_user.workspace.is_enterprise:
            abort_with(403, "Authorized domains need the Enterprise plan. Upgrade to Enterprise to verify domains.")
        return view(*args, **kwargs)
    return wrapped


# --- view models ------------------------------------------------------------------------------

def row_context(domain: Domain) -> dict:
    email_problem = service.email_problem(domain)
    email_sent_at = service.email_sent_at(domain) if domain.method == "email" else None
    check_state = service.check_state(domain)
    # A failed domain, or one about to fail: what that does to sign-in depends on SSO.
    stops_counting = domain.status == "failed" or (domain.is_verified and domain.record_missing_since is not None)
    members_on_it = coverage.members_only_on(domain) if stops_counting else []
    sso_on = coverage.sso_enforced(domain.workspace_id) if stops_counting else None
    # Only an email row asks: a DNS row's check says so itself once it finds the record, while an
    # email row would go on offering a Resend that is refused.
    taken = service.verified_elsewhere(domain) if domain.method == "email" and domain.status == "pending" else None
    return {"domain": domain, "email_problem": email_problem, "email_sent_at": email_sent_at,
            "check_state": check_state, "members_on_it": members_on_it, "sso_on": sso_on,
            "verified_elsewhere": taken,
            "record_host": relative_to_zone(domain.record_name, domain.registrable),
            "version": row_version(domain, email_problem, email_sent_at, check_state, len(members_on_it), sso_on,
                                   taken),
            "inboxes": service.INBOXES}


def row_version(domain: Domain, *extra) -> str:
    """Changes whenever the row would look different: a poll that sends it back gets 204."""
    parts = (domain.method, domain.email_inbox, domain.last_checked_at, domain.check_requested_at,
             domain.record_missing_since, domain.failure_held_at, domain.email_token_expires_at, domain.last_detail,
             *extra)
    return domain.status + "." + hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def outside_context(workspace: Workspace) -> dict:
    """Members no verified domain covers, and whether that blocks them now (SSO on) or only once it is."""
    outside = coverage.members_outside_authorized_domains(workspace.id)
    return {"outside": outside, "outside_blocked_now": bool(coverage.blocked_now(outside))}


def section_context(workspace: Workspace, form: AddDomainForm | None = None) -> dict:
    """The Security page's section (and this area's own pages)."""
    return {"rows": [row_context(d) for d in service.list_domains(workspace.id)],
            "form": form or AddDomainForm(formdata=None),  # empty after an add, not the name just added
            **outside_context(workspace)}


def _domain(domain_id: int) -> Domain:
    return get_scoped_or_404(Domain, current_user.workspace_id, domain_id)


def _back_to_list():
    return redirect(url_for(SECTION_URL) + "#domains", 303)


def _row_response(domain: Domain, *, notice: str | None = None, error: str | None = None, status: int = 200,
                  announce: bool = False):
    response = make_response(render_template("domains/_row.html", notice=notice, error=error, announce=announce,
                                             **row_context(domain)), status)
    response.vary.add("HX-Request")
    return response


def _act(domain_id: int, action, success: str):
    """A row button: run the service, commit, answer with the row (HTMX) or redirect.
    `action` may return a function to call after the commit, which returns a problem
    to show instead of `success` (or None)."""
    if not ActionForm().validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    domain = _domain(domain_id)
    try:
        after_commit = action(domain)
        db.session.commit()
    except service.DomainError as exc:
        db.session.rollback()
        domain = _domain(domain_id)
        if wants_fragment():
            return _row_response(domain, error=str(exc), status=422)
        flash(str(exc), "error")
        return _back_to_list()
    problem = after_commit() if after_commit else None
    if problem:
        if wants_fragment():
            return _row_response(domain, error=problem, status=503)
        flash(problem, "error")
        return _back_to_list()
    message = success.format(domain=domain.display_name)
    if wants_fragment():
        return _row_response(domain, notice=message)
    flash(message, "success")
    return _back_to_list()


# --- the list and its rows --------------------------------------------------------------------

@bp.get("/settings/domains")
@enterprise_admin_required
def index():
    ctx = section_context(current_user.workspace)
    return render("domains/index.html", "domains/_list.html", ctx=ctx, workspace=current_user.workspace)


@bp.post("/settings/domains")
@enterprise_admin_required
def add():
    workspace = current_user.workspace
    form = AddDomainForm()
    if form.validate_on_submit():
        try:
            domain = service.add_domain(workspace, form.name.data, form.method.data, actor=current_user,
                                        inbox=form.inbox.data)
            db.session.commit()
        except service.DomainError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        except IntegrityError:  # committed by someone else between our checks and our write
            db.session.rollback()
            form.name.errors.append(service.add_collision_message(workspace.id, form.name.data))
        else:
            if domain.method == "dns":
                enqueue_check(domain.id)  # shows at once what DNS says today
            message = (f"{domain.display_name} added. Publish the TXT record below; we check automatically."
                       if domain.method == "dns" else
                       f"{domain.display_name} added. We are emailing a link to {domain.inbox_display}.")
            if not wants_fragment():
                flash(message, "success")
                return _back_to_list()
            ctx = section_context(workspace)
            return render("domains/index.html", "domains/_section.html", ctx=ctx, workspace=workspace,
                          added_notice=message)
    ctx = section_context(workspace, form)
    return render("domains/index.html", "domains/_section.html", status=422, ctx=ctx, workspace=workspace)


@bp.get("/settings/domains/<int:domain_id>")
@enterprise_admin_required
def row(domain_id: int):
    domain = get_scoped(Domain, current_user.workspace_id, domain_id)
    if domain is None:
        if wants_fragment():  # removed in another tab: the row goes away (and stops polling)
            response = make_response("", 200)
            response.headers["HX-Trigger"] = "domains-changed"
            return response
        abort_with(404, "This domain is not in your workspace's list (it may have been removed).")
    if not wants_fragment():  # the page that holds the row
        return render("domains/index.html", "domains/_row.html", ctx=section_context(current_user.workspace),
                      workspace=current_user.workspace)
    shown = request.args.get("shown", "")
    if shown == row_context(domain)["version"]:
        return "", 204  # nothing changed: the row (and any open form in it) stays as it is
    status_changed = bool(shown) and shown.partition(".")[0] != domain.status
    response = _row_response(domain, announce=status_changed)
    if status_changed:
        response.headers["HX-Trigger"] = "domains-changed"  # the members panel refreshes
    return response


@bp.get("/settings/domains/outside-members")
@enterprise_admin_required
def outside_members():
    workspace = current_user.workspace
    ctx = outside_context(workspace) if wants_fragment() else section_context(workspace)
    return render("domains/index.html", "domains/_outside.html", ctx=ctx, workspace=workspace)


@bp.post("/settings/domains/<int:domain_id>/check")
@enterprise_admin_required
@limiter.limit("20 per minute", key_func=lambda: f"domain-check:{current_user.id}",
               error_message="Too many checks. Wait a minute; we also check automatically.")
def check(domain_id: int):
    def action(domain):
        service.request_check(domain)
        return lambda: _enqueue_requested_check(domain)
    return _act(domain_id, action, "Checking DNS for {domain} now…")


def _first_check(domain: Domain) -> None:
    """At once, to show what DNS says today; if it cannot be queued, the sweep's, a minute later, will do."""
    enqueue_check(domain.id)


def _enqueue_requested_check(domain: Domain) -> str | None:
    if enqueue_check(domain.id):
        return None
    service.check_not_started(domain)  # the row must not wait for a check that will never run
    db.session.commit()
    return (f"The check of {domain.display_name} could not be started: our job queue is not answering. "
            "Try again in a minute.")


@bp.post("/settings/domains/<int:domain_id>/resend")
@enterprise_admin_required
def resend(domain_id: int):
    return _act(domain_id, lambda d: service.resend_email(d, actor=current_user), "Verification email sent again.")


@bp.post("/settings/domains/<int:domain_id>/restart")
@enterprise_admin_required
def restart(domain_id: int):
    def action(domain):
        service.restart(domain, actor=current_user)
        return (lambda: _first_check(domain)) if domain.method == "dns" else None
    return _act(domain_id, action, "Verification of {domain} restarted for 7 days.")


@bp.post("/settings/domains/<int:domain_id>/method")
@enterprise_admin_required
def switch_method(domain_id: int):
    form = MethodForm()
    if not form.validate_on_submit():  # (a bad CSRF token never gets here: CSRFProtect answers 400 first)
        domain = _domain(domain_id)
        message = ("Choose the inbox to send the verification email to." if form.inbox.errors
                   else "Choose how to verify: by DNS TXT record or by email.")
        if wants_fragment():
            return _row_response(domain, error=message, status=422)
        flash(message, "error")
        return _back_to_list()

    def action(domain):
        service.switch_method(domain, form.method.data, actor=current_user, inbox=form.inbox.data)
        return (lambda: _first_check(domain)) if domain.method == "dns" else None
    return _act(domain_id, action, "{domain} will now be verified the new way.")


@bp.route("/settings/domains/<int:domain_id>/remove", methods=["GET", "POST"])
@enterprise_admin_required
def remove(domain_id: int):
    """A confirm page (with or without JavaScript) that says what removal does to SSO."""
    domain = _domain(domain_id)
    form = ActionForm()
    if request.method == "GET":
        return render_template("domains/remove.html", domain=domain, form=form,
                               members_on_it=coverage.members_covered_only_by(domain))
    if not form.validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    name = domain.display_name
    try:
        lost = service.remove_domain(domain, actor=current_user)
        db.session.commit()
    except service.DomainError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return _back_to_list()
    flash(f"{name} removed. {_what_removal_did(name, lost)}", "success")
    return _back_to_list()


def _what_removal_did(name: str, lost: coverage.LostCover) -> str:
    """The truth about sign-in after a removal (remove.html says the same beforehand)."""
    if not lost.was_verified:
        return "It was not verified, so nothing changes for signing in."
    n = len(lost.members)
    members = f"the {n} member{'' if n == 1 else 's'} whom only it covered"
    if lost.sso_on:
        if not n:
            return (f"SSO is on, so members on {name} are blocked from signing in from now on; "
                    "none of your current members is.")
        return (f"SSO is on, so {members} {'is' if n == 1 else 'are'} now blocked from signing in, "
                "and their open sessions have ended.")
    return (f"SSO is not enforced, so passwords keep working; once it is turned on, "
            f"{members if n else 'members on ' + name} will be blocked from signing in.")


# --- the emailed link (no sign-in: the person at the inbox may have no account) -------------

@bp.route("/domains/verify/<token>", methods=["GET", "POST"])
@limiter.limit("30 per minute", error_message="Too many attempts. Wait a minute and try again.")
def verify_link(token: str):
    form = ActionForm()
    try:
        domain = service.domain_for_link(token)
    except service.LinkError as exc:
        return _link_problem(exc)
    workspace = db.session.get(Workspace, domain.workspace_id)
    if request.method == "GET":
        # Only a POST verifies, so mail scanners that prefetch links verify nothing.
        return render_template("domains/verify.html", domain=domain, workspace=workspace, form=form)
    if not form.validate_on_submit():
        abort_with(400, "This form has expired. Reload the page and try again.")
    try:
        domain = service.verify_by_link(token)
        db.session.commit()
    except service.LinkError as exc:
        db.session.rollback()
        return _link_problem(exc)
    except IntegrityError:
        db.session.rollback()
        return _link_problem(service.LinkError("Another workspace verified this domain at the same moment.", 409))
    return render_template("domains/verified.html", domain=domain, workspace=workspace)


def _link_problem(exc: service.LinkError):
    response = make_response(render_template("domains/link_problem.html", message=str(exc)), exc.status)
    return response

