"""The one mapping from a ``records`` row to a :class:`~kubetally.record.UsageRecord`.

The ledger validated every record on the way in, and its column types return exact Decimals
(normalised) and aware UTC datetimes, so reading skips validation: reads are the hot path of
reports and delivery. Every reader (the store, the delivery outbox) uses this function, so a new
column is mapped in one place."""

from __future__ import annotations

import json
from typing import Any

from kubetally.periods import PeriodKind
from kubetally.record import UsageRecord


def record_from_row(row: Any) -> UsageRecord:
    """A ``records`` row (any result row with the table's columns) as a record."""
    return UsageRecord.model_construct(
        id=row.id,
        kind=row.kind,
        category=row.category,
        item=row.item,
        name=row.name,
        namespace=row.namespace,
        cluster=row.cluster,
        project=row.project,
        tenant=row.tenant,
        labels=json.loads(row.labels),
        date=row.date,
        period=PeriodKind(row.period),
        start=row.start,
        end=row.end,
        usage=row.usage,
        unit=row.unit,
        revision=row.revision,
    )
