"""Periodic jobs, run by `rq cron jobs/cron_config.py` (see Makefile `cron`).

Each area adds its own line. Interval jobs fire once at start, then every
`interval` seconds; each job reads what is due from the database, so a lost
tick delays work and loses nothing.
"""
from rq import cron

from jobs.housekeeping import housekeeping

cron.register(housekeeping, queue_name="default", interval=600)

from jobs.domains import sweep_domains  # noqa: E402  (authorized domains: DNS checks due, email links expired)

cron.register(sweep_domains, queue_name="default", interval=60)

from jobs.sso import refresh_all_metadata, warn_expiring_certificates  # noqa: E402  (SSO: metadata refresh, cert expiry)

cron.register(refresh_all_metadata, queue_name="default", interval=86400)
cron.register(warn_expiring_certificates, queue_name="default", interval=86400)

from jobs.scim import prune_scim_request_log  # noqa: E402  (SCIM: request log kept for a limited time and count)

cron.register(prune_scim_request_log, queue_name="default", interval=3600)

from jobs.members import resume_stalled_purges  # noqa: E402  (member deletion: resume purges whose job was lost)

cron.register(resume_stalled_purges, queue_name="default", interval=300)

from jobs.oauth import prune_oauth  # noqa: E402  (OAuth: unused codes, long-dead tokens)

cron.register(prune_oauth, queue_name="default", interval=86400)
