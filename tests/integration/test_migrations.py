"""`flask db upgrade` builds the schema on SQLite and PostgreSQL, and it matches the models."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from app import create_app
from app.extensions import db
from app.models.base import render_migration_item


def _head(app) -> str:
    from pathlib import Path
    from alembic.script import ScriptDirectory
    return ScriptDirectory(str(Path(app.root_path).parent / "migrations")).get_current_head()


def _fresh_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    server = request.getfixturevalue("postgres_server")
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS migrated"))
        conn.execute(text("CREATE DATABASE migrated"))
    admin.dispose()
    return server.url("migrated")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_matches_the_models_and_downgrades(backend, tmp_path, redis_url, request):
    url = _fresh_url(backend, tmp_path, request)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "SECRET_KEY": "x", "TESTING": True})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "render_item": render_migration_item})
            diff = compare_metadata(context, db.metadata)
        assert diff == [], "models and migrations differ: " + "; ".join(
            f"{d[0]} {getattr(d[1], 'name', '')}" if isinstance(d, tuple) else str(d)[:200] for d in diff)
        assert "user" in inspect(db.engine).get_table_names()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_ids_never_reused_migration_keeps_every_row_on_sqlite(tmp_path, redis_url):
    """The SQLite rebuild of `user` and `scim_group` (AUTOINCREMENT) on a database with data: with
    foreign keys enforced, dropping the old table would have cascaded to recordings and group
    members. Everything stays, and a deleted highest id is not handed out again."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "SECRET_KEY": "x", "TESTING": True})
    with app.app_context():
        upgrade(revision="785d7330c005")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO workspace (id, name, slug, plan, default_role, created_at) "
                              "VALUES (1, 'Acme', 'acme', 'enterprise', 'creator', '2026-01-01')"))
            for user_id in (1, 2, 3):
                conn.execute(text(
                    "INSERT INTO user (id, workspace_id, email, email_normalized, name, role, status, source, "
                    "session_version, created_at, updated_at) VALUES (:id, 1, :e, :e, 'U', 'creator', 'active', "
                    "'scim', 1, '2026-01-01', '2026-01-01')"), {"id": user_id, "e": f"u{user_id}@acme.test"})
                conn.execute(text("INSERT INTO recording (workspace_id, owner_id, title, duration_seconds, created_at) "
                                  "VALUES (1, :id, 'R', 60, '2026-01-01')"), {"id": user_id})
            conn.execute(text("INSERT INTO scim_group (id, workspace_id, display_name, display_name_normalized, "
                              "created_at, updated_at) VALUES (1, 1, 'G', 'g', '2026-01-01', '2026-01-01')"))
            conn.execute(text("INSERT INTO scim_group_member (group_id, user_id, workspace_id, created_at) "
                              "VALUES (1, 3, 1, '2026-01-01')"))
        upgrade()
        with db.engine.begin() as conn:
            counts = {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                      for table in ("user", "recording", "scim_group", "scim_group_member")}
            assert counts == {"user": 3, "recording": 3, "scim_group": 1, "scim_group_member": 1}
            for table in ("user", "scim_group"):
                sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = :t"), {"t": table}).scalar()
                assert "AUTOINCREMENT" in sql
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # back on for the app
            conn.execute(text("DELETE FROM user WHERE id = 3"))
            conn.execute(text(
                "INSERT INTO user (workspace_id, email, email_normalized, name, role, status, source, "
                "session_version, created_at, updated_at) VALUES (1, 'new@acme.test', 'new@acme.test', 'N', "
                "'creator', 'active', 'scim', 1, '2026-01-01', '2026-01-01')"))
            assert conn.execute(text("SELECT id FROM user WHERE email = 'new@acme.test'")).scalar() == 4
            assert conn.execute(text("SELECT count(*) FROM recording")).scalar() == 2  # only the deleted one's went
        db.engine.dispose()


def test_rows_that_were_already_orphans_dont_stop_this_or_later_upgrades(tmp_path, redis_url):
    """A recording whose owner is gone, written while foreign keys were off: not this migration's
    doing, so the upgrade goes through, and so does the next one."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "SECRET_KEY": "x", "TESTING": True})
    with app.app_context():
        upgrade(revision="785d7330c005")
        with db.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.execute(text("INSERT INTO workspace (id, name, slug, plan, default_role, created_at) "
                              "VALUES (1, 'Acme', 'acme', 'enterprise', 'creator', '2026-01-01')"))
            conn.execute(text("INSERT INTO recording (workspace_id, owner_id, title, duration_seconds, created_at) "
                              "VALUES (1, 99, 'R', 60, '2026-01-01')"))
            conn.commit()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        upgrade()
        upgrade()  # nothing to do, and no failure either
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head(app)
            assert conn.execute(text("SELECT count(*) FROM recording")).scalar() == 1
        db.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metadata_urls_that_never_delivered_forget_their_fetch_time(backend, tmp_path, redis_url, request):
    """Before a41f0c9e7b52 a failed fetch stamped metadata_fetched_at too, which now means "delivered":
    such rows forget it, unless the connection is on (its URL delivered what it runs on)."""
    url = _fresh_url(backend, tmp_path, request)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url, "SECRET_KEY": "x", "TESTING": True})
    rows = [  # (id, staged, state, metadata_url, metadata_status)
        (1, False, "on", "https://idp.example/a", "failed"),
        (2, True, "draft", "https://idp.example/b", "failed"),
        (3, False, "tested", "https://idp.example/c", "pending"),
        (4, False, "tested", "https://idp.example/d", "ok"),
        (5, False, "draft", None, None),
    ]
    with app.app_context():
        upgrade(revision="3b9e2c71d4a0")
        with db.engine.begin() as conn:
            for workspace_id, (id_, staged, state, metadata_url, status) in enumerate(rows, start=1):
                conn.execute(text("INSERT INTO workspace (id, name, slug, plan, default_role, created_at) "
                                  "VALUES (:w, 'W', :slug, 'enterprise', 'creator', '2026-01-01')"),
                             {"w": workspace_id, "slug": f"w{workspace_id}"})
                conn.execute(text(
                    "INSERT INTO sso_connection (id, workspace_id, connection_id, is_staged, idp_kind, state, "
                    "jit_enabled, jit_role, created_at, updated_at, metadata_url, metadata_status, "
                    "metadata_fetched_at) VALUES (:id, :w, :cid, :staged, 'okta', :state, false, 'creator', "
                    "'2026-01-01', '2026-01-01', :url, :status, '2026-12-01')"),
                    {"id": id_, "w": workspace_id, "cid": f"000{id_}-abcde0000", "staged": staged, "state": state,
                     "url": metadata_url, "status": status})
        upgrade()
        with db.engine.connect() as conn:
            fetched = dict(conn.execute(text("SELECT id, metadata_fetched_at FROM sso_connection")).all())
        assert {id_ for id_, when in fetched.items() if when is None} == {2, 3}
        db.engine.dispose()
