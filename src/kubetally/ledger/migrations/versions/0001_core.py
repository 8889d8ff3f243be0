"""Core ledger: records (all revisions) and collection watermarks.

Later parts branch from this revision (``down_revision = "0001_core"``); the ledger upgrades to
all heads, so independent parts never have to agree on an order.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import ExactDecimal, UTCDateTime

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("category", sa.String(128), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("project", sa.String(253), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("date", UTCDateTime, nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("start", UTCDateTime, nullable=False),
        sa.Column("end", UTCDateTime, nullable=False),
        sa.Column("usage", ExactDecimal, nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("id", "revision", name="uq_records_id_revision"),
    )
    op.create_index("ix_records_current_start", "records", ["current", "start"])
    op.create_index("ix_records_item_start", "records", ["item", "start"])
    op.create_index("ix_records_tenant_start", "records", ["tenant", "start"])
    op.create_table(
        "watermarks",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("until", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", "cluster", "item", name="pk_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("watermarks")
    op.drop_index("ix_records_tenant_start", "records")
    op.drop_index("ix_records_item_start", "records")
    op.drop_index("ix_records_current_start", "records")
    op.drop_table("records")
