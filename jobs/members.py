"""Permanent deletion of a member's data (see app.members.deletion)."""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.extensions import db, rq
from app.members import deletion
from app.models.user_purge import UserPurge
from jobs.worker import app_job

log = logging.getLogger(__name__)

PURGE_TIMEOUT = 3600  # seconds; a killed or timed-out run is resumed by the sweep


@app_job
def purge_user(workspace_id: int, user_id: int, batch_size: int = deletion.DEFAULT_BATCH_SIZE,
               pause: float = 0.0, purge_id: int | None = None) -> dict:
    """Delete the user's data in batches; safe to run again at any point (it resumes).
    The purge is the one the job was enqueued for (jobs queued before purge_id existed: the latest)."""
    query = select(UserPurge).where(UserPurge.workspace_id == workspace_id, UserPurge.user_id == user_id)
    if purge_id is not None:
        query = query.where(UserPurge.id == purge_id)
    purge = db.session.scalar(query.order_by(UserPurge.id.desc()).limit(1))
    if purge is None:
        return {"state": "nothing to do"}
    purge = deletion.run(purge.id, batch_size=batch_size, pause=pause)
    return {"state": purge.state, "counts": purge.counts}


def enqueue_purge(purge: UserPurge) -> None:
    try:
        rq.queue("default").enqueue(purge_user, purge.workspace_id, purge.user_id, purge_id=purge.id,
                                    job_id=f"purge-{purge.id}", job_timeout=PURGE_TIMEOUT)
    except Exception as exc:  # Redis down: the sweep below enqueues it from the database
        log.warning("could not enqueue purge %s: %s", purge.id, exc)


@app_job
def resume_stalled_purges() -> int:
    """Periodic: purges whose job was lost (worker killed, Redis flushed) start again where they stopped."""
    stalled = deletion.stalled()
    for purge in stalled:
        enqueue_purge(purge)
    return len(stalled)
