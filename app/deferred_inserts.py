"""Bookkeeping rows inserted when the transaction commits, with the COMMIT.

Audit events, the SCIM request log and the SAML login log get a row with nearly
every change, and nobody reads that row back in the request that writes it. Written
as they are recorded, each is a round trip of its own on PostgreSQL, and together
they cost a SCIM PATCH more than its own UPDATE. So `insert_at_commit` only queues
the row on the session, and the commit writes the queue, in the same transaction as
the change it describes, ahead of any change still waiting for the ORM's flush (as
when the rows were written at once):

- PostgreSQL (psycopg 3) with nothing left to flush: the queued rows go out as one
  statement (every row but the last in a writable CTE) together with the COMMIT, in
  one psycopg pipeline: one round trip for the bookkeeping and the commit, where a
  commit alone takes one. SQLAlchemy's own COMMIT that follows finds the transaction
  already committed, and psycopg makes it a no-op.
- Otherwise (SQLite, pending ORM changes, a savepoint, a bulk queue): one INSERT per
  table, then the usual flush and COMMIT.

They still commit or roll back with the change: a rollback, or a session closed
without a commit, drops the queue; rolling back a savepoint drops the rows queued
inside it. A read of one of those tables through the session in the same transaction
writes the queue first, as autoflush does for the ORM, so code that records and then
reads sees its own rows. A failure is raised as SQLAlchemy's exception for it, with
nothing of the transaction written; as after a failed flush, the session then refuses
to commit until it is rolled back.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import groupby

from sqlalchemy import Connection, Dialect, Enum, String, Table, event, insert
from sqlalchemy.exc import DBAPIError, PendingRollbackError, StatementError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, scoped_session
from sqlalchemy.sql.util import find_tables

_QUEUE = "deferred_inserts"
_FAILED = "deferred_inserts_failed"
# Past this many rows (a bulk change), one INSERT per table with many rows each, before an
# ordinary COMMIT: a statement's parameters are limited, and each shape is prepared once.
ONE_STATEMENT_MAX_ROWS = 20


def insert_at_commit(session: Session | scoped_session, table: Table, row: dict) -> None:
    """Queue `row` (column name → value) for `table`; it is inserted when `session` commits."""
    session = session() if isinstance(session, scoped_session) else session
    if not session.in_transaction():
        session.begin()  # no SQL yet; but now a rollback or a close has a transaction to end, and drops the row
    session.info.setdefault(_QUEUE, []).append((table, row))


def write_queued(session: Session, connection: Connection | None = None) -> None:
    """Insert the queued rows now, in the session's transaction (or on `connection`): one
    INSERT per run of rows of the same table. Core, on the session's connection: the ORM's
    execute machinery has nothing to add to an INSERT."""
    queue = session.info.pop(_QUEUE, None)
    if not queue:
        return
    connection = connection or session.connection()
    for (table, _), group in groupby(queue, key=lambda queued: (queued[0], tuple(queued[1]))):
        rows = [row for _, row in group]
        connection.execute(_insert(table), rows if len(rows) > 1 else rows[0])


def _write_with_the_commit(session: Session, connection: Connection) -> None:
    """PostgreSQL, nothing left to flush: the queued rows and the COMMIT in one pipeline (see above)."""
    queue = session.info.pop(_QUEUE)
    driver_connection = connection.connection.driver_connection
    sql = params = None
    try:
        rows = [(table, _complete(table, row, connection.dialect)) for table, row in queue]
        sql = _one_statement(tuple((table, tuple(row)) for table, row in rows), connection.dialect)
        params = {f"w{i}_{name}": value for i, (_, row) in enumerate(rows) for name, value in row.items()}
        # COMMIT as a statement, not commit(): that would sync the pipeline, and leaving it
        # syncs again, two round trips. Leaving it is then the only one.
        with driver_connection.pipeline():
            driver_connection.execute(sql, params, prepare=True)
            driver_connection.execute("COMMIT")
    except connection.dialect.loaded_dbapi.Error as error:
        # What SQLAlchemy does with an error of its own statements: a lost connection leaves the pool.
        invalidated = connection.dialect.is_disconnect(error, driver_connection, None)
        if invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(sql, params, error, connection.dialect.loaded_dbapi.Error,
                                  connection_invalidated=invalidated) from error
    except (TypeError, ValueError) as error:  # a value that cannot be sent, reported as SQLAlchemy does
        raise StatementError(str(error), sql, params, error) from error


def _complete(table: Table, row: dict, dialect: Dialect) -> dict:
    """`row` as the driver takes it: every Python-side default filled in, and each value
    through its column type's bind processor (SQLAlchemy does both for its own statements)."""
    complete = {}
    for column in table.columns:
        if column.name in row:
            value = row[column.name]
        elif column.default is not None and not column.default.is_sequence:
            value = column.default.arg(None) if column.default.is_callable else column.default.arg
        else:
            continue
        process = _bind_processor(column, dialect)
        complete[column.name] = process(value) if process is not None else value
    return complete


