"""Tables of the rating part (migration ``0004_rating``), on the ledger's shared metadata.

``rating_rollups`` holds usage summed per local day and calendar month of the billing time zone
(``rating_rollup_state.timezone``) for every combination of
(tenant, project, namespace, cluster, category, item, unit, labels) — everything a report can
group or price by, minus the resource ``name`` — where ``labels`` keeps only the label keys
prices can depend on (``rating_rollup_state.label_keys``). ``rating_rollup_state`` also holds
the ``seq`` of the last ledger row folded in (see :mod:`kubetally.rating.rollups`).
``rating_rollup_days`` (migration ``0009_rollup_days``) holds a version per rollup day that
grows whenever a fold changes that day, so a reader can tell exactly which days changed since it
last looked — in any process, after a restart too.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from kubetally.ledger.schema import metadata
from kubetally.ledger.types import ExactDecimal, UTCDateTime

#: ``grain`` values.
DAY = "day"
MONTH = "month"
#: The one row of ``rating_rollup_state``.
ROLLUP_CURSOR = "rollups"

rollups = Table(
    "rating_rollups",
    metadata,
    # Hash of (grain, start, tenant, project, namespace, cluster, category, item, unit, labels):
    # one short unique key instead of a ten-column one.
    Column("key", String(32), primary_key=True),
    Column("grain", String(8), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("project", String(253), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("cluster", String(253), nullable=False),
    Column("category", String(128), nullable=False),
    Column("item", String(128), nullable=False),
    Column("unit", String(64), nullable=False),
    Column("labels", Text, nullable=False),
    Column("usage", ExactDecimal, nullable=False),
    # Current records folded in; a key whose records all moved away is deleted at 0.
    Column("records", BigInteger, nullable=False),
    Index("ix_rating_rollups_grain_start", "grain", "start"),
)

rollup_state = Table(
    "rating_rollup_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    # JSON list of the label keys the rollups keep.
    Column("label_keys", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    # IANA zone whose local days and months the rows start at (migration ``0007_billing_zone``).
    Column("timezone", String(64), nullable=False, server_default="UTC"),
)

rollup_days = Table(
    "rating_rollup_days",
    metadata,
    # A rollup day's start (local midnight of the rollups' time zone).
    Column("start", UTCDateTime, primary_key=True),
    # Grows at every fold that touches the day: max(previous + 1, the fold's seq cursor), so
    # never repeats, not even when the rollups are rebuilt from seq 0.
    Column("version", BigInteger, nullable=False),
)
