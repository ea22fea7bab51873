"""Bookkeeping writes made when the transaction commits, with the COMMIT.

Audit events, the SCIM request log and the SAML login log get a row with nearly
every change, and nobody reads that row back in the request that writes it; every
sign-in also stamps the member's last sign-in. Written as they are recorded, each is
a round trip of its own on PostgreSQL, and together they cost a SCIM PATCH more than
its own UPDATE. So `insert_at_commit` and `update_at_commit` only queue the write on
the session, and the commit makes the queued writes, in the same transaction as the
change they describe, ahead of any change still waiting for the ORM's flush (as when
they were made at once):

- PostgreSQL (psycopg 3) with nothing left to flush: the queued writes go out as one
  statement (every write but the last in a writable CTE) together with the COMMIT, in
  one psycopg pipeline: one round trip for the bookkeeping and the commit, where a
  commit alone takes one. SQLAlchemy's own COMMIT that follows finds the transaction
  already committed, and psycopg makes it a no-op.
- Otherwise (SQLite, pending ORM changes, a savepoint, a bulk queue): one statement
  per run of writes of the same kind to the same table, in queue order, then the
  usual flush and COMMIT.

An update is by primary key, and no more than a stamp: it does not check that the row
is still there (it changes nothing if not), and it does not move the ORM's copy (its
caller sets that, e.g. with `set_committed_value`).

They still commit or roll back with the change: a rollback, or a session closed
without a commit, drops the queue; rolling back a savepoint drops the writes queued
inside it. A read of one of those tables through the session in the same transaction
writes the queue first, as autoflush does for the ORM, so code that records and then
reads sees its own writes. A failure is raised as SQLAlchemy's exception for it, with
nothing of the transaction written; as after a failed flush, the session then refuses
to commit until it is rolled back.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import groupby
from typing import NamedTuple

from sqlalchemy import Connection, Dialect, Enum, String, Table, and_, bindparam, event, insert, update
from sqlalchemy.exc import DBAPIError, PendingRollbackError, StatementError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, scoped_session
from sqlalchemy.sql.util import find_tables

_QUEUE = "deferred_writes"
_FAILED = "deferred_writes_failed"
# Past this many writes (a bulk change), one statement per table with many rows each, before an
# ordinary COMMIT: a statement's parameters are limited, and each shape is prepared once.
ONE_STATEMENT_MAX_ROWS = 20


class _Write(NamedTuple):
    table: Table
    row: dict  # column name → value; for an update, the new values and the primary key's
    is_update: bool


def insert_at_commit(session: Session | scoped_session, table: Table, row: dict) -> None:
    """Queue `row` (column name → value) for `table`; it is inserted when `session` commits."""
    _queue(session, _Write(table, row, is_update=False))


def update_at_commit(session: Session | scoped_session, table: Table, key: dict, values: dict) -> None:
    """Queue an UPDATE of `table`'s row whose primary key is `key` (column name → value),
    setting `values` (column name → value), made when `session` commits."""
    if set(key) != {column.name for column in table.primary_key} or set(key) & set(values):
        raise ValueError(f"update_at_commit: {sorted(key)} is not the primary key of {table.name}, or is set too")
    _queue(session, _Write(table, {**values, **key}, is_update=True))


def _queue(session: Session | scoped_session, write: _Write) -> None:
    session = session() if isinstance(session, scoped_session) else session
    if not session.in_transaction():
        session.begin()  # no SQL yet; but now a rollback or a close has a transaction to end, and drops the write
    session.info.setdefault(_QUEUE, []).append(write)


def write_queued(session: Session, connection: Connection | None = None) -> None:
    """Make the queued writes now, in the session's transaction (or on `connection`): one
    statement per run of writes of the same kind to the same table, in queue order. Core,
    on the session's connection: the ORM's execute machinery has nothing to add here."""
    queue = session.info.pop(_QUEUE, None)
    if not queue:
        return
    connection = connection or session.connection()
    for (table, columns, is_update), group in groupby(
            queue, key=lambda write: (write.table, tuple(write.row), write.is_update)):
        rows = [write.row for write in group]
        if is_update:
            statement = _update(table, columns)
            rows = [{f"key_{name}": value for name, value in row.items()} for row in rows]
        else:
            statement = _insert(table)
        connection.execute(statement, rows if len(rows) > 1 else rows[0])


def _write_with_the_commit(session: Session, connection: Connection) -> None:
    """PostgreSQL, nothing left to flush: the queued writes and the COMMIT in one pipeline (see above)."""
    queue = session.info.pop(_QUEUE)
    driver_connection = connection.connection.driver_connection
    sql = params = None
    try:
        # Updates first (they read no other write, and none reads them); inserts in queue order.
        writes = [(write, _complete(write, connection.dialect))
                  for write in sorted(queue, key=lambda write: not write.is_update)]
        sql = _one_statement(tuple((write.table, tuple(row), write.is_update) for write, row in writes),
                             connection.dialect)
        params = {f"w{i}_{name}": value for i, (_, row) in enumerate(writes) for name, value in row.items()}
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


def _complete(write: _Write, dialect: Dialect) -> dict:
    """The write's row as the driver takes it: every Python-side default (an update's
    `onupdate`) filled in, and each value through its column type's bind processor
    (SQLAlchemy does both for its own statements)."""
    complete = {}
    for column in write.table.columns:
        default = column.onupdate if write.is_update else column.default
        if column.name in write.row:
            value = write.row[column.name]
        elif default is not None and not default.is_sequence:
            value = default.arg(None) if default.is_callable else default.arg
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
def _update(table: Table, columns: tuple):
    """The UPDATE setting `columns` (the primary key's excepted) of the row with the primary
    key's values; every parameter is named `key_<column>` (a bind parameter can't take the
    name of a column the statement sets)."""
    keys = {column.name for column in table.primary_key}
    return (update(table).where(and_(*(column == bindparam(f"key_{column.name}") for column in table.primary_key)))
            .values({name: bindparam(f"key_{name}") for name in columns if name not in keys}))


@lru_cache(maxsize=256)
def _one_statement(shape: tuple, dialect: Dialect) -> str:
    """The SQL making one write per (table, columns, is_update) of `shape`, updates first,
    with parameters named `w<write>_<column>`; built once per shape:

        WITH w0 AS (UPDATE "user" SET last_login_at = ... WHERE id = ... RETURNING 1),
             w1 AS (INSERT INTO audit_event (...) VALUES (...) RETURNING 1),
             w2 AS (INSERT INTO audit_event (...) SELECT ... FROM w1 RETURNING 1)
        INSERT INTO saml_login_log (...) SELECT ... FROM w2

    Each INSERT reads the one before it, so PostgreSQL runs them in queue order and the
    ids follow it (the data-modifying statements of a WITH otherwise run in an order it
    leaves unspecified). An update reads none and none reads it: PostgreSQL runs every
    statement of a WITH to its end all the same."""
    quote, statements, previous_insert = dialect.identifier_preparer, [], None
    for i, (table, columns, is_update) in enumerate(shape):
        value = {name: f"CAST(%(w{i}_{name})s AS {_cast_type(table.c[name].type, dialect)})" for name in columns}
        if is_update:
            keys = {column.name for column in table.primary_key}
            assignments = ", ".join(f"{quote.quote(name)} = {value[name]}" for name in columns if name not in keys)
            condition = " AND ".join(f"{quote.quote(name)} = {value[name]}" for name in columns if name in keys)
            statements.append(f"UPDATE {quote.format_table(table)} SET {assignments} WHERE {condition}")
            continue
        values = ", ".join(value.values())
        source = f"SELECT {values} FROM w{previous_insert}" if previous_insert is not None else f"VALUES ({values})"
        statements.append(f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) "
                          f"{source}")
        previous_insert = i
    if len(statements) == 1:
        return statements[0]
    ctes = ",\n     ".join(f"w{i} AS ({sql} RETURNING 1)" for i, sql in enumerate(statements[:-1]))
    return f"WITH {ctes}\n{statements[-1]}"


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
        queued = {write.table for write in queue}
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
