"""Rating: daily and monthly usage rollups for fast priced reports, and their ledger cursor."""

import json

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import ExactDecimal, UTCDateTime

revision = "0004_rating"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rating_rollups",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("grain", sa.String(8), nullable=False),
        sa.Column("start", UTCDateTime, nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("project", sa.String(253), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("category", sa.String(128), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("usage", ExactDecimal, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_rating_rollups_grain_start", "rating_rollups", ["grain", "start"])
    state = op.create_table(
        "rating_rollup_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("label_keys", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=True),
    )
    # The cursor row exists from the start, so concurrent refreshers only ever lock it. The
    # label keys start as the pricing dimensions kubetally's sources write; a price book that
    # needs more makes the first report rebuild the rollups with them.
    keys = [
        "billing_mode",
        "capacity_type",
        "device",
        "gen_ai.request.model",
        "gpu_profile",
        "gpu_sku",
        "modelName",
        "node_sku",
        "storage_class",
    ]
    op.bulk_insert(state, [{"name": "rollups", "seq": 0, "label_keys": json.dumps(keys), "updated_at": None}])


def downgrade() -> None:
    op.drop_table("rating_rollup_state")
    op.drop_index("ix_rating_rollups_grain_start", "rating_rollups")
    op.drop_table("rating_rollups")
