"""The Single Sign-On section of Settings → Security: its context, and one
renderer that serves the whole page or just the section (HTMX)."""
from __future__ import annotations

import datetime as dt

from flask import make_response, render_template
from flask_login import current_user

from app.extensions import db
from app.scoping import scoped
from app.htmx import wants_fragment
from app.models import SamlLoginLog, Workspace, utcnow
from app.sso import connections, recovery, sp
from app.sso.forms import (CertificateForm, EnableForm, IdpForm, JitForm, ManualForm, MetadataUrlForm,
                           MetadataXmlForm)

EXPIRY_WARNING_DAYS = 30


def certificate_rows(conn) -> list[dict]:
    now = utcnow()
    rows = []
    for cert in conn.certificates if conn else []:
        days = (cert.not_after - now).days
        rows.append({"cert": cert, "days_left": days, "expired": cert.not_after <= now,
                     "expiring": now < cert.not_after <= now + dt.timedelta(days=EXPIRY_WARNING_DAYS)})
    return rows


def last_test(workspace_id: int) -> SamlLoginLog | None:
    return db.session.scalar(scoped(SamlLoginLog, workspace_id).where(SamlLoginLog.is_test.is_(True))
                             .order_by(SamlLoginLog.created_at.desc(), SamlLoginLog.id.desc()).limit(1))


def context(workspace: Workspace, *, error: dict | None = None, forms: dict | None = None) -> dict:
    live = connections.live_connection(workspace.id)
    staged = connections.staged_connection(workspace.id)
    editing = staged or live
    forms = forms or {}
    ctx = {
        "workspace": workspace, "live": live, "staged": staged, "editing": editing, "error": error or {},
        "idp_form": forms.get("idp") or IdpForm(formdata=None, idp=(editing.idp_kind if editing else "okta")),
        "url_form": forms.get("url") or MetadataUrlForm(formdata=None,
                                                        metadata_url=editing.metadata_url if editing else None),
        "xml_form": forms.get("xml") or MetadataXmlForm(formdata=None),
        "manual_form": forms.get("manual") or ManualForm(formdata=None),
        "cert_form": forms.get("cert") or CertificateForm(formdata=None),
        "jit_form": forms.get("jit") or JitForm(formdata=None, jit_enabled=live.jit_enabled if live else False,
                                                jit_role=live.jit_role if live else workspace.default_role),
        "enable_form": EnableForm(formdata=None),
        "sp": sp.sp_urls(live.connection_id) if live else None,
        "certificates": certificate_rows(editing),
        "live_certificates": certificate_rows(live) if staged else [],
        "last_test": last_test(workspace.id),
        "polling": bool(editing and editing.metadata_status == "pending"),
        "test_blocked": (connections.untested_metadata_message(editing)
                         if editing and editing.is_configured and editing.metadata_url_unproven else None),
        "recovery_codes_left": recovery.unused_count(current_user) if live and live.is_on else None,
    }
    return ctx


def render_section(workspace: Workspace, status: int = 200, **kw):
    """The section alone for HTMX; else the whole Security page around it."""
    ctx = context(workspace, **kw)
    if wants_fragment():
        response = make_response(render_template("sso/_section.html", ctx=ctx), status)
    else:
        from app.settings.routes import LOCKED_FEATURES
        from app.settings.sections import security_sections
        sections = [(s, ctx if s.key == "sso" else s.context(workspace)) for s in security_sections()]
        response = make_response(render_template("settings/security.html", workspace=workspace, sections=sections,
                                                 locked_features=LOCKED_FEATURES), status)
    response.vary.add("HX-Request")
    return response
