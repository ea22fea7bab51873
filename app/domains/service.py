"""Authorized domains: the rules. Views, the CLI, jobs and the SSO area call
these; these never commit and never read `request`.

Public API used by the SSO area: `add_domain`, `verified_domain_covering`,
`email_authorized`, `email_domains_of`, `workspace_id_for_email_domain` (and app.domains.coverage)."""
from __future__ import annotations

import datetime as dt
import hmac
import secrets

from sqlalchemy import Exists, bindparam, exists, select

from app import mail
from app.audit.service import record
from app.domains import verification
from app.domains.coverage import (LostCover, end_sessions_of_newly_blocked, members_covered_only_by,
                                   sso_enforced)
from app.domains.names import (InvalidDomain, email_domain, normalize_domain, parents_and_self, refuse_public,
                               registrable_domain, to_unicode)
from app.extensions import db
from app.members.admin_rule import admins_who_can_sign_in, lock_admins
from app.models import Domain, DomainMethod, DomainStatus, OutboundEmail, User, Workspace, utcnow
from app.models.domains import OPERATOR
from app.security import hash_secret, new_secret
from app.urls import external_url

INBOXES = ("admin", "administrator", "hostmaster", "postmaster", "webmaster")
LINK_LIFETIME = dt.timedelta(days=7)
RESEND_INTERVAL = dt.timedelta(seconds=60)  # between two emails from one workspace to one inbox
MAX_EMAILS_PER_DAY = 5  # from one workspace to one inbox
MAX_EMAILS_PER_INBOX_PER_DAY = 20  # to one inbox, from every workspace together
CHECK_DEADLINE = dt.timedelta(minutes=2)  # a "Re-check now" not answered by then was lost


class DomainError(ValueError):
    """A rule refused the change; the message is written for the admin."""


class LinkError(ValueError):
    """An emailed verification link that cannot be used; `status` is the HTTP status to show."""

    def __init__(self, message: str, status: int = 400, domain: Domain | None = None):
        super().__init__(message)
        self.status, self.domain = status, domain


# --- reading ----------------------------------------------------------------------------------

def list_domains(workspace_id: int) -> list[Domain]:
    return list(db.session.scalars(select(Domain).where(Domain.workspace_id == workspace_id)
                                   .order_by(Domain.name, Domain.id)))


def verified_domain_covering(workspace_id: int, email_or_domain: str) -> Domain | None:
    """The workspace's verified domain equal to, or a parent of, the email's domain."""
    name = email_domain(email_or_domain)
    if not name:
        return None
    candidates = parents_and_self(name)
    found = db.session.scalars(select(Domain).where(Domain.workspace_id == workspace_id, Domain.name.in_(candidates),
                                                    Domain.status == DomainStatus.verified.value)).all()
    return max(found, key=lambda d: len(d.name), default=None)


def email_authorized(workspace_id) -> Exists:
    """"A verified domain of the workspace covers the email", as SQL, for a caller that
    reads the member in the same query (the SSO sign-in). `workspace_id` is a column or
    a bind parameter; bind `email_domains` to email_domains_of(email). Callers build
    their statement once: it runs on every sign-in."""
    return exists().where(Domain.workspace_id == workspace_id,
                          Domain.name.in_(bindparam("email_domains", expanding=True)),
                          Domain.status == DomainStatus.verified.value)


def email_domains_of(email: str) -> list[str]:
    """The domains that could cover this email: its own and its parents (none for a non-email)."""
    name = email_domain(email)
    return parents_and_self(name) if name else []


def workspace_id_for_email_domain(email: str) -> int | None:
    """The workspace that verified the domain covering this email (at most one does)."""
    name = email_domain(email)
    if not name:
        return None
    found = db.session.execute(select(Domain.workspace_id, Domain.name).where(
        Domain.name.in_(parents_and_self(name)), Domain.status == DomainStatus.verified.value)).all()
    return max(found, key=lambda row: len(row.name))[0] if found else None


def check_state(domain: Domain, now: dt.datetime | None = None) -> str | None:
    """"running" while an asked-for check ("Re-check now") is awaited, "lost" once it is
    overdue (its job never ran: Redis flushed or down, worker gone), None otherwise."""
    requested = domain.check_requested_at
    if requested is None or (domain.last_checked_at is not None and domain.last_checked_at >= requested):
        return None
    return "running" if (now or utcnow()) - requested < CHECK_DEADLINE else "lost"


def email_problem(domain: Domain) -> str | None:
    """Why the latest verification email has not gone out yet, if it has not."""
    latest = _latest_email(domain)
    if latest is None or latest.status == "sent" or not latest.last_error:
        return None
    if latest.status == "failed":
        return f"email not sent: {latest.last_error}. Send it again, or use the DNS method."
    return f"email not sent yet: {latest.last_error} (we will retry)"


