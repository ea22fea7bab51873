"""Engine tuning: SQLite in WAL mode with a busy timeout, so web, worker and cron can share it."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine


def engine_options(database_url: str) -> dict:
    """A server connection can go stale (restarts, idle timeouts), so the pool
    pings it on checkout; a SQLite file can't, and the ping would be pure cost."""
    return {} if database_url.startswith("sqlite") else {"pool_pre_ping": True}


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def init_app(app: Flask) -> None:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        return
    from pathlib import Path
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    with app.app_context():
        from app.extensions import db
        engine: Engine = db.engine
        if not event.contains(engine, "connect", _sqlite_pragmas):
            event.listen(engine, "connect", _sqlite_pragmas)
