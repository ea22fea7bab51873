"""Pooled connections: a connection the server closed is replaced before a request
uses it, and a busy pool pays no ping (app.database). Bookkeeping rows go out at
commit, together (app.deferred_writes)."""
from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, PendingRollbackError, StatementError
from sqlalchemy.pool import NullPool

from app import database
from app.audit.service import addresses_of, record
from app.deferred_writes import update_at_commit
from app.extensions import db
from app.models import AuditEvent, ScimRequestLog, User, Workspace
from app.scim import requestlog
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


# --- bookkeeping rows inserted at commit (app.deferred_writes) -------------------------------------

@pytest.fixture
def statements(app):
    """The SQL statements the app's engine sends, in order."""
    sent = []

    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield sent
    event.remove(db.engine, "before_cursor_execute", record)


def audit_actions(workspace) -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).where(AuditEvent.workspace_id == workspace.id)
                                   .order_by(AuditEvent.id)))


@pytest.mark.postgres
def test_bookkeeping_rows_are_written_at_commit_with_the_change(db_backend, app, workspace, admin, statements):
    record(workspace.id, "member.role_changed", actor=admin, target=admin, old="admin", new="admin")
    record(workspace.id, "member.renamed", actor=admin, target=admin)
    requestlog.add_entry(workspace.id, "PATCH", "/scim/v2/Users/1", 200, 3, b'{"password": "x"}', admin.id, "test")
    assert statements == [], "nothing is sent when recorded"
    admin.name = "Renamed Admin"
    db.session.flush()  # as a SCIM write does, to catch a uniqueness violation itself
    db.session.commit()

    inserts = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "WITH"))]
    if db_backend == "postgresql":
        # The three rows went out with the COMMIT, in psycopg's pipeline, not as statements of their own.
        assert [s.split()[0] for s in statements] == ["UPDATE"] and inserts == []
    else:
        assert len(inserts) == 2  # one per table; a SQLite "round trip" is a function call
    # In the order they were recorded, ids included.
    assert audit_actions(workspace)[-2:] == ["member.role_changed", "member.renamed"]
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.workspace_id == workspace.id)
                                .order_by(AuditEvent.id)).all()[-2:]
    assert events[0].details == {"old": "admin", "new": "admin"} and events[0].actor_id == admin.id
    entry = db.session.scalars(select(ScimRequestLog).where(ScimRequestLog.workspace_id == workspace.id)).one()
    assert (entry.method, entry.status, entry.body) == ("PATCH", 200, '{"password":"***"}')
    assert db.session.get(User, admin.id).name == "Renamed Admin"
    # The connection is usable afterwards: the next transaction commits as usual.
    record(workspace.id, "member.renamed_again", actor=admin, target=admin)
    db.session.commit()
    assert audit_actions(workspace)[-1] == "member.renamed_again"


SIGNED_IN_AT = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone.utc)


def last_login_at(user_id: int) -> dt.datetime | None:
    return db.session.scalar(select(User.last_login_at).where(User.id == user_id))


@pytest.mark.postgres
def test_a_stamp_goes_with_the_commit_too(db_backend, app, workspace, admin, statements):
    untouched = (admin.session_version, admin.role, admin.created_at, admin.updated_at)
    update_at_commit(db.session, User.__table__, {"id": admin.id}, {"last_login_at": SIGNED_IN_AT})
    record(workspace.id, "auth.signed_in", actor=admin, target=admin)
    assert statements == [], "nothing is sent when queued"
    db.session.commit()
    if db_backend == "postgresql":
        assert statements == []  # with the audit row and the COMMIT, in psycopg's pipeline
    else:
        assert [s.split()[0] for s in statements] == ["UPDATE", "INSERT"]
    assert last_login_at(admin.id) == SIGNED_IN_AT and audit_actions(workspace)[-1] == "auth.signed_in"
    db.session.expire_all()
    admin = db.session.get(User, admin.id)
    assert (admin.session_version, admin.role, admin.created_at, admin.updated_at) == untouched


@pytest.mark.postgres
def test_a_stamp_is_seen_by_a_read_in_its_transaction_and_dropped_by_a_rollback(db_backend, app, admin):
    before = last_login_at(admin.id)
    update_at_commit(db.session, User.__table__, {"id": admin.id}, {"last_login_at": SIGNED_IN_AT})
    assert last_login_at(admin.id) == SIGNED_IN_AT
    db.session.rollback()
    assert last_login_at(admin.id) == before
    with pytest.raises(RuntimeError):
        with db.session.begin_nested():
            update_at_commit(db.session, User.__table__, {"id": admin.id}, {"last_login_at": SIGNED_IN_AT})
            raise RuntimeError("undo the savepoint")
    db.session.commit()
    assert last_login_at(admin.id) == before