def email_sent_at(domain: Domain) -> dt.datetime | None:
    """When the latest verification email went out (None while it waits)."""
    latest = _latest_email(domain)
    return latest.sent_at if latest is not None and latest.status == "sent" else None


def verified_elsewhere(domain: Domain) -> str | None:
    """Why this workspace can no longer verify the domain, if another workspace has verified
    it (or a parent or subdomain of it) since it was added here; the row says so too."""
    if verification.conflicting_domain(domain.name, domain.workspace_id) is None:
        return None
    return (f"Another workspace has verified {domain.display_name} (or a parent or subdomain of it) since; it cannot "
            "be verified here.")


def _latest_email(domain: Domain) -> OutboundEmail | None:
    if domain.method != DomainMethod.email.value or domain.status != DomainStatus.pending.value:
        return None
    return db.session.scalar(select(OutboundEmail).where(OutboundEmail.topic == _topic(domain))
                             .order_by(OutboundEmail.id.desc()).limit(1))


def _topic(domain: Domain) -> str:
    return f"domain:{domain.id}"


# --- changing ---------------------------------------------------------------------------------

def add_domain(workspace: Workspace, name: str, method: str = "dns", *, actor: User | None = None,
               inbox: str | None = None, verified: bool = False) -> Domain:
    """Add a domain to the workspace, pending verification by `method`.

    `verified=True` is the operator's override (CLI): verified at once, audited.
    """
    if not workspace.is_enterprise:
        raise DomainError("Authorized domains need the Enterprise plan.")
    method = _method(method)
    try:
        name = normalize_domain(name)
        refuse_public(name)
    except InvalidDomain as exc:
        raise DomainError(str(exc)) from None
    existing = db.session.scalar(select(Domain).where(Domain.workspace_id == workspace.id, Domain.name == name))
    if existing is not None:
        raise DomainError(f"{to_unicode(name)} is already in this workspace's list.")
    covering = verified_domain_covering(workspace.id, name)
    if covering is not None:
        raise DomainError(f"{to_unicode(name)} is already covered by {covering.display_name}, which this workspace "
                          "has verified: subdomains of a verified domain are included.")
    other = verification.conflicting_domain(name, workspace.id)
    if other is not None:
        what = "this domain" if other.name == name else "a parent domain or subdomain of it"
        raise DomainError(f"{to_unicode(name)} cannot be added: another workspace has already verified {what}. "
                          "If your organization owns it, contact support.")
    if method == DomainMethod.email.value and not verified:
        inbox = _inbox(inbox)
    now = utcnow()
    domain = Domain(workspace_id=workspace.id, name=name, registrable=registrable_domain(name) or name,
                    method=method, txt_value=secrets.token_hex(16),
                    email_inbox=inbox if method == DomainMethod.email.value else None,
                    created_by_id=actor.id if actor is not None else None)
    verification.start_round(domain, now)
    db.session.add(domain)
    db.session.flush()
    record(workspace.id, "domain.added", actor=actor, actor_label=None if actor else "operator (CLI)",
           target=domain, method=method)
    if verified:
        record(workspace.id, "domain.operator_override", actor_label=OPERATOR, target=domain)
        verification.mark_verified(domain, how="operator", actor_label=OPERATOR, now=now)
    elif method == DomainMethod.email.value:
        _send_verification_email(domain, workspace, actor)
    return domain


def add_collision_message(workspace_id: int, name: str) -> str:
    """Why an add that passed every check still hit a unique constraint: something was
    committed in between. Call after the rollback."""
    try:
        name = normalize_domain(name)
    except InvalidDomain as exc:
        return str(exc)
    if db.session.scalar(select(Domain.id).where(Domain.workspace_id == workspace_id,
                                                 Domain.name == name)) is not None:
        return (f"{to_unicode(name)} is already in this workspace's list: another request added it at the same "
                "moment.")
    if verification.conflicting_domain(name, workspace_id) is not None:
        return (f"{to_unicode(name)} cannot be added: another workspace verified it (or a parent or subdomain of "
                "it) at the same moment. If your organization owns it, contact support.")
    return f"{to_unicode(name)} changed while it was being added. Try again."


