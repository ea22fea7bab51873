from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user

from app.audit import service
from app.auth.decorators import admin_required
from app.htmx import render

bp = Blueprint("audit", __name__, url_prefix="/settings/audit")


@bp.get("")
@admin_required
def index():
    try:
        page = max(1, min(int(request.args.get("page", 1)), 100000))
    except ValueError:
        page = 1
    kind = request.args.get("kind", "")[:64]
    events, total = service.list_events(current_user.workspace_id, kind=kind or None, page=page)
    return render("audit/index.html", "audit/_events.html", events=events, total=total, page=page,
                  page_size=service.PAGE_SIZE, kind=kind, kinds=service.kinds(current_user.workspace_id))
