"""Secrets: made random, shown once, stored as SHA-256, compared in constant time."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

# A credential's "last used" is written at most once a minute, not with every request it signs.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random values, so a fast hash is enough (no dictionary
    # to attack); it also lets us look tokens up by hash with an index.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def last_use_is_stale(last_used_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Should this use of a credential stamp its "last used" time? (see LAST_USED_RESOLUTION)"""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION
