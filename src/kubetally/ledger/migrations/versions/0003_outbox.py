"""Delivery outbox: per-destination cursors, visibility gaps, dead letters, tenants, setup objects.

See :mod:`kubetally.delivery.tables` for what each table is for.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import ExactDecimal, UTCDateTime

revision = "0003_outbox"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_cursors",
        sa.Column("destination", sa.String(128), primary_key=True),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("delivered", sa.BigInteger, nullable=False),
        sa.Column("duplicates", sa.BigInteger, nullable=False),
        sa.Column("skipped", sa.BigInteger, nullable=False),
        sa.Column("dead", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "outbox_gaps",
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("lo", sa.BigInteger, nullable=False),
        sa.Column("hi", sa.BigInteger, nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("destination", "lo", name="pk_outbox_gaps"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("record_id", sa.String(32), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("item", sa.String(128), nullable=False),
        sa.Column("quantity", ExactDecimal, nullable=False),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("destination", "event_id", name="uq_dead_letters_event"),
    )
    op.create_index("ix_dead_letters_state", "dead_letters", ["destination", "state"])
    op.create_table(
        "outbox_tenants",
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("destination", "tenant", name="pk_outbox_tenants"),
    )
    op.create_table(
        "outbox_objects",
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("remote_id", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("destination", "kind", "key", name="pk_outbox_objects"),
    )


def downgrade() -> None:
    op.drop_table("outbox_objects")
    op.drop_table("outbox_tenants")
    op.drop_index("ix_dead_letters_state", "dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("outbox_gaps")
    op.drop_table("outbox_cursors")
