"""Mail delivery from the outbox, retried with backoff."""
from __future__ import annotations

import datetime as dt
import logging

from rq import Retry

from app.extensions import db, rq
from app.mail import DeliveryError, build_message, deliver, describe_failure
from app.models import OutboundEmail, utcnow
from jobs.worker import app_job

log = logging.getLogger(__name__)
BACKOFF = [10, 30, 120, 600, 1800]  # seconds between attempts


def enqueue_delivery(email_id: int) -> None:
    try:
        rq.queue("mail").enqueue(deliver_email, email_id, job_id=f"mail-{email_id}",
                                 retry=Retry(max=len(BACKOFF), interval=BACKOFF))
    except Exception as exc:  # Redis down: the housekeeping sweep re-enqueues from the outbox
        log.warning("could not enqueue mail %s: %s", email_id, exc)


@app_job
def deliver_email(email_id: int) -> str:
    row = db.session.get(OutboundEmail, email_id)
    if row is None or row.status == "sent":
        return "nothing to do"
    row.attempts += 1
    try:
        message = build_message(row)
    except Exception as exc:  # noqa: BLE001 - the email package raises several kinds, the same on every try
        # Built from the row alone, so it would fail again: failed now, with the reason, never retried.
        log.error("mail %s cannot be built: %s", email_id, exc)
        row.status, row.next_attempt_at = "failed", None
        row.last_error = f"the message could not be built: {describe_failure(exc)}"
        db.session.commit()
        return "failed"
    try:
        deliver(message)
    except DeliveryError as exc:
        row.last_error = str(exc)
        row.status = "failed" if row.attempts > len(BACKOFF) else "queued"
        row.next_attempt_at = (utcnow() + dt.timedelta(seconds=BACKOFF[min(row.attempts - 1, len(BACKOFF) - 1)])
                               if row.status == "queued" else None)
        db.session.commit()
        raise  # RQ retries with backoff
    row.status, row.sent_at, row.last_error = "sent", utcnow(), None
    row.body_text = row.body_html = None  # it may have carried a single-use link
    db.session.commit()
    return "sent"
