"""A version per rollup day, kept by every fold: which days changed, readable by any process.

The server keeps rated report buckets while the days they depend on keep their versions (in
memory and in ``server_report_buckets``). Existing days start at the current rollup cursor.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import UTCDateTime

revision = "0009_rollup_days"
down_revision = "0007_billing_zone"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rating_rollup_days",
        sa.Column("start", UTCDateTime, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO rating_rollup_days (start, version) "
        "SELECT DISTINCT r.start, s.seq FROM rating_rollups r, rating_rollup_state s "
        "WHERE r.grain = 'day' AND s.name = 'rollups'"
    )


def downgrade() -> None:
    op.drop_table("rating_rollup_days")
