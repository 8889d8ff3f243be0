"""Tables of budgets and their alerts (migration ``0007_budgets``), on the ledger's shared metadata.

* ``budgets``: budgets created through the server's API (those in kubetally.yaml are not
  copied here); ``spec`` is the budget as JSON, validated by the same model as the file's.
* ``budget_alerts``: every threshold crossing, once. The id is derived from (budget, kind,
  threshold, period start), so inserting it is idempotent: a restarted agent, a second replica
  or a later correction can never make a second alert for the same crossing.
* ``budget_alert_sends``: the outbox of each alert per notify target, written in the same
  transaction as the alert; ``state`` is ``pending`` until the target acknowledged it, and a
  sender claims a row before sending so two replicas do not both send it.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from kubetally.ledger.schema import metadata
from kubetally.ledger.types import ExactDecimal, UTCDateTime

budgets = Table(
    "budgets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("budget", String(128), nullable=False),
    Column("scope_kind", String(16), nullable=False),
    Column("scope", String(253), nullable=False),
    # The tenant a tenant token may see this alert as (empty for project/cluster budgets).
    Column("tenant", String(253), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("threshold", ExactDecimal, nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("value", ExactDecimal, nullable=False),
    Column("limit", ExactDecimal, nullable=False),
    Column("unit", String(64), nullable=False),
    # End of the committed usage that first crossed the threshold.
    Column("crossed_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_budget_alerts_tenant", "tenant", "period_start"),
)

budget_alert_sends = Table(
    "budget_alert_sends",
    metadata,
    Column("alert_id", String(36), nullable=False),
    Column("target", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    # The process sending it now (``host:pid:nonce``) and until when its claim holds: a second
    # replica skips a claimed send; a claim whose process died on this host, or that expired,
    # is taken over.
    Column("claimed_by", String(255), nullable=True),
    Column("claimed_until", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("alert_id", "target", name="pk_budget_alert_sends"),
    Index("ix_budget_alert_sends_state", "state"),
)
