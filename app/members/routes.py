from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.decorators import admin_required
from app.extensions import db
from app.htmx import render
from app.members import deletion, service
from app.members.admin_rule import LastAdminError
from app.members.forms import ActionForm, DeleteForm, InviteForm, RoleForm
from app.models import Role, User, UserSource, UserStatus
from app.models.user_purge import UserPurge
from app.scoping import get_scoped, get_scoped_or_404

bp = Blueprint("members", __name__, url_prefix="/settings/members")


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", 1)), 100000))
    except ValueError:
        return 1


def _render_list(invite_form: InviteForm | None = None, status: int = 200):
    q = request.args.get("q", "")[:200]
    workspace_id = current_user.workspace_id
    members, total = service.search_members(workspace_id, q=q, status=request.args.get("status", ""),
                                            role=request.args.get("role", ""), source=request.args.get("source", ""),
                                            page=_page_number())
    ids = [m.id for m in members]
    return render("members/index.html", "members/_list.html", status=status, members=members, total=total,
                  page=_page_number(), page_size=service.PAGE_SIZE, q=q, invite_form=invite_form or InviteForm(),
                  action_form=ActionForm(), roles=list(Role), statuses=list(UserStatus), sources=list(UserSource),
                  groups=service.groups_by_user(workspace_id, ids),
                  purges=deletion.purges_by_user(workspace_id, ids))


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
    user = _member(user_id)
    if not form.validate_on_submit():
        flash("This form has expired. Reload the page and try again.", "error")
        return redirect(url_for("members.index"), 303)
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
    return _act(user_id, lambda u: service.admin_deactivate(u, actor=current_user, override=_override()),
                "{email} is deactivated.")


@bp.post("/<int:user_id>/reactivate")
@admin_required
def reactivate(user_id: int):
    return _act(user_id, lambda u: service.admin_reactivate(u, actor=current_user, override=_override()),
                "{email} is active again.")


def _override() -> bool:
    """The admin ticked "Override" to change a member the identity provider manages."""
    return request.form.get("override") in ("1", "on", "true")


@bp.post("/<int:user_id>/role")
@admin_required
def change_role(user_id: int):
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Choose one of the roles: Admin, Creator or Creator Lite.", "error")
        return redirect(url_for("members.index"), 303)
    user = _member(user_id)
    if form.role.data == user.role:
        flash(f"{user.email} is already {user.role_label}.", "info")
        return redirect(url_for("members.index"), 303)
    try:
        service.change_role(user, form.role.data, actor=current_user)
    except LastAdminError as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("members.index"), 303)
    db.session.commit()
    if user.id == current_user.id and not user.is_admin:
        # They demoted themself: the members page is for admins, so don't send them to a 403.
        flash(f"You are now {user.role_label}: another admin can make you an admin again.", "success")
        return redirect(url_for("main.library"), 303)
    flash(f"{user.email} is now {user.role_label}.", "success")
    return redirect(url_for("members.index"), 303)


# --- permanent deletion ----------------------------------------------------------------------

def _deletion_page(user: User, form: DeleteForm, status: int = 200):
    return render_template("members/delete.html", member=user, form=form, found=deletion.preview(user)), status


@bp.route("/<int:user_id>/delete", methods=["GET", "POST"])
@admin_required
def delete(user_id: int):
    user = _member(user_id)
    in_progress = deletion.active_purge(user.workspace_id, user.id)
    if in_progress is not None:
        return redirect(url_for("members.deletion_progress", purge_id=in_progress.id), 303)
    if user.status != UserStatus.deactivated.value:
        return render_template("error.html", status=409, title="Deactivate first",
                               message=f"Only deactivated members can be deleted permanently. Deactivate "
                                       f"{user.email} first (or, if your identity provider manages them, "
                                       f"deactivate them there)."), 409
    form = DeleteForm()
    candidates = deletion.transfer_candidates(user)
    form.set_candidates(candidates)
    if not form.validate_on_submit():
        return _deletion_page(user, form, 422 if request.method == "POST" else 200)
    transfer_to = get_scoped(User, user.workspace_id, form.transfer_to.data) if form.transfer_to.data else None
    try:
        purge = deletion.start(user, actor=current_user, transfer_to=transfer_to)
    except deletion.DeletionError as exc:
        db.session.rollback()
        form.transfer_to.errors.append(str(exc))
        return _deletion_page(user, form, 422)
    db.session.commit()
    from jobs.members import enqueue_purge
    enqueue_purge(purge)
    return redirect(url_for("members.deletion_progress", purge_id=purge.id), 303)


@bp.get("/deletions/<int:purge_id>")
@admin_required
def deletion_progress(purge_id: int):
    purge = get_scoped_or_404(UserPurge, current_user.workspace_id, purge_id)
    return render("members/deletion.html", "members/_deletion_progress.html", purge=purge)
