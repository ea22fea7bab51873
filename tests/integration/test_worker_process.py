"""The real worker and cron processes: `rq worker -w jobs.worker.AppWorker` runs jobs in the app
(forking a child per job), and `jobs/cron_config.py` registers the periodic jobs."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from rq.cron import CronScheduler

from app.extensions import db, rq
from app.members import service
from app.models import EmailToken, TokenPurpose, User, Workspace
from jobs.housekeeping import housekeeping
from tests.conftest import REPO


def test_a_forking_rq_worker_process_delivers_mail(app, smtp, admin, workspace):
    app.config["SMTP_URL"] = smtp.url
    service.invite(db.session.get(Workspace, workspace.id), "new@acme.test", "creator", actor=admin)
    db.session.commit()
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "REDIS_URL": app.config["REDIS_URL"],
           "SMTP_URL": smtp.url, "SECRET_KEY": "x", "BASE_URL": "http://localhost"}
    result = subprocess.run([str(Path(sys.executable).parent / "rq"), "worker", "--burst", "--url",
                             app.config["REDIS_URL"], "-w", "jobs.worker.AppWorker", "mail"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    (message,) = smtp.inbox.to("new@acme.test")
    assert "invited you to Acme" in message["Subject"]


def test_cron_config_registers_the_periodic_jobs(app):
    cron = CronScheduler(connection=rq.connection)
    cron.load_config_from_file(str(REPO / "jobs" / "cron_config.py"))
    names = {job.func_name for job in cron.get_jobs()}
    assert "jobs.housekeeping.housekeeping" in names
    enqueued = cron.enqueue_jobs()
    assert {job.func_name for job in enqueued} == names  # interval jobs fire at once


def test_housekeeping_removes_invitations_nobody_accepted(app, admin, workspace):
    user = service.invite(db.session.get(Workspace, workspace.id), "late@acme.test", "creator", actor=admin)
    db.session.commit()
    token = db.session.scalar(db.select(EmailToken).where(EmailToken.user_id == user.id))
    assert token.purpose == TokenPurpose.invitation.value
    token.expires_at = token.created_at - dt.timedelta(seconds=1)
    db.session.commit()
    assert housekeeping()["invitations_removed"] == 1
    assert db.session.get(User, user.id) is None
    assert db.session.get(User, admin.id) is not None
