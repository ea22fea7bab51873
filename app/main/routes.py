from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select, text

from app.extensions import db, rq
from app.models import Recording

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    return redirect(url_for("main.library" if current_user.is_authenticated else "auth.login"))


@bp.get("/library")
@login_required
def library():
    """My recordings, or (scope=workspace) everyone's: a deactivated member's
    recordings stay visible, credited to "Deactivated user"."""
    scope = "workspace" if request.args.get("scope") == "workspace" else "mine"
    query = select(Recording).where(Recording.workspace_id == current_user.workspace_id)
    if scope == "mine":
        query = query.where(Recording.owner_id == current_user.id)
    recordings = db.session.scalars(query.order_by(Recording.created_at.desc(), Recording.id.desc()).limit(500)).all()
    return render_template("main/library.html", recordings=recordings, scope=scope)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready", never a 500
        db.session.rollback()
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        rq.connection.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return jsonify(checks), 200 if ok else 503
