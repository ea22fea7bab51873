"""SSO background work: fetch IdP metadata (on request and daily, recording
certificate rotations) and warn admins before a signing certificate expires."""
from __future__ import annotations

import datetime as dt
import logging

from flask import current_app
from sqlalchemy import delete, select, update

from app import mail
from app.audit.service import record
from app.extensions import db, rq
from app.models import Role, SamlLoginLog, SsoCertificate, SsoConnection, User, UserStatus, utcnow
from app.sso import saml
from app.sso.connections import apply_idp_config
from app.sso.metadata import MetadataError, fetch_metadata, parse_metadata
from app.urls import external_url
from jobs.worker import app_job

log = logging.getLogger(__name__)
EXPIRY_WARNING = dt.timedelta(days=30)
LOGIN_LOG_KEPT = dt.timedelta(days=90)  # the SAML login log is for troubleshooting, not an archive


def enqueue_metadata_fetch(connection_pk: int) -> None:
    try:
        rq.queue("default").enqueue(fetch_connection_metadata, connection_pk)
    except Exception as exc:  # Redis down: the daily refresh picks it up (status stays pending)
        log.warning("could not enqueue metadata fetch for connection %s: %s", connection_pk, exc)


@app_job
def fetch_connection_metadata(connection_pk: int) -> str:
    """Fetch and apply one connection's metadata URL; the outcome is shown on the page.

    The fetch can take its 30 seconds, during which the admin may give another URL: the outcome
    lands only if the connection still names the URL it came from. That check is the first write
    of the transaction that records the outcome, so from it to the commit no request can change
    the URL (PostgreSQL locks the row, SQLite the database); none is held open across the fetch."""
    conn = db.session.get(SsoConnection, connection_pk)
    if conn is None or not conn.metadata_url:
        return "nothing to do"
    url = conn.metadata_url
    db.session.rollback()
    try:
        xml = fetch_metadata(url, production=current_app.config["PRODUCTION"])
        config = parse_metadata(xml)
        if not _still_the_url(connection_pk, url, metadata_status="ok", metadata_error=None,
                              metadata_fetched_at=utcnow(), metadata_xml=xml.decode("utf-8", "replace")):
            return "changed meanwhile"
        conn = db.session.get(SsoConnection, connection_pk, populate_existing=True)
        changes = apply_idp_config(conn, config, source="metadata", actor=None)  # may refuse the settings
    except Exception as exc:  # noqa: BLE001 - a MetadataError, or anything else (the job's time limit):
        # the page must leave "Fetching…" either way. metadata_fetched_at keeps the last delivery.
        db.session.rollback()
        reason = str(exc) if isinstance(exc, MetadataError) else "The fetch stopped unexpectedly. Try again."
        if not _still_the_url(connection_pk, url, metadata_status="failed", metadata_error=reason[:500]):
            return "changed meanwhile"
        conn = db.session.get(SsoConnection, connection_pk, populate_existing=True)
        record(conn.workspace_id, "sso.metadata_fetch_failed", target=conn, url=url, error=reason[:300])
        db.session.commit()
        if not isinstance(exc, MetadataError):
            log.exception("metadata fetch of connection %s failed", connection_pk)
        return f"failed: {reason}"
    db.session.commit()
    return f"ok, {len(changes)} change(s)"


def _still_the_url(connection_pk: int, url: str, **outcome) -> bool:
    """Record the fetch's outcome if the connection still names `url` (else roll back)."""
    claimed = db.session.execute(update(SsoConnection).where(SsoConnection.id == connection_pk,
                                                             SsoConnection.metadata_url == url).values(**outcome)
                                 .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        db.session.rollback()
    return claimed == 1


@app_job
def refresh_all_metadata() -> dict:
    """Daily: re-fetch every connection that has a metadata URL (certificate rotation);
    drop expired sign-in requests and replay entries, and old login-log rows."""
    ids = db.session.scalars(select(SsoConnection.id).where(SsoConnection.metadata_url.is_not(None))).all()
    results = {}
    for connection_pk in ids:
        try:
            results[connection_pk] = fetch_connection_metadata(connection_pk)
        except Exception:  # noqa: BLE001 - one connection's surprise must not stop the others' rotation
            db.session.rollback()
            log.exception("metadata refresh of connection %s failed", connection_pk)
            results[connection_pk] = "error"
    saml.purge_expired()
    db.session.execute(delete(SamlLoginLog).where(SamlLoginLog.created_at < utcnow() - LOGIN_LOG_KEPT))
    db.session.commit()
    return results


@app_job
def warn_expiring_certificates() -> int:
    """Email the workspace's admins once per certificate, 30 days before it expires. A draft
    holds copies of the live certificates: only the live ones are warned about, and their
    copies are marked too, so promoting the draft doesn't warn again."""
    now = utcnow()
    certs = db.session.scalars(select(SsoCertificate).join(SsoConnection).where(
        SsoConnection.is_staged.is_(False), SsoCertificate.not_after <= now + EXPIRY_WARNING,
        SsoCertificate.not_after > now, SsoCertificate.expiry_warned_at.is_(None))).all()
    warned = 0
    for cert in certs:
        conn = cert.connection
        admins = db.session.scalars(select(User).where(User.workspace_id == cert.workspace_id,
                                                       User.role == Role.admin.value,
                                                       User.status == UserStatus.active.value)).all()
        for admin in admins:
            mail.send(admin.email, f"Your SSO signing certificate expires on {cert.not_after:%Y-%m-%d}",
                      "sso_certificate_expiring", workspace_id=cert.workspace_id, topic=f"sso-cert:{cert.id}",
                      admin=admin, cert=cert, connection=conn, days_left=(cert.not_after - now).days,
                      settings_url=external_url("settings.security") + "#sso")
        cert.expiry_warned_at = now
        db.session.execute(update(SsoCertificate).where(
            SsoCertificate.workspace_id == cert.workspace_id, SsoCertificate.fingerprint == cert.fingerprint,
            SsoCertificate.expiry_warned_at.is_(None)).values(expiry_warned_at=now))
        record(cert.workspace_id, "sso.certificate_expiry_warned", target=conn, fingerprint=cert.fingerprint,
               not_after=cert.not_after.isoformat())
        warned += 1
    db.session.commit()
    return warned
