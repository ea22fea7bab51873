"""How a domain moves between statuses once we have looked at DNS (or the
emailed link was followed): pending -> verified, pending -> expired after 7
days, verified -> failed when its record has been missing past the grace
period. The checks' schedule lives here too. Nothing here commits."""
from __future__ import annotations

import datetime as dt

from flask import current_app
from sqlalchemy import or_, select

from app.audit.service import record
from app.database import serialize_on
from app.domains.coverage import end_sessions_of_newly_blocked, members_covered_only_by, sso_enforced
from app.domains.dns_check import Outcome, TxtLookup, explain
from app.extensions import db
from app.members.admin_rule import admins_who_can_sign_in, lock_admins
from app.models import Domain, DomainMethod, DomainStatus
from app.models.domains import OPERATOR
from app.urls import external_url

PENDING_FOR = dt.timedelta(days=7)
PENDING_SCHEDULE_MINUTES = (1, 2, 5, 10, 30)  # then hourly, until PENDING_FOR has passed
HOURLY = dt.timedelta(hours=1)
REVERIFY_EVERY = dt.timedelta(hours=24)
RETRY_FAILURE_AFTER = dt.timedelta(minutes=1)
GRACE = dt.timedelta(hours=72)  # a verified domain's record may be missing this long before it fails
LEASE = dt.timedelta(minutes=10)  # a swept domain is not swept again while its batch job runs


def pending_deadline(domain: Domain) -> dt.datetime:
    return domain.started_at + PENDING_FOR


def pending_delay(scheduled_checks: int) -> dt.timedelta:
    if scheduled_checks < len(PENDING_SCHEDULE_MINUTES):
        return dt.timedelta(minutes=PENDING_SCHEDULE_MINUTES[scheduled_checks])
    return HOURLY


def start_round(domain: Domain, now: dt.datetime) -> None:
    """A fresh 7-day round of verification (added, restarted, method switched)."""
    domain.status = DomainStatus.pending.value
    domain.started_at = now
    domain.scheduled_checks = 0
    domain.record_missing_since = domain.failure_held_at = None
    domain.verified_at = domain.verified_by = None
    domain.last_outcome = domain.last_detail = domain.last_records = None
    domain.last_checked_at = None
    domain.next_check_at = now + pending_delay(0) if domain.method == DomainMethod.dns.value else None


def conflicting_domain(name: str, workspace_id: int) -> Domain | None:
    """Another workspace's verified domain equal to, a parent of, or under `name`."""
    from app.domains.names import registrable_domain
    # No autoflush: a batch flushing before every look-up would cost more than its DNS
    # queries. jobs.domains checks the batch's own verifications against each other.
    with db.session.no_autoflush:
        same_base = db.session.scalars(select(Domain).where(
            Domain.registrable == (registrable_domain(name) or name), Domain.workspace_id != workspace_id,
            Domain.status == DomainStatus.verified.value))
        return next((d for d in same_base if overlaps(d.name, name)), None)


def overlaps(a: str, b: str) -> bool:
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def mark_verified(domain: Domain, *, how: str, actor=None, actor_label: str, now: dt.datetime) -> bool:
    """Verify unless another workspace got there first (then the domain stays as it is).
    The check and the write hold a lock on the registrable domain, so two workspaces verifying
    a parent and its subdomain at once can't both pass (the unique index covers only the
    same name); callers that verify several take them in registrable order (no deadlock)."""
    serialize_on(f"domain:{domain.registrable}")
    if conflicting_domain(domain.name, domain.workspace_id) is not None:
        domain.last_detail = ((domain.last_detail or "") + " Another workspace has already verified this domain "
                              "(or a parent or subdomain of it), so it cannot be verified here.").strip()
        return False
    domain.status = DomainStatus.verified.value
    domain.verified_at = now
    domain.verified_by = actor_label
    domain.record_missing_since = domain.failure_held_at = None
    # Re-checked daily if a DNS record proved it; an operator's override has no record to find.
    domain.next_check_at = (now + REVERIFY_EVERY if domain.method == DomainMethod.dns.value
                            and not domain.is_operator_verified else None)
    record(domain.workspace_id, "domain.verified", actor=actor, actor_label=actor_label, target=domain, method=how)
    return True


def dns_timeout() -> float:
    return float(current_app.config.get("DNS_TIMEOUT", 5.0))


def apply_lookup(domain: Domain, result: TxtLookup, *, now: dt.datetime, scheduled: bool) -> None:
    """Record what DNS said and move the domain on. `scheduled` checks advance the
    backoff schedule; "check now" does not (clicking it cannot push checks to hourly)."""
    domain.last_checked_at = now
    domain.check_requested_at = None
    domain.last_outcome = result.outcome.value
    domain.last_records = list(result.records)
    domain.last_detail = explain(result, domain.record_value, dns_timeout())
    if domain.method != DomainMethod.dns.value:
        return
    if domain.status == DomainStatus.verified.value:
        _reverify(domain, result, now=now)
    elif result.outcome is Outcome.found:
        if not mark_verified(domain, how="dns", actor_label="DNS check", now=now):
            _schedule_pending(domain, now, scheduled)
    elif domain.status == DomainStatus.pending.value:
        _schedule_pending(domain, now, scheduled)
    # An expired or failed domain: a check that finds the record ("Re-check now") verifies it
    # again, since the proof is back; otherwise it only shows what we found until a restart.


