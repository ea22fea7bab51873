"""Outgoing mail: one module renders, one RQ job delivers.

`send()` renders plain text + HTML from templates/mail/<name>.{txt,html} and
writes an OutboundEmail row (a transactional outbox) in the caller's
transaction; after the commit the delivery job is enqueued with the row's id.
A rolled-back change sends nothing; a lost job is re-enqueued by the
housekeeping sweep. Delivery uses SMTP_URL, or writes .eml files under
instance/mail/ when it is unset.
"""
from __future__ import annotations

import logging
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from flask import current_app, render_template
from flask_sqlalchemy.session import Session
from sqlalchemy import event

from app.extensions import db
from app.models import OutboundEmail

log = logging.getLogger(__name__)
_PENDING = "gatehouse_pending_mail"
# What ends a header line, or has no place in one: control characters and Unicode line breaks.
_NOT_IN_A_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def send(to: str, subject: str, template: str, *, workspace_id: int | None = None, topic: str | None = None,
         **context) -> OutboundEmail:
    row = OutboundEmail(workspace_id=workspace_id, to=to, subject=subject[:300], template=template, topic=topic,
                        body_text=render_template(f"mail/{template}.txt", **context),
                        body_html=render_template(f"mail/{template}.html", subject=subject, **context))
    db.session.add(row)
    db.session.flush()
    db.session.info.setdefault(_PENDING, []).append(row.id)
    return row


def build_message(row: OutboundEmail) -> EmailMessage:
    """The message to deliver. The subject is made one line (it names people and workspaces, and a
    line break would make the message unbuildable); anything else that cannot be a header raises."""
    msg = EmailMessage()
    sender = current_app.config["MAIL_FROM"]
    msg["From"] = f"Gatehouse <{sender}>"
    msg["To"] = row.to
    msg["Subject"] = _NOT_IN_A_HEADER.sub(" ", row.subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(idstring=f"outbound-{row.id}", domain=sender.rpartition("@")[2] or "localhost")
    msg.set_content(row.body_text or "")
    msg.add_alternative(row.body_html or "", subtype="html")
    return msg


class DeliveryError(RuntimeError):
    pass


def deliver(msg: EmailMessage) -> None:
    """Hand one message to SMTP (or the .eml folder). Raises DeliveryError with a plain reason."""
    url = current_app.config.get("SMTP_URL")
    if not url:
        folder = Path(current_app.config["MAIL_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (msg["Message-ID"].strip("<>").replace("@", "_") + ".eml")
        path.write_bytes(bytes(msg))
        log.info("mail to %s saved as %s (SMTP_URL unset): %s", msg["To"], path, msg["Subject"])
        return
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        if parts.scheme == "smtps":
            client = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=15,
                                      context=ssl.create_default_context())
        elif parts.scheme == "smtp":
            client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=15)
        else:
            raise DeliveryError(f"SMTP_URL must start with smtp:// or smtps://, not {parts.scheme}://")
        with client:
            if parts.scheme == "smtp" and options.get("starttls", "").lower() in ("1", "true", "yes"):
                client.starttls(context=ssl.create_default_context())
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(describe_failure(exc)) from exc


def describe_failure(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the mail server refused the recipient address"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "the mail server refused our SMTP credentials"
    if isinstance(exc, ConnectionRefusedError):
        return "the mail server refused the connection"
    if isinstance(exc, (TimeoutError, smtplib.SMTPServerDisconnected)):
        return "the mail server did not answer in time"
    return f"{type(exc).__name__}: {exc}"[:300]


@event.listens_for(Session, "after_commit")
def _enqueue_after_commit(session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        from jobs.mail import enqueue_delivery
        for email_id in pending:
            enqueue_delivery(email_id)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session) -> None:
    session.info.pop(_PENDING, None)
