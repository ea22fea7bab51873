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
def test_connections_the_server_closed_are_replaced_before_a_request_uses_them(db_backend, app, client,
                                                                                workspace, pings):
    if db_backend == "sqlite":
        pytest.skip("a SQLite file has no server to close the connection")
    scim = ScimClient(client, make_token(workspace))
    assert scim.get("/Users").status_code == 200
    pooled = [db.engine.connect() for _ in range(3)]  # three connections in the pool
    pids = {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in pooled}
    for conn in pooled:
        conn.close()
    # What a database restart or an admin's pg_terminate_backend does to pooled connections.
    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.begin() as conn:
        for pid in pids:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    deadline = time.monotonic() + 5
    with outside.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                           {"pids": list(pids)}).scalar():
            assert time.monotonic() < deadline, "the backends never ended"
            time.sleep(0.02)
    outside.dispose()

    responses = [scim.get("/Users") for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200], responses[0].get_data(as_text=True)
    # The closed socket was noticed without a round trip and confirmed by one ping; that
    # retired the whole pool, so the other dead connections were replaced without a ping each.
    assert len(pings) == 1
    assert backend_pid() not in pids


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
