"""Budgets stored through the server's API, budget alerts (once per crossing) and their outbox.

Described also by :mod:`kubetally.reports.budget_tables`.
"""

import sqlalchemy as sa
from alembic import op

from kubetally.ledger.types import ExactDecimal, UTCDateTime

revision = "0007_budgets"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("budget", sa.String(128), nullable=False),
        sa.Column("scope_kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(253), nullable=False),
        sa.Column("tenant", sa.String(253), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("threshold", ExactDecimal, nullable=False),
        sa.Column("period_start", UTCDateTime, nullable=False),
        sa.Column("period_end", UTCDateTime, nullable=False),
        sa.Column("value", ExactDecimal, nullable=False),
        sa.Column("limit", ExactDecimal, nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("crossed_at", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_budget_alerts_tenant", "budget_alerts", ["tenant", "period_start"])
    op.create_table(
        "budget_alert_sends",
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("claimed_until", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("alert_id", "target", name="pk_budget_alert_sends"),
    )
    op.create_index("ix_budget_alert_sends_state", "budget_alert_sends", ["state"])


def downgrade() -> None:
    op.drop_index("ix_budget_alert_sends_state", "budget_alert_sends")
    op.drop_table("budget_alert_sends")
    op.drop_index("ix_budget_alerts_tenant", "budget_alerts")
    op.drop_table("budget_alerts")
    op.drop_table("budgets")
