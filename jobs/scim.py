"""SCIM housekeeping: the request log is kept for a limited time and count."""
from __future__ import annotations

from app.extensions import db
from jobs.worker import app_job


@app_job
def prune_scim_request_log() -> int:
    from app.scim.requestlog import prune
    deleted = prune()
    db.session.commit()
    return deleted
