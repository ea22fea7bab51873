"""The registered OAuth clients (the operator's `flask oauth-client` commands).

Never commits; the CLI does.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from sqlalchemy import select

from app.extensions import db
from app.models.oauth import OAuthClient
from app.security import hash_secret, new_secret


class OAuthClientError(ValueError):
    """Operator input for a client was refused; the message says why."""


def validate_redirect_uri(uri: str) -> str:
    """An absolute https URL without a fragment; plain http only on loopback (for tests)."""
    uri = (uri or "").strip()
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise OAuthClientError(f"redirect URI {uri!r} is not a valid URL") from None
    if parts.fragment or "#" in uri:
        raise OAuthClientError(f"redirect URI {uri!r} must not contain a fragment (#...)")
    if not host or parts.scheme not in ("https", "http"):
        raise OAuthClientError(f"redirect URI {uri!r} must be an absolute https:// URL")
    if parts.scheme == "http" and not _is_loopback(host):
        raise OAuthClientError(f"redirect URI {uri!r} must use https (http is allowed only on localhost)")
    if len(uri) > 2000:
        raise OAuthClientError("redirect URI is longer than 2000 characters")
    return uri


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_client(client_id: str | None) -> OAuthClient | None:
    if not client_id or len(client_id) > 64:
        return None
    return db.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))


def client_by_name(name: str) -> OAuthClient | None:
    return db.session.scalar(select(OAuthClient).where(OAuthClient.name == name))


def create_client(name: str, redirect_uris: list[str]) -> tuple[OAuthClient, str]:
    """A new confidential client; returns it with its secret (shown once, stored hashed)."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise OAuthClientError("--name must be 1 to 64 characters")
    if client_by_name(name) is not None:
        raise OAuthClientError(f"an OAuth client named {name!r} already exists; its secret was shown only when "
                               f"it was created (add callback URLs with `oauth-client add-redirect-uri`)")
    uris = _unique([validate_redirect_uri(u) for u in redirect_uris])
    if not uris:
        raise OAuthClientError("give at least one --redirect-uri")
    secret = new_secret(32)
    client = OAuthClient(client_id=new_secret(18), client_secret_hash=hash_secret(secret), name=name,
                         redirect_uris=uris)
    db.session.add(client)
    return client, secret


def add_redirect_uris(name: str, redirect_uris: list[str]) -> OAuthClient:
    client = client_by_name(name)
    if client is None:
        raise OAuthClientError(f"no OAuth client named {name!r}")
    client.redirect_uris = _unique(list(client.redirect_uris) + [validate_redirect_uri(u) for u in redirect_uris])
    return client


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
