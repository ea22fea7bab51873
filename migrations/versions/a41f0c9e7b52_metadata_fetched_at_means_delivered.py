"""sso_connection.metadata_fetched_at now means "the metadata URL delivered, at"

It used to be stamped on a failed fetch too, and kept when the URL changed. A
connection whose URL is pending or failed would then look delivered, and could
be tested and promoted on metadata its URL never sent. Those rows forget the
stamp, so the URL must deliver again first; connections that are on keep it
(their URL delivered what they run on, and a failed daily refresh keeps that).

Revision ID: a41f0c9e7b52
Revises: 3b9e2c71d4a0
Create Date: 2026-12-07 05:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = "a41f0c9e7b52"
down_revision = "3b9e2c71d4a0"
branch_labels = None
depends_on = None


def upgrade():
    connections = sa.table("sso_connection", sa.column("metadata_url"), sa.column("metadata_status"),
                           sa.column("metadata_fetched_at"), sa.column("state"))
    op.execute(connections.update()
               .where(connections.c.metadata_url.is_not(None),
                      connections.c.metadata_status.in_(("pending", "failed")),
                      connections.c.state != "on")
               .values(metadata_fetched_at=None))


def downgrade():
    pass  # the old meaning reads a NULL as "never fetched", which these rows now are