@pytest.mark.postgres
def test_a_stamp_and_the_orms_change_to_the_same_row_both_land(db_backend, app, admin):
    update_at_commit(db.session, User.__table__, {"id": admin.id}, {"last_login_at": SIGNED_IN_AT})
    admin.name = "Renamed Admin"
    db.session.commit()
    db.session.expire_all()
    assert (db.session.get(User, admin.id).name, last_login_at(admin.id)) == ("Renamed Admin", SIGNED_IN_AT)


@pytest.mark.postgres
def test_a_stamp_moves_an_onupdate_column_as_sqlalchemy_would(db_backend, app, workspace):
    from app.models import SsoConnection
    from app.sso import connections
    conn = connections.start_setup(workspace, "okta", actor=None)
    db.session.commit()
    conn_id, created_at, updated_at = conn.id, conn.created_at, conn.updated_at
    update_at_commit(db.session, SsoConnection.__table__, {"id": conn_id}, {"jit_role": "creator_lite"})
    db.session.commit()
    db.session.expire_all()
    after = db.session.get(SsoConnection, conn_id)
    assert after.jit_role == "creator_lite" and after.updated_at > updated_at
    assert after.created_at == created_at  # an insert's defaults are no part of an update


def test_a_stamp_is_by_primary_key_only(app, admin):
    with pytest.raises(ValueError):
        update_at_commit(db.session, User.__table__, {"email": admin.email}, {"last_login_at": SIGNED_IN_AT})
    with pytest.raises(ValueError):
        update_at_commit(db.session, User.__table__, {"id": admin.id}, {"id": admin.id + 1})


@pytest.mark.postgres
def test_a_bookkeeping_row_that_fails_rolls_the_whole_change_back(db_backend, app, workspace, admin):
    before = audit_actions(workspace)
    admin.name = "Never Saved"
    record(workspace.id, "member.renamed", actor=admin, target=admin)
    record(workspace.id + 1000, "member.renamed", actor=admin, target=admin)  # no such workspace: a foreign key fails
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()

    assert db.session.get(User, admin.id).name != "Never Saved"
    assert audit_actions(workspace) == before
    record(workspace.id, "member.renamed", actor=admin, target=admin)
    db.session.commit()
    assert audit_actions(workspace) == [*before, "member.renamed"]


@pytest.mark.postgres
def test_a_rollback_drops_the_queued_rows_and_a_savepoint_only_its_own(db_backend, app, workspace, admin):
    before = audit_actions(workspace)
    record(workspace.id, "test.rolled_back", actor=admin)
    db.session.rollback()
    record(workspace.id, "test.kept", actor=admin)
    with pytest.raises(RuntimeError):
        with db.session.begin_nested():
            record(workspace.id, "test.in_rolled_back_savepoint", actor=admin)
            raise RuntimeError("undo the savepoint")
    with db.session.begin_nested():
        record(workspace.id, "test.in_released_savepoint", actor=admin)
    db.session.commit()
    assert audit_actions(workspace) == [*before, "test.kept", "test.in_released_savepoint"]

    record(workspace.id, "test.never_committed", actor=admin)
    db.session.remove()  # the request ended without a commit
    db.session.commit()
    assert audit_actions(workspace) == [*before, "test.kept", "test.in_released_savepoint"]


@pytest.mark.postgres
def test_a_read_in_the_same_transaction_sees_the_queued_rows(db_backend, app, workspace, admin):
    record(workspace.id, "member.email_changed", actor=admin, target=admin, old="old@example.com",
           new=admin.email)
    # Read before any commit, as a purge reads the addresses a member has had.
    assert "old@example.com" in addresses_of(workspace.id, admin.id, admin.email)
    db.session.rollback()
    assert "old@example.com" not in addresses_of(workspace.id, admin.id, admin.email)


@pytest.mark.postgres
def test_a_connection_lost_at_commit_is_an_error_and_leaves_the_pool(db_backend, app, workspace, admin):
    if db_backend == "sqlite":
        pytest.skip("a SQLite file has no server to lose")
    before = audit_actions(workspace)
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()  # this transaction's connection
    record(workspace.id, "member.renamed", actor=admin, target=admin)
    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.begin() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    outside.dispose()

    with pytest.raises(OperationalError) as raised:
        db.session.commit()
    assert raised.value.connection_invalidated
    db.session.rollback()
    assert audit_actions(workspace) == before  # on a new connection: nothing was written
    assert backend_pid() != pid


