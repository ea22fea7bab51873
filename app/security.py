"""Secrets: made random, shown once, stored as SHA-256, compared in constant time."""
from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    # Secrets are 256-bit random values, so a fast hash is enough (no dictionary
    # to attack); it also lets us look tokens up by hash with an index.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
