"""Settings from the environment (see README, "Environment")."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit


class ConfigError(RuntimeError):
    """The environment cannot start the app; the message says what to set."""


def _instance_secret(instance: Path) -> str:
    """A development SECRET_KEY generated once and kept under instance/."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def load_config(instance_path: str, env: dict[str, str] | None = None) -> dict:
    env = dict(os.environ if env is None else env)
    instance = Path(instance_path)
    port = int(env.get("PORT", "5000"))
    base_url = env.get("BASE_URL", f"http://127.0.0.1:{port}").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        raise ConfigError(f"BASE_URL must be an origin like https://gatehouse.example.com, got {base_url!r}")
    production = parts.scheme == "https"

    secret_key = env.get("SECRET_KEY")
    if not secret_key:
        if production:
            raise ConfigError("SECRET_KEY is required when BASE_URL is https (production)")
        secret_key = _instance_secret(instance)

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'gatehouse.db'}"
    if database_url.startswith("postgres://"):  # Heroku-style URLs
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgres://")
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")

    return {
        "BASE_URL": base_url,
        "PRODUCTION": production,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": env.get("REDIS_URL") or f"unix://{instance / 'valkey.sock'}",
        "REDIS_EMBEDDED": not env.get("REDIS_URL"),
        "SMTP_URL": env.get("SMTP_URL") or None,
        "MAIL_FROM": env.get("MAIL_FROM") or f"no-reply@{parts.hostname}",
        "DNS_NAMESERVERS": env.get("DNS_NAMESERVERS") or None,
        "MAIL_DIR": str(instance / "mail"),
        # Sessions: the cookie never outlives the browser unless "remember me";
        # idle and absolute limits are enforced server-side in app.auth.sessions.
        "SESSION_COOKIE_NAME": "gatehouse_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_DURATION": int(env.get("REMEMBER_DAYS", "14")) * 86400,
        "SESSION_IDLE_TIMEOUT": int(env.get("SESSION_IDLE_MINUTES", "120")) * 60,
        "SESSION_ABSOLUTE_TIMEOUT": int(env.get("SESSION_ABSOLUTE_HOURS", "24")) * 3600,
        "PREFERRED_URL_SCHEME": parts.scheme,
        # Flask-WTF: the token is bound to the session already; a time limit
        # would break a page left open (a polling domain list) after an hour.
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": True,
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        # Flask-Limiter: Redis down must never turn sign-in into a 500.
        "RATELIMIT_STORAGE_URI": _limiter_storage(env.get("REDIS_URL") or f"unix://{instance / 'valkey.sock'}"),
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_HEADERS_ENABLED": False,
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": int(env.get("LOGIN_MAX_FAILURES_PER_ACCOUNT", "5")),
        "LOGIN_MAX_FAILURES_PER_IP": int(env.get("LOGIN_MAX_FAILURES_PER_IP", "20")),
        "LOGIN_FAILURE_WINDOW": int(env.get("LOGIN_FAILURE_WINDOW_SECONDS", "900")),
        # Reset requests per client address an hour: high enough for an office behind one NAT
        # setting first passwords (each inbox has its own limit of 5 an hour).
        "PASSWORD_RESET_MAX_PER_IP": int(env.get("PASSWORD_RESET_MAX_PER_IP", "60")),
        "RQ_ASYNC": True,
        # How many reverse proxies (load balancer, TLS terminator) stand in front and append to
        # X-Forwarded-For/-Proto: 0 trusts none of those headers (a client could forge them).
        "TRUSTED_PROXIES": int(env.get("TRUSTED_PROXIES", "0")),
    }


def _limiter_storage(redis_url: str) -> str:
    """Flask-Limiter spells a unix socket `redis+unix://`, not `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url
