"""Kubernetes source: lifetime journal, tenants and the single-writer lease.

Described also by :mod:`kubetally.sources.kubernetes.tables`.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import UTCDateTime

revision = "0002_kubernetes"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kubernetes_segments",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("uid", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("signature", sa.String(32), nullable=False),
        sa.Column("billed", sa.Text, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime, nullable=True),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("end_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_kubernetes_segments_open", "kubernetes_segments", ["cluster", "ended_at"])
    op.create_index("ix_kubernetes_segments_uid", "kubernetes_segments", ["cluster", "uid", "role"])
    op.create_index("ix_kubernetes_segments_start", "kubernetes_segments", ["cluster", "started_at"])
    op.create_table(
        "kubernetes_tenants",
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("project", sa.String(253), nullable=False),
        sa.Column("display_name", sa.String(253), nullable=False),
        sa.Column("sources", sa.String(253), nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("missing_since", UTCDateTime, nullable=True),
        sa.Column("offboarded_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("cluster", "tenant", "namespace", name="pk_kubernetes_tenants"),
    )
    op.create_table(
        "kubernetes_leases",
        sa.Column("cluster", sa.String(253), primary_key=True),
        sa.Column("holder", sa.String(253), nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kubernetes_leases")
    op.drop_table("kubernetes_tenants")
    op.drop_index("ix_kubernetes_segments_start", "kubernetes_segments")
    op.drop_index("ix_kubernetes_segments_uid", "kubernetes_segments")
    op.drop_index("ix_kubernetes_segments_open", "kubernetes_segments")
    op.drop_table("kubernetes_segments")
