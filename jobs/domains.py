"""DNS checks for authorized domains.

`check_domain` runs one check now (the admin clicked "check now", or just
added the domain). `sweep_domains`, run by `rq cron` every minute, reads
from the database which domains are due (pending ones on their backoff
schedule, verified ones for re-verification), leases them, and enqueues one
`check_domains` job per batch, which looks them up with bounded concurrency.
The database is the source of truth: if Redis is flushed or a worker dies,
the lease runs out and the next sweep picks the domains up again."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app.domains import verification
from app.domains.dns_check import check_challenge, make_resolver
from app.extensions import db, rq
from app.models import Domain, DomainMethod, DomainStatus, utcnow
from jobs.worker import app_job

log = logging.getLogger(__name__)
BATCH_SIZE = 500
CONCURRENCY = 16
MAX_PER_SWEEP = 50_000


def enqueue_check(domain_id: int) -> bool:
    try:
        rq.queue("default").enqueue(check_domain, domain_id)
        return True
    except Exception as exc:  # Redis down: the sweep checks it on schedule
        log.warning("could not enqueue the check of domain %s: %s", domain_id, exc)
        return False


@app_job
def check_domain(domain_id: int) -> str | None:
    """Check one domain now, outside its schedule."""
    results = _check([domain_id], scheduled=False)
    return results.get(domain_id)


@app_job
def check_domains(domain_ids: list[int]) -> dict[int, str]:
    """Check a batch of due domains (one job per batch, lookups in parallel)."""
    return _check(domain_ids, scheduled=True)


@app_job
def sweep_domains(batch_size: int = BATCH_SIZE) -> dict:
    now = utcnow()
    expired = verification.expire_email_domains(now)
    ids = verification.due_dns_domain_ids(now, MAX_PER_SWEEP)
    if ids:
        # Leased: the next sweep leaves them alone while their batch runs, and takes
        # them again if the batch is lost (Redis flushed, worker killed).
        for start in range(0, len(ids), 1000):
            db.session.execute(update(Domain).where(Domain.id.in_(ids[start:start + 1000]))
                               .values(next_check_at=now + verification.LEASE))
    db.session.commit()
    queue = rq.queue("default")
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    for batch in batches:
        queue.enqueue(check_domains, batch)
    return {"due": len(ids), "batches": len(batches), "expired": expired}


def _check(domain_ids: list[int], *, scheduled: bool) -> dict[int, str]:
    domains = [d for d in db.session.scalars(db.select(Domain).where(Domain.id.in_(domain_ids)))
               if d.method == DomainMethod.dns.value]
    if not scheduled:
        targets = domains
    else:
        targets = [d for d in domains if d.status in (DomainStatus.pending.value, DomainStatus.verified.value)]
    if not targets:
        return {}
    targets.sort(key=lambda d: (d.registrable, d.id))  # verifying takes a lock per registrable domain, in this order
    resolver = make_resolver(current_app.config.get("DNS_NAMESERVERS"), verification.dns_timeout())
    work = [(d.id, d.record_name, d.txt_value) for d in targets]  # plain values: threads never touch the session
    with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(work))) as pool:
        lookups = dict(zip([w[0] for w in work],
                           pool.map(lambda w: check_challenge(w[1], w[2], resolver), work)))
    try:
        outcomes = _apply(targets, lookups, scheduled)
        db.session.commit()
    except IntegrityError:
        # Two workspaces verified the same name at once: redo one by one; the loser's
        # re-check sees the winner and stays pending.
        db.session.rollback()
        outcomes = {}
        for domain_id, lookup in lookups.items():
            domain = db.session.get(Domain, domain_id)
            if domain is None:
                continue
            try:
                outcomes.update(_apply([domain], {domain_id: lookup}, scheduled))
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
    return outcomes


def _apply(domains, lookups, scheduled: bool) -> dict[int, str]:
    now = utcnow()
    outcomes, verified_now = {}, []
    for domain in domains:
        was = domain.status
        verification.apply_lookup(domain, lookups[domain.id], now=now, scheduled=scheduled)
        outcomes[domain.id] = domain.status
        if domain.status == DomainStatus.verified.value and was != domain.status:
            verified_now.append(domain)
    if _overlap_across_workspaces(verified_now):
        raise IntegrityError("one batch verified overlapping names for two workspaces", None, Exception())
    db.session.flush()
    return outcomes


def _overlap_across_workspaces(domains: list[Domain]) -> bool:
    """Two workspaces verifying the same name, or a parent and its subdomain, in one batch."""
    by_base: dict[str, list[Domain]] = {}
    for d in domains:
        by_base.setdefault(d.registrable, []).append(d)
    return any(a.workspace_id != b.workspace_id and verification.overlaps(a.name, b.name)
               for group in by_base.values() for i, a in enumerate(group) for b in group[i + 1:])
