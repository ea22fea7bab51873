"""The purge job in a real `rq worker` process (forking, as in production),
killed with SIGKILL in the middle of the deletion, then resumed by the
periodic sweep: nothing is deleted twice, nothing is left, counts are exact."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.extensions import db, rq
from app.models import AuditEvent, Recording, User, utcnow
from app.models.user_purge import UserPurge
from tests.conftest import REPO

RECORDINGS = 20


def start_worker(app) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app.config["REDIS_URL"],
           "SECRET_KEY": app.config["SECRET_KEY"], "BASE_URL": app.config["BASE_URL"]}
    return subprocess.Popen([str(Path(sys.executable).parent / "rq"), "worker", "--url", env["REDIS_URL"],
                             "-w", "jobs.worker.AppWorker", "--logging_level", "WARNING", "default"],
                            cwd=REPO, env=env, start_new_session=True)


def kill_worker_and_horse(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and the work-horse running the job (RQ puts the horse in
    its own process group, so killing the worker's group alone would spare it)."""
    horses = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent_of(p) == worker.pid]
    for pid in horses + [worker.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(10)
    for pid in horses:
        while Path(f"/proc/{pid}").exists() and "Z" not in _state_of(pid):
            time.sleep(0.01)


def _parent_of(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def fresh(purge_id: int) -> UserPurge:
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(UserPurge, purge_id)


def recordings_of(user_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(Recording).where(Recording.owner_id == user_id))


@pytest.mark.postgres
def test_purge_killed_midway_resumes_exactly(app, admin_client, workspace, make_user, jobs):
    from jobs.members import purge_user, resume_stalled_purges
    leaver = make_user(workspace, "leaver@acme.test", status="deactivated")
    leaver_id = leaver.id
    db.session.add_all([Recording(workspace_id=workspace.id, owner_id=leaver_id, title=f"R{i}") for i in range(RECORDINGS)])
    db.session.commit()
    response = admin_client.post(f"/settings/members/{leaver_id}/delete", data={"confirm": "y"})
    assert response.status_code == 303
    purge_id = db.session.scalar(select(UserPurge.id))
    rq.queue("default").empty()  # the page's job is replaced by a slow one we can kill mid-way
    rq.queue("default").enqueue(purge_user, workspace.id, leaver_id, batch_size=1, pause=0.3)

    worker = start_worker(app)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            purge = fresh(purge_id)
            if purge.counts.get("recordings_deleted", 0) >= 2:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the worker never got going")
        kill_worker_and_horse(worker)  # mid-batch, as a crash or an OOM kill would
    finally:
        if worker.poll() is None:
            kill_worker_and_horse(worker)

    time.sleep(0.5)
    purge = fresh(purge_id)
    done_so_far = purge.counts["recordings_deleted"]
    assert purge.state == "running" and 2 <= done_so_far < RECORDINGS
    assert recordings_of(leaver_id) == RECORDINGS - done_so_far  # progress is exact: batch and count commit together
    assert db.session.get(User, leaver_id) is not None
    time.sleep(0.7)  # nothing is still deleting behind our back (the job pauses 0.3 s between batches)
    assert fresh(purge_id).counts["recordings_deleted"] == done_so_far

    progress = admin_client.get(f"/settings/members/deletions/{purge_id}").get_data(as_text=True)
    assert f"{done_so_far} of {RECORDINGS}" in progress and "Deleting" in progress

    # The job is lost with the worker: the periodic sweep finds the stalled purge and enqueues it again.
    purge.updated_at = utcnow() - dt.timedelta(minutes=10)
    db.session.commit()
    rq.queue("default").empty()
    assert resume_stalled_purges() == 1
    jobs()

    purge = fresh(purge_id)
    assert purge.state == "done"
    assert purge.counts["recordings_deleted"] == RECORDINGS
    assert recordings_of(leaver_id) == 0 and db.session.get(User, leaver_id) is None
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "member.purged")) == 1
