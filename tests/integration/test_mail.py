"""Mail goes through the outbox and a real RQ job; failures are retried with backoff, and a message
that cannot be built fails at once, with its reason."""
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


def test_a_line_break_in_a_name_reaches_neither_the_name_nor_the_subject(mail_app, smtp, client, admin, jobs):
    """An admin types a line break into their name when joining; their invitations still go out."""
    import re
    from app.models import User
    from tests.conftest import sign_in
    sign_in(client, admin.email)
    client.post("/settings/members/invite", data={"email": "new.admin@acme.test", "role": "admin"})
    jobs()
    (invitation,) = smtp.inbox.to("new.admin@acme.test")
    link = re.search(r"http://localhost(/invitations/[\w-]+)", smtp.inbox.text(invitation)).group(1)
    client.post("/logout")
    joined = client.post(link, data={"name": "New\r\nAdmin", "password": "a-good-password",
                                     "confirm": "a-good-password"})
    assert joined.status_code == 303
    assert db.session.scalar(db.select(User.name).where(User.email_normalized == "new.admin@acme.test")) == "New Admin"

    invited = client.post("/settings/members/invite", data={"email": "bob@acme.test", "role": "creator"})
    assert invited.status_code == 303
    jobs()
    (message,) = smtp.inbox.to("bob@acme.test")
    assert message["Subject"] == "New Admin invited you to Acme on Gatehouse"
    row = db.session.scalar(db.select(OutboundEmail).where(OutboundEmail.to == "bob@acme.test"))
    assert row.status == "sent"


def test_control_characters_in_a_subject_become_spaces(mail_app, smtp, workspace, jobs):
    """Subjects name workspaces and people: whatever they hold, the message goes out on one line."""
    row = mail.send("someone@acme.test", "Ada\r\nLovelace\x0b(Acme\u2028Labs) invited you", "admin_deactivated",
                    workspace_id=workspace.id, workspace=workspace, user=type("U", (), {"email": "x@acme.test"})())
    db.session.commit()
    jobs()
    (message,) = smtp.inbox.to("someone@acme.test")
    assert message["Subject"] == "Ada Lovelace (Acme Labs) invited you"
    db.session.refresh(row)
    assert row.status == "sent"


def test_a_message_that_cannot_be_built_fails_at_once_with_its_reason(mail_app, smtp, workspace, jobs):
    import datetime as dt
    row = _send("someone@acme.test\r\nBcc: everyone@acme.test")
    jobs()
    db.session.refresh(row)
    assert row.status == "failed" and row.attempts == 1 and row.next_attempt_at is None
    assert row.last_error == ("the message could not be built: ValueError: Header values may not contain linefeed "
                              "or carriage return characters")
    assert ScheduledJobRegistry("mail", connection=rq.connection).get_job_ids() == []  # no retry
    assert len(smtp.inbox) == 0
    row.created_at = row.created_at - dt.timedelta(hours=1)
    db.session.commit()
    assert housekeeping()["mail_requeued"] == 0  # and no endless re-queueing
