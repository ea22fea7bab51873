"""OAuth housekeeping: authorization codes never exchanged, tokens long revoked or expired."""
from __future__ import annotations

from app.extensions import db
from app.oauth import service
from jobs.worker import app_job


@app_job
def prune_oauth() -> dict:
    result = service.prune()
    db.session.commit()
    return result
