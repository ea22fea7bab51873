from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import current_user

from app.auth.decorators import admin_required
from app.extensions import db
from app.htmx import render
from app.members import service
from app.members.admin_rule import LastAdminError
from app.members.forms import ActionForm, InviteForm, RoleForm
from app.models import Role, User, UserStatus
from app.scoping import get_scoped_or_404

bp = Blueprint("members", __name__, url_prefix="/settings/members")


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", 1)), 100000))
    except ValueError:
        return 1


def _render_list(invite_form: InviteForm | None = None, status: int = 200):
    q = request.args.get("q", "")[:200]
    members, total = service.search_members(current_user.workspace_id, q=q, status=request.args.get("status", ""),
                                            role=request.args.get("role", ""), page=_page_number())
    return render("members/index.html", "members/_list.html", status=status, members=members, total=total,
                  page=_page_number(), page_size=service.PAGE_SIZE, q=q, invite_form=invite_form or InviteForm(),
                  action_form=ActionForm(), roles=list(Role), statuses=list(UserStatus))


@bp.get("")
@admin_required
def index():
    return _render_list()


@bp.post("/invite")
@admin_required
def invite():
    form = InviteForm()
    if not form.validate_on_submit():
        return _render_list(form, 422)
    try:
        user = service.invite(current_user.workspace, form.email.data, form.role.data, actor=current_user,
                              name=form.name.data or "")
    except service.MemberError as exc:
        form.email.errors.append(str(exc))
        db.session.rollback()
        return _render_list(form, 422)
    db.session.commit()
    flash(f"Invitation sent to {user.email}.", "success")
    return redirect(url_for("members.index"), 303)


def _member(user_id: int) -> User:
    return get_scoped_or_404(User, current_user.workspace_id, user_id)


def _act(user_id: int, action, success: str):
    form = ActionForm()
    if not form.validate_on_submit():
        return _render_list(status=400)
    user = _member(user_id)
    try:
        action(user)
    except (service.MemberError, LastAdminError) as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("members.index"), 303)
    db.session.commit()
    flash(success.format(email=user.email), "success")
    return redirect(url_for("members.index"), 303)


@bp.post("/<int:user_id>/resend")
@admin_required
def resend(user_id: int):
    return _act(user_id, lambda u: service.resend_invitation(current_user.workspace, u, actor=current_user),
                "Invitation sent again to {email}.")


@bp.post("/<int:user_id>/revoke")
@admin_required
def revoke(user_id: int):
    return _act(user_id, lambda u: service.revoke_invitation(current_user.workspace, u, actor=current_user),
                "Invitation to {email} revoked.")


@bp.post("/<int:user_id>/deactivate")
@admin_required
def deactivate(user_id: int):
    return _act(user_id, lambda u: service.deactivate(u, actor=current_user), "{email} is deactivated.")


@bp.post("/<int:user_id>/reactivate")
@admin_required
def reactivate(user_id: int):
    return _act(user_id, lambda u: service.reactivate(u, actor=current_user), "{email} is active again.")


@bp.post("/<int:user_id>/role")
@admin_required
def change_role(user_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Choose one of the roles: Admin, Creator or Creator Lite.", "error")
        return redirect(url_for("members.index"), 303)
    user = _member(user_id)
    try:
        service.change_role(user, form.role.data, actor=current_user)
    except LastAdminError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("members.index"), 303)
    db.session.commit()
    flash(f"{user.email} is now {user.role_label}.", "success")
    return redirect(url_for("members.index"), 303)