def _schedule_pending(domain: Domain, now: dt.datetime, scheduled: bool) -> None:
    deadline = pending_deadline(domain)
    if now >= deadline:
        expire(domain, now)
        return
    if scheduled:
        domain.scheduled_checks += 1
        domain.next_check_at = min(now + pending_delay(domain.scheduled_checks), deadline)
    elif domain.next_check_at is None:
        domain.next_check_at = min(now + pending_delay(domain.scheduled_checks), deadline)


def expire(domain: Domain, now: dt.datetime) -> None:
    # The emailed link's hash stays, so that its holder is told it expired (and when) rather
    # than that it never existed; an expired domain's link verifies nothing (service.domain_for_link).
    domain.status = DomainStatus.expired.value
    domain.next_check_at = None
    record(domain.workspace_id, "domain.expired", actor_label="system", target=domain, method=domain.method)


def _reverify(domain: Domain, result: TxtLookup, *, now: dt.datetime) -> None:
    from app.members.service import notify_admins
    if result.outcome is Outcome.found:
        if domain.record_missing_since is not None:
            record(domain.workspace_id, "domain.record_restored", actor_label="DNS check", target=domain)
        domain.record_missing_since = domain.failure_held_at = None
        domain.next_check_at = now + REVERIFY_EVERY
        return
    if not result.outcome.is_definitive:  # DNS trouble says nothing about the record: ask again soon
        domain.next_check_at = now + HOURLY
        return
    if domain.record_missing_since is None:
        domain.record_missing_since = now
        record(domain.workspace_id, "domain.record_missing", actor_label="DNS check", target=domain,
               outcome=result.outcome.value)
        notify_admins(domain.workspace_id, f"Action needed: the DNS record for {domain.display_name} is missing",
                      "domain_record_missing", domain=domain, deadline=now + GRACE, detail=domain.last_detail,
                      members=members_covered_only_by(domain), sso_on=sso_enforced(domain.workspace_id),
                      settings_url=_settings_url())
    if now - domain.record_missing_since < GRACE:
        domain.next_check_at = min(now + HOURLY, domain.record_missing_since + GRACE)
        return
    fail(domain, now)


def fail(domain: Domain, now: dt.datetime) -> None:
    """Past the grace period: failed, audited, admins told; unless that would leave
    the workspace without an admin who can sign in (SSO enforcement on a domain
    that no longer counts), in which case the domain is held and admins warned.
    With SSO on, the members only it covered are blocked from then on and signed out."""
    from app.members.service import notify_admins
    # A domain batch holds registrable-domain locks; waiting here for another transaction's
    # admin lock could deadlock two batches. Someone is changing the admins right now: fail
    # the domain at the next check, a minute from now (it has waited out 72 hours already).
    if not lock_admins(domain.workspace_id, wait=False):
        domain.next_check_at = now + RETRY_FAILURE_AFTER
        return
    admins_could_sign_in = bool(admins_who_can_sign_in(domain.workspace_id))
    covered_only = members_covered_only_by(domain)
    domain.status = DomainStatus.failed.value
    db.session.flush()  # the sign-in policy reads verified domains from the database
    if admins_could_sign_in and not admins_who_can_sign_in(domain.workspace_id):
        domain.status = DomainStatus.verified.value
        domain.next_check_at = now + HOURLY
        db.session.flush()
        domain.last_detail = (domain.last_detail or "") + (
            " The domain stays verified for now: marking it failed would lock every admin out. Restore the record, "
            "or give an admin a way to sign in that does not depend on this domain.")
        if domain.failure_held_at is None:
            domain.failure_held_at = now
            record(domain.workspace_id, "domain.failure_held", actor_label="DNS check", target=domain)
        return
    domain.next_check_at = None
    record(domain.workspace_id, "domain.failed", actor_label="DNS check", target=domain,
           missing_since=domain.record_missing_since.isoformat())
    end_sessions_of_newly_blocked(covered_only, domain.workspace_id, reason=f"{domain.display_name} failed")
    notify_admins(domain.workspace_id, f"{domain.display_name} is no longer verified", "domain_failed",
                  domain=domain, detail=domain.last_detail, members=covered_only,
                  sso_on=sso_enforced(domain.workspace_id), settings_url=_settings_url())


def _settings_url() -> str:
    """Where the emails send admins: the domains on Settings → Security (built without a request: jobs send them)."""
    return external_url("settings.security") + "#domains"


# --- what the sweep picks up ------------------------------------------------------------------

def due_dns_domain_ids(now: dt.datetime, limit: int) -> list[int]:
    return list(db.session.scalars(
        select(Domain.id).where(Domain.method == DomainMethod.dns.value,
                                Domain.status.in_((DomainStatus.pending.value, DomainStatus.verified.value)),
                                Domain.next_check_at <= now,
                                # rows verified by an operator before they stopped being scheduled
                                or_(Domain.verified_by.is_(None), Domain.verified_by != OPERATOR))
        .order_by(Domain.next_check_at, Domain.id).limit(limit)))


def expire_email_domains(now: dt.datetime) -> int:
    """Email-method domains whose link expired unused: nothing to look up, just expire."""
    overdue = db.session.scalars(select(Domain).where(
        Domain.method == DomainMethod.email.value, Domain.status == DomainStatus.pending.value,
        Domain.email_token_expires_at <= now)).all()
    for domain in overdue:
        expire(domain, now)
    return len(overdue)

