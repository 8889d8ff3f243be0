"""Records and totals for delivery tests: a small GPU cloud with exact quantities."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kubetally.delivery.retry import RetryPolicy
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind, parse_time
from kubetally.record import UsageRecord

#: Retries in tests: fast, but still exponential with jitter.
FAST = RetryPolicy(initial=timedelta(milliseconds=20), maximum=timedelta(milliseconds=200))
START = parse_time("2026-11-01T00:00:00Z")
SKUS = ("H100", "T4", "A100")


def record(
    tenant: str,
    item: str,
    hour: int,
    usage: str | Decimal,
    *,
    start: datetime = START,
    name: str | None = None,
    sku: str | None = None,
    capacity: str | None = None,
    cluster: str = "c1",
) -> UsageRecord:
    """One hourly record; ``sku``/``capacity`` become the ``gpu_sku``/``capacity_type`` dimensions."""
    period_start = start + timedelta(hours=hour)
    dims = {}
    if sku:
        dims["gpu_sku"] = sku
    if capacity:
        dims["capacity_type"] = capacity
    return UsageRecord.measure(
        cluster=cluster,
        kind="gpu",
        category="GPU",
        item=item,
        name=name or f"{tenant}-node",
        namespace=f"ns-{tenant}",
        tenant=tenant,
        period_kind=PeriodKind.hourly,
        period=Period(period_start, period_start + timedelta(hours=1)),
        usage=usage,
        unit="hours",
        dimensions=dims,
    )


def fleet(tenants: int, hours: int, *, start: datetime = START) -> list[UsageRecord]:
    """Records for ``tenants`` × ``hours`` × 2 items with distinct, awkward decimals."""
    out = []
    for t in range(tenants):
        for h in range(hours):
            sku = SKUS[(t + h) % len(SKUS)]
            out.append(
                record(
                    f"t{t}",
                    "gpu_hours",
                    h,
                    Decimal(f"{t + 1}.{h:03d}123"),
                    start=start,
                    sku=sku,
                    capacity="spot" if h % 2 else "on-demand",
                )
            )
            out.append(record(f"t{t}", "cpu_core_hours", h, Decimal(f"{(t * 7 + h) % 13}.25"), start=start))
    return out


def ledger_totals(ledger: Ledger) -> dict[tuple[str, str], Decimal]:
    """Current usage per (tenant, item) — what every backend must end up with."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for rec in ledger.records():
        totals[(rec.tenant, rec.item)] += rec.usage
    return {k: v for k, v in totals.items() if v != 0}


def sum_by(events: Iterable[Mapping[str, Any]], key: Any, quantity: Any) -> dict[Any, Decimal]:
    totals: dict[Any, Decimal] = defaultdict(Decimal)
    for event in events:
        totals[key(event)] += Decimal(str(quantity(event)))
    return {k: v for k, v in totals.items() if v != 0}