def switch_method(domain: Domain, method: str, *, actor: User, inbox: str | None = None) -> None:
    """Change how the domain is proved; starts a fresh 7-day round."""
    if domain.is_verified:
        raise DomainError(f"{domain.display_name} is already verified; remove it first to verify it another way.")
    _refuse_if_verified_elsewhere(domain)
    method = _method(method)
    if method == DomainMethod.email.value:
        inbox = _inbox(inbox)
    if method == domain.method and (method == DomainMethod.dns.value or inbox == domain.email_inbox):
        how = _method_phrase(domain)
        if domain.status == DomainStatus.pending.value:
            raise DomainError(f"{domain.display_name} is already waiting for verification by {how}.")
        raise DomainError(f"{domain.display_name} is already set to be verified by {how}: press "
                          "“Restart verification” to try again.")
    old = domain.method
    domain.method = method
    domain.email_inbox = inbox if method == DomainMethod.email.value else None
    domain.email_token_hash = domain.email_token_expires_at = domain.email_token_used_at = None
    verification.start_round(domain, utcnow())
    record(domain.workspace_id, "domain.method_changed", actor=actor, target=domain, old=old, new=method,
           inbox=domain.inbox_address)
    if method == DomainMethod.email.value:
        _send_verification_email(domain, _workspace(domain), actor)


def restart(domain: Domain, *, actor: User) -> None:
    """Expired or failed: start a new 7-day round with the same method (and record value)."""
    if domain.status not in (DomainStatus.expired.value, DomainStatus.failed.value):
        raise DomainError(f"{domain.display_name} is {domain.status_label.lower()}; only expired or failed "
                          "domains can be restarted.")
    _refuse_if_verified_elsewhere(domain)
    verification.start_round(domain, utcnow())
    record(domain.workspace_id, "domain.restarted", actor=actor, target=domain, method=domain.method)
    if domain.method == DomainMethod.email.value:
        _send_verification_email(domain, _workspace(domain), actor)


def resend_email(domain: Domain, *, actor: User) -> None:
    if domain.method != DomainMethod.email.value or domain.status != DomainStatus.pending.value:
        raise DomainError(f"{domain.display_name} is not waiting for an email verification.")
    _refuse_if_verified_elsewhere(domain)
    _send_verification_email(domain, _workspace(domain), actor)


def request_check(domain: Domain) -> None:
    """Mark a check as asked for; the caller enqueues it after the commit."""
    if domain.method != DomainMethod.dns.value:
        raise DomainError(f"{domain.display_name} is verified by email: follow the emailed link instead.")
    if domain.is_operator_verified:
        raise DomainError(f"{domain.display_name} was verified by an operator: there is no DNS record to check.")
    domain.check_requested_at = utcnow()


def check_not_started(domain: Domain) -> None:
    """The check asked for could not be queued (Redis down): the row must not wait for it."""
    domain.check_requested_at = None


def remove_domain(domain: Domain, *, actor: User) -> LostCover:
    """Remove the domain. With SSO on, the members only it covered are blocked from then on
    (their open sessions end); refused if no admin could sign in afterwards."""
    lock_admins(domain.workspace_id)
    db.session.refresh(domain)  # as it is now, under the lock (a DNS job may have verified it meanwhile)
    workspace_id, name, status = domain.workspace_id, domain.display_name, domain.status
    admins_could_sign_in = status == DomainStatus.verified.value and bool(admins_who_can_sign_in(workspace_id))
    covered_only = members_covered_only_by(domain)
    record(workspace_id, "domain.removed", actor=actor, target=domain, status=status)
    db.session.delete(domain)
    db.session.flush()  # the sign-in policy reads verified domains from the database
    if admins_could_sign_in and not admins_who_can_sign_in(workspace_id):
        raise DomainError(f"{name} cannot be removed: with SSO enforced, no admin could sign in afterwards. "
                          "Give an admin a way to sign in that does not depend on this domain first.")
    end_sessions_of_newly_blocked(covered_only, workspace_id, reason=f"{name} removed")
    return LostCover(status == DomainStatus.verified.value, covered_only, sso_enforced(workspace_id))


# --- the emailed link -------------------------------------------------------------------------

def _refuse_if_inbox_flooded(domain: Domain) -> None:
    """From one workspace, at most one verification email a minute and MAX_EMAILS_PER_DAY a
    day to one inbox, however they are asked for (add, resend, another inbox and back,
    restart, remove and add again). Counted per workspace, so that another workspace
    cannot use up this one's emails; and MAX_EMAILS_PER_INBOX_PER_DAY from all workspaces
    together, which protects the inbox's owner from floods. No refusal tells what other
    workspaces sent."""
    now = utcnow()
    sent = db.session.execute(select(OutboundEmail.workspace_id, OutboundEmail.created_at).where(
        OutboundEmail.to == domain.inbox_address, OutboundEmail.template == "domain_verification",
        OutboundEmail.created_at > now - dt.timedelta(days=1))).all()
    ours = [row.created_at for row in sent if row.workspace_id == domain.workspace_id]
    if ours and max(ours) > now - RESEND_INTERVAL:
        raise DomainError(f"An email was sent to {domain.inbox_display} less than a minute ago. Wait a minute, "
                          "and check the spam folder.")
    if len(ours) >= MAX_EMAILS_PER_DAY:
        raise DomainError(f"{MAX_EMAILS_PER_DAY} emails were sent to {domain.inbox_display} today; try again "
                          "tomorrow, or verify by DNS instead.")
    if len(sent) >= MAX_EMAILS_PER_INBOX_PER_DAY:
        raise DomainError(f"No more verification emails can go to {domain.inbox_display} today. Try again tomorrow, "
                          "pick another inbox, or verify by DNS instead.")


