"""Central server: API tokens (hashes only), per-record ingest state and per-cluster ingest totals.

Described also by :mod:`kubetally.server.tables`.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import UTCDateTime

revision = "0005_server"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=True),
        sa.Column("cluster", sa.String(253), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("hash", name="uq_server_tokens_hash"),
    )
    op.create_table(
        "server_ingest",
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "server_clusters",
        sa.Column("cluster", sa.String(253), primary_key=True),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("last_ingest_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_clusters")
    op.drop_table("server_ingest")
    op.drop_table("server_tokens")
