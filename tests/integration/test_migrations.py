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