def _send_verification_email(domain: Domain, workspace: Workspace, actor: User | None) -> None:
    _refuse_if_inbox_flooded(domain)
    secret = new_secret()
    domain.email_token_hash = hash_secret(secret)
    domain.email_token_expires_at = utcnow() + LINK_LIFETIME
    domain.email_token_used_at = None
    link = external_url("domains.verify_link", token=secret)  # no request needed: the CLI sends it too
    mail.send(domain.inbox_address, f"Verify {domain.display_name} for {workspace.name} on Gatehouse",
              "domain_verification", workspace_id=workspace.id, topic=_topic(domain), domain=domain,
              workspace=workspace, requester=actor, link=link, expires_at=domain.email_token_expires_at)
    record(workspace.id, "domain.email_sent", actor=actor, actor_label=None if actor else "operator (CLI)",
           target=domain, to=domain.inbox_address)


def domain_for_link(token: str) -> Domain:
    """The domain an emailed link verifies, or LinkError saying why it cannot."""
    if not token or len(token) > 128:
        raise LinkError(_LINK_UNKNOWN, 404)
    token_hash = hash_secret(token)
    domain = db.session.scalar(select(Domain).where(Domain.email_token_hash == token_hash))
    if domain is None or not hmac.compare_digest(domain.email_token_hash or "", token_hash):
        raise LinkError(_LINK_UNKNOWN, 404)
    if domain.email_token_used_at is not None:
        if domain.is_verified:
            raise LinkError(f"This link has already been used: {domain.display_name} is verified for "
                            f"{_workspace(domain).name}.", 410, domain)
        raise LinkError("This link has already been used.", 410, domain)
    if domain.email_token_expires_at is None or domain.email_token_expires_at <= utcnow():
        raise LinkError(f"This link expired on {domain.email_token_expires_at:%Y-%m-%d}. Ask an admin of "
                        f"{_workspace(domain).name} to send a new one from Settings → Security.", 410, domain)
    if domain.status != DomainStatus.pending.value or domain.method != DomainMethod.email.value:
        raise LinkError(f"{domain.display_name} is no longer waiting for this email verification.", 410, domain)
    return domain


_LINK_UNKNOWN = ("This verification link is not valid. It may have been mistyped, or replaced by a newer email "
                 "(only the latest link works).")


def verify_by_link(token: str) -> Domain:
    domain = domain_for_link(token)
    now = utcnow()
    domain.email_token_used_at = now
    if not verification.mark_verified(domain, how="email", actor_label=f"{domain.inbox_address} (emailed link)",
                                      now=now):
        raise LinkError(f"{domain.display_name} cannot be verified for {_workspace(domain).name}: another workspace "
                        "has already verified it (or a parent or subdomain of it).", 409, domain)
    return domain


# --- helpers ----------------------------------------------------------------------------------

def _method(method: str) -> str:
    try:
        return DomainMethod(method).value
    except ValueError:
        raise DomainError("Choose how to verify: by DNS TXT record or by email.") from None


def _method_phrase(domain: Domain) -> str:
    """"DNS TXT record" or "email to admin@example.com", to follow "verification by"."""
    if domain.method == DomainMethod.email.value:
        return f"email to {domain.inbox_display}"
    return domain.method_label


def _refuse_if_verified_elsewhere(domain: Domain) -> None:
    """Restarting, switching or resending for a domain another workspace has verified since
    would only run a round that cannot succeed (and email its inbox on this workspace's behalf)."""
    reason = verified_elsewhere(domain)
    if reason:
        raise DomainError(reason)


def _inbox(inbox: str | None) -> str:
    if inbox not in INBOXES:
        raise DomainError("Choose the inbox to send the verification email to: "
                          + ", ".join(f"{i}@" for i in INBOXES) + ".")
    return inbox


def _workspace(domain: Domain) -> Workspace:
    return db.session.get(Workspace, domain.workspace_id)
