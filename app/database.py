"""Engine tuning.

SQLite runs in WAL mode with a busy timeout, so web, worker and cron can share it, and
its lower() folds every letter, not only ASCII ones, as PostgreSQL's does.

A server connection (PostgreSQL) can go stale in the pool: a database restart or
failover, a terminated backend, an idle timeout on the way. SQLAlchemy's
`pool_pre_ping` answers that with a `SELECT 1` round trip on every checkout, which
on a SCIM PATCH or a SAML sign-in is one round trip in eight. We ping only when it
can matter:

- the server has already said something on an idle connection. A closing server
  sends its error and then EOF; poll() sees that without a round trip. Notices
  can trip it too, and then the ping finds the connection alive;
- or the connection sat unused for PING_AFTER_IDLE_SECONDS, which covers a
  silent loss (a NAT or proxy that dropped the flow without a FIN).

A failed ping raises InvalidatePoolError (a DisconnectionError), and the pool
retires every connection pooled before it and checks out a fresh one (its
documented "pessimistic" recipe, and what pool_pre_ping does on a failed ping).
What remains uncaught is a connection lost silently in the last few seconds of a
busy period, and that one fails a single request, as without any ping.
"""
from __future__ import annotations

import hashlib
import select
import time

from flask import Flask
from sqlalchemy import event, text
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import IntegrityError, InvalidatePoolError

PING_AFTER_IDLE_SECONDS = 10.0


def serialize_on(key: str, *, wait: bool = True) -> bool:
    """Hold the lock named `key` until the transaction ends, so that check-then-write rules
    (a workspace keeps an admin; one purge per member) see each other's writes instead of
    both passing their check. PostgreSQL: a transaction-scoped advisory lock on the key;
    with wait=False, False at once if another transaction holds it (a caller already holding
    other keys must not wait: two such could deadlock). SQLite has one write lock for the
    whole database, so no deadlock: it is taken now, by a write that changes nothing, rather
    than at the first real write, after the check."""
    from app.extensions import db
    if db.session.get_bind().dialect.name == "postgresql":
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
        got = db.session.scalar(text(f"SELECT {lock}(:key)"), {"key": int.from_bytes(digest, "big", signed=True)})
        return wait or bool(got)
    db.session.execute(text("UPDATE workspace SET id = id WHERE 0"))
    return True


def flush_or_raise(error: Exception) -> None:
    """Flush the session; if the database refuses the flush (a unique index: the check that
    matters when two requests race), roll back and raise `error` instead."""
    from app.extensions import db
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise error from None


def like_escape(value: str) -> str:
    """`value` as a literal inside a LIKE pattern (use with `escape="\\"`)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _unicode_lower(value):
    """SQL's lower() folding every letter, as PostgreSQL's does: SQLite's own folds ASCII only, so
    a filter or a search for "ørjan" missed Ørjan. NULL stays NULL; a number or a blob is lowered
    as the text SQLite makes of it."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).lower()


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _mark_idle(dbapi_connection, connection_record) -> None:
    connection_record.info["idle_since"] = time.monotonic()


def _server_spoke(dbapi_connection) -> bool:
    """Is there input waiting on this idle connection's socket? (No round trip.)"""
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    except Exception:  # noqa: BLE001 - closed or lost already (drivers raise their own errors): ask the ping
        return True
    return bool(poller.poll(0))


def liveness_check(dialect: Dialect):
    """The pool's "checkout" listener for server databases (see the module docstring)."""
    def check(dbapi_connection, connection_record, connection_proxy) -> None:
        idle_for = time.monotonic() - connection_record.info.get("idle_since", 0.0)
        if idle_for < PING_AFTER_IDLE_SECONDS and not _server_spoke(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure: this connection is no use
            # Like pool_pre_ping, retire every connection pooled before now: after a restart or
            # a failover they are all dead, and each would otherwise pay (or hang in) its own ping.
            raise InvalidatePoolError(f"pooled connection failed its ping: {exc}") from exc
    return check


def init_app(app: Flask) -> None:
    with app.app_context():
        from app.extensions import db
        engine: Engine = db.engine
        if engine.dialect.name == "sqlite":
            from pathlib import Path
            Path(app.instance_path).mkdir(parents=True, exist_ok=True)
            if not event.contains(engine, "connect", _sqlite_pragmas):
                event.listen(engine, "connect", _sqlite_pragmas)
            return
        if not event.contains(engine, "checkin", _mark_idle):
            event.listen(engine, "connect", _mark_idle)
            event.listen(engine, "checkin", _mark_idle)
            event.listen(engine, "checkout", liveness_check(engine.dialect))
