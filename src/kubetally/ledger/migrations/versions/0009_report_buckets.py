"""Rated report buckets of the server, shared by its replicas and kept across restarts.

A row is one bucket part (a day's flat-priced or tiered items for one report shape), valid
while the rollup days it depends on keep the versions it was computed at.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import UTCDateTime

revision = "0009_report_buckets"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_report_buckets",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("stored_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_report_buckets")
