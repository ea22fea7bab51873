"""Pooled connections: a connection the server closed is replaced before a request
uses it, and a busy pool pays no ping (app.database)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app import database
from app.extensions import db
from tests.integration.scim_helpers import ScimClient, make_token


@pytest.fixture
def pings(app, monkeypatch):
    """Count the liveness pings the pool sends (the real ping still runs)."""
    sent = []
    real_ping = db.engine.dialect.do_ping

    def counted(dbapi_connection):
        sent.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return sent


def backend_pid() -> int:
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    db.session.commit()  # the connection goes back to the pool
    return pid


@pytest.mark.postgres
def test_a_connection_the_server_closed_is_replaced_before_the_request_uses_it(db_backend, app, client,
                                                                               workspace, pings):
    if db_backend == "sqlite":
        pytest.skip("a SQLite file has no server to close the connection")
    scim = ScimClient(client, make_token(workspace))
    assert scim.get("/Users").status_code == 200
    pid = backend_pid()
    # What a database restart or an admin's pg_terminate_backend does to the pooled connection.
    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    deadline = time.monotonic() + 5
    with outside.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar():
            assert time.monotonic() < deadline, "the backend never ended"
            time.sleep(0.02)
    outside.dispose()

    response = scim.get("/Users")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(pings) == 1  # the closed socket was noticed without a round trip, then confirmed
    assert backend_pid() != pid


@pytest.mark.postgres
def test_a_busy_pool_is_not_pinged_and_an_idle_one_is(db_backend, app, client, workspace, pings, monkeypatch):
    scim = ScimClient(client, make_token(workspace))
    for _ in range(5):
        assert scim.get("/Users").status_code == 200
    assert pings == []

    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)  # every connection counts as idle
    for _ in range(3):
        assert scim.get("/Users").status_code == 200
    # A SQLite file cannot go stale: its connections are never pinged.
    assert len(pings) == (0 if db_backend == "sqlite" else 3)