@lru_cache(maxsize=None)
def _bind_processor(column, dialect: Dialect):
    return column.type.dialect_impl(dialect).bind_processor(dialect)


@lru_cache(maxsize=None)
def _insert(table: Table):
    return insert(table)


@lru_cache(maxsize=256)
def _one_statement(shape: tuple, dialect: Dialect) -> str:
    """The SQL inserting a row per (table, columns) of `shape`, with parameters named
    `w<row>_<column>`; built once per shape:

        WITH w0 AS (INSERT INTO audit_event (...) VALUES (...) RETURNING 1),
             w1 AS (INSERT INTO audit_event (...) SELECT ... FROM w0 RETURNING 1)
        INSERT INTO scim_request_log (...) SELECT ... FROM w1

    Each INSERT reads the one before it, so PostgreSQL runs them in queue order and the
    ids follow it (the data-modifying statements of a WITH otherwise run in an order it
    leaves unspecified)."""
    quote, inserts = dialect.identifier_preparer, []
    for i, (table, columns) in enumerate(shape):
        values = ", ".join(f"CAST(%(w{i}_{name})s AS {_cast_type(table.c[name].type, dialect)})" for name in columns)
        source = f"SELECT {values} FROM w{i - 1}" if i else f"VALUES ({values})"
        inserts.append(f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) "
                       f"{source}")
    if len(inserts) == 1:
        return inserts[0]
    ctes = ",\n     ".join(f"w{i} AS ({sql} RETURNING 1)" for i, sql in enumerate(inserts[:-1]))
    return f"WITH {ctes}\n{inserts[-1]}"


def _cast_type(type_, dialect: Dialect) -> str:
    """The type to cast a parameter to: a string type without its length (a CAST to
    VARCHAR(64) would cut a longer value; the column itself refuses it), else the type."""
    if isinstance(type_, String) and not isinstance(type_, Enum):
        return String().compile(dialect)
    return type_.compile(dialect)


# --- the session's side ---------------------------------------------------------------------------

@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    failed = session.info.get(_FAILED)
    if failed is not None:
        # As after a failed flush: the transaction is gone (or half done); only a rollback ends it.
        raise PendingRollbackError(f"This session's commit failed ({failed[1]!r}); roll it back first.")
    queue = session.info.get(_QUEUE)
    if not queue:
        return
    try:
        connection = session.connection()
        # The rows go before the ORM's pending changes, as they did when written as recorded
        # (a member deleted after being named the actor of an event is set NULL, not refused).
        # With nothing left to flush they can go with the COMMIT.
        if (connection.dialect.driver == "psycopg" and not session.in_nested_transaction()
                and len(queue) <= ONE_STATEMENT_MAX_ROWS and not (session.new or session.dirty or session.deleted)):
            _write_with_the_commit(session, connection)
        else:
            write_queued(session, connection)
    except Exception as error:
        session.info[_FAILED] = (session.get_nested_transaction() or session.get_transaction(), error)
        raise


@event.listens_for(Session, "do_orm_execute")
def _write_before_reading(state: ORMExecuteState) -> None:
    queue = state.session.info.get(_QUEUE)
    if queue and not state.is_insert:
        queued = {table for table, _ in queue}
        if queued.intersection(find_tables(state.statement, check_columns=True, include_aliases=True,
                                           include_crud=True)):
            write_queued(state.session)


@event.listens_for(Session, "after_transaction_create")
def _write_before_a_savepoint(session: Session, transaction: SessionTransaction) -> None:
    """Rows queued before a SAVEPOINT are written before it (on the enclosing transaction's
    connection, so before the SAVEPOINT is sent): rolling the savepoint back must not undo
    them. So the queue only ever holds rows queued inside the innermost transaction."""
    if transaction.nested and session.info.get(_QUEUE):
        write_queued(session, transaction.parent.connection(None))


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: SessionTransaction) -> None:
    session.info.pop(_QUEUE, None)
    failed = session.info.get(_FAILED)
    if failed is not None and (previous_transaction.parent is None or failed[0] is previous_transaction):
        del session.info[_FAILED]  # the transaction that failed (or all of them) is rolled back


@event.listens_for(Session, "after_transaction_end")
def _forget_at_the_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # a session closed without a commit
        session.info.pop(_QUEUE, None)
        session.info.pop(_FAILED, None)