@pytest.mark.postgres
def test_a_rollback_before_any_sql_still_drops_the_queued_row(db_backend, app, workspace, admin):
    before, workspace_id, admin_id = audit_actions(workspace), workspace.id, admin.id
    db.session.commit()  # no transaction open now, and none begins for what follows until the get()
    record(workspace_id, "test.rolled_back", actor_label="test")
    db.session.rollback()
    db.session.get(User, admin_id)
    db.session.commit()
    record(workspace_id, "test.closed", actor_label="test")
    db.session.close()
    db.session.get(User, admin_id)
    db.session.commit()
    assert audit_actions(db.session.get(Workspace, workspace_id)) == before


@pytest.mark.postgres
def test_rows_go_before_the_pending_changes_as_when_written_at_once(db_backend, app, workspace, admin):
    """The event names a member deleted later in the same transaction: the foreign key is
    set NULL by the delete, as when the row was written when recorded."""
    member = User(workspace_id=workspace.id, name="Short Lived", role="creator", status="active", source="invited")
    member.set_email("short.lived@example.com")
    db.session.add(member)
    db.session.commit()
    record(workspace.id, "member.deleted", actor=member, target=member)
    db.session.delete(member)
    db.session.commit()
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "member.deleted")).one()
    assert event.actor_id is None and event.target_label == "short.lived@example.com"


@pytest.mark.postgres
def test_after_a_failed_commit_only_a_rollback_goes_on(db_backend, app, workspace, admin):
    before = audit_actions(workspace)
    admin.name = "Never Saved"
    db.session.flush()
    record(workspace.id + 1000, "member.renamed", actor=admin, target=admin)  # no such workspace
    with pytest.raises(IntegrityError):
        db.session.commit()
    with pytest.raises(PendingRollbackError):
        db.session.commit()  # not a silent success, and not the change without its audit event
    db.session.rollback()
    assert db.session.get(User, admin.id).name != "Never Saved"
    assert audit_actions(workspace) == before


@pytest.mark.postgres
def test_a_value_too_long_for_its_column_is_refused_not_cut(db_backend, app, workspace, admin):
    if db_backend == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    before = audit_actions(workspace)
    record(workspace.id, "member." + "x" * 100, actor=admin)
    requestlog.add_entry(workspace.id, "GET", "/scim/v2/Users", 200, 1, None, None, "test")
    with pytest.raises(DataError):
        db.session.commit()
    db.session.rollback()
    assert audit_actions(workspace) == before


@pytest.mark.postgres
def test_a_value_that_cannot_be_sent_is_a_sqlalchemy_error(db_backend, app, workspace, admin):
    before = audit_actions(workspace)
    admin.name = "Never Saved"
    db.session.flush()
    record(workspace.id, "member.renamed", actor=admin, detail=object())  # not JSON
    with pytest.raises(StatementError):
        db.session.commit()
    db.session.rollback()
    assert db.session.get(User, admin.id).name != "Never Saved"
    assert audit_actions(workspace) == before


@pytest.mark.postgres
def test_a_failed_write_inside_a_savepoint_leaves_the_transaction_usable(db_backend, app, workspace, admin):
    before = audit_actions(workspace)
    record(workspace.id, "test.before_the_savepoint", actor=admin)
    with pytest.raises(IntegrityError):
        with db.session.begin_nested():
            record(workspace.id + 1000, "test.in_the_savepoint", actor=admin)  # no such workspace
    record(workspace.id, "test.after_the_savepoint", actor=admin)
    db.session.commit()  # the savepoint took its failure with it
    assert audit_actions(workspace) == [*before, "test.before_the_savepoint", "test.after_the_savepoint"]


@pytest.mark.postgres
def test_lower_folds_every_letter_and_keeps_null(db_backend, admin_client, workspace, make_user):
    """One lower() for the whole app: the members search finds Ørjan by "ørjan" on SQLite too."""
    make_user(workspace, "orjan@acme.test", name="Ørjan Ærø")
    make_user(workspace, "zoe@acme.test", name="ZOË Smith")
    for q, found, not_found in (("ørjan", "orjan@acme.test", "zoe@acme.test"), ("ÆRØ", "orjan@acme.test", "zoe@"),
                                ("zoë", "zoe@acme.test", "orjan@")):
        page = admin_client.get("/settings/members", query_string={"q": q}).get_data(as_text=True)
        assert found in page and not_found not in page, q
    row = db.session.execute(text("SELECT lower('ÅSA Ørjan'), lower(NULL), lower(NULL) IS NULL")).one()
    assert tuple(row) == ("åsa ørjan", None, True)
