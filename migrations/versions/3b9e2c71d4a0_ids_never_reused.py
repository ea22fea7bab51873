"""SCIM ids are never handed out twice: AUTOINCREMENT for user and scim_group on SQLite

SQLite gives a new row the highest id + 1, so deleting the member (or group) with
the highest id hands that id to the next one; an IdP still holding the deleted
one's SCIM id (Entra sends DELETE weeks later) would reach the new member.
AUTOINCREMENT never reuses an id. PostgreSQL sequences never did: nothing to do
there. SQLite needs the table rebuilt (batch mode); migrations/env.py turns
foreign-key enforcement off meanwhile, or dropping the old table would cascade.

Revision ID: 3b9e2c71d4a0
Revises: 785d7330c005
Create Date: 2026-12-06 23:50:00
"""
from alembic import op

revision = "3b9e2c71d4a0"
down_revision = "785d7330c005"
branch_labels = None
depends_on = None

TABLES = ("user", "scim_group")


def upgrade():
    _rebuild(autoincrement=True)


def downgrade():
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
