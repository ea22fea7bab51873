"""Mail goes through the outbox and a real RQ job; failures are retried with backoff."""
from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from rq import Queue
from rq.registry import ScheduledJobRegistry

from app import mail
from app.extensions import db, rq
from app.models import OutboundEmail, Workspace
from jobs.housekeeping import housekeeping


def _send(to="someone@acme.test"):
    workspace = db.session.scalar(db.select(Workspace))
    row = mail.send(to, "Hello", "admin_deactivated", workspace_id=workspace.id, workspace=workspace,
                    user=type("U", (), {"email": "x@acme.test"})())
    db.session.commit()
    return row


def test_without_smtp_url_messages_are_saved_as_eml(app, workspace, jobs):
    row = _send()
    jobs()
    (path,) = Path(app.config["MAIL_DIR"]).glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == "someone@acme.test" and message["Subject"] == "Hello"
    assert message.get_body(preferencelist=("plain",)) and message.get_body(preferencelist=("html",))
    db.session.refresh(row)
    assert row.status == "sent" and row.body_text is None and row.body_html is None


def test_a_rolled_back_change_sends_nothing(app, workspace, jobs):
    workspace = db.session.scalar(db.select(Workspace))
    mail.send("x@acme.test", "Never", "admin_deactivated", workspace=workspace, user=workspace)
    db.session.rollback()
    assert Queue("mail", connection=rq.connection).count == 0
    assert db.session.scalar(db.select(db.func.count()).select_from(OutboundEmail)) == 0


def test_smtp_delivery_and_retry_with_backoff(app, workspace, smtp, jobs):
    app.config["SMTP_URL"] = "smtp://127.0.0.1:1"  # nothing listens there
    row = _send()
    jobs()
    db.session.refresh(row)
    assert row.status == "queued" and row.attempts == 1
    assert row.last_error == "the mail server refused the connection"
    scheduled = ScheduledJobRegistry("mail", connection=rq.connection)
    assert scheduled.get_job_ids() == [f"mail-{row.id}"]  # RQ retries it later, with backoff
    app.config["SMTP_URL"] = smtp.url
    rq.queue("mail").enqueue_job(rq.queue("mail").fetch_job(f"mail-{row.id}"))  # the retry comes due
    jobs()
    db.session.refresh(row)
    assert row.status == "sent" and row.attempts == 2
    assert smtp.inbox.to("someone@acme.test")


def test_housekeeping_requeues_mail_whose_job_was_lost(app, workspace, smtp, jobs):
    import datetime as dt
    app.config["SMTP_URL"] = smtp.url
    row = _send()
    rq.connection.flushall()  # Redis lost the job
    row.created_at = row.created_at - dt.timedelta(minutes=10)
    db.session.commit()
    assert housekeeping()["mail_requeued"] == 1
    jobs()
    db.session.refresh(row)
    assert row.status == "sent" and len(smtp.inbox) == 1


def test_housekeeping_wipes_mail_that_gave_up_and_deletes_old_mail(app, workspace):
    import datetime as dt
    from jobs.housekeeping import KEEP_MAIL
    failed, old, recent = _send("failed@acme.test"), _send("old@acme.test"), _send("recent@acme.test")
    failed.status, failed.attempts = "failed", 6
    old.status, old.body_text, old.body_html = "sent", None, None
    old.created_at = old.created_at - KEEP_MAIL - dt.timedelta(hours=1)
    db.session.commit()
    failed_id, old_id, recent_id = failed.id, old.id, recent.id
    assert failed.body_text and failed.body_html  # given up on, and still carrying its body

    result = housekeeping()
    assert result["failed_mail_wiped"] == 1 and result["mail_deleted"] == 1
    db.session.expire_all()
    assert db.session.get(OutboundEmail, failed_id).body_text is None
    assert db.session.get(OutboundEmail, failed_id).body_html is None
    assert db.session.get(OutboundEmail, old_id) is None
    assert db.session.get(OutboundEmail, recent_id).body_text  # still queued: its job delivers it
    assert housekeeping()["failed_mail_wiped"] == 0  # nothing left to do the second time
