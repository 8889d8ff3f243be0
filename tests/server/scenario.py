"""The two-cluster scenario: clusters ``east`` and ``west`` both have a namespace ``team-a``
whose tenant is also called ``team-a``; ``west`` also has ``team-b``. Prices:
``tests/data/server/prices.yaml`` (H100 3.90/GPU-h, A100 2.10/GPU-h, CPU 0.04/core-h, team-a
10 % off, storage unpriced).

=======  ======  =================================  =========================  ============================
cluster  tenant  records (2026-11-02, hourly)        usage                      cost (list → after discount)
=======  ======  =================================  =========================  ============================
east     team-a  train-0 gpu_hours H100, 00–23 h     8 × 24 = 192 GPU-h         192 × 3.90 = 748.80 → 673.92
east     team-a  train-0 cpu_core_hours, 00–23 h     16 × 24 = 384 core-h       384 × 0.04 = 15.36 → 13.824
west     team-a  infer-0 gpu_hours A100, 00–23 h     4 × 24 = 96 GPU-h          96 × 2.10 = 201.60 → 181.44
west     team-b  batch-0 gpu_hours H100, 08–17 h     2 × 10 = 20 GPU-h          20 × 3.90 = 78.00 (no discount)
west     team-b  data-0 storage_gib_hours, 00–23 h   100 × 24 = 2400 GiB-h      unpriced: cost null
=======  ======  =================================  =========================  ============================

Per (cluster, tenant): east/team-a 673.92 + 13.824 = 687.744; west/team-a 181.44;
west/team-b 78.00. A namespace ``team-a`` row never sums east and west (687.744 ≠ 869.184).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from kubetally.periods import Period, PeriodKind
from kubetally.record import UsageRecord

DATA = Path(__file__).resolve().parent.parent / "data" / "server"
PRICES = DATA / "prices.yaml"
DAY = datetime(2026, 11, 2, tzinfo=UTC)
START, END = "2026-11-01", "2026-12-01"
H100, A100 = "nvidia-h100-sxm-80gb", "nvidia-a100-80gb"


def hourly(
    cluster: str,
    tenant: str,
    name: str,
    item: str,
    hour: int,
    usage: str,
    *,
    sku: str | None = None,
    day: datetime = DAY,
    unit: str = "h",
    namespace: str | None = None,
) -> UsageRecord:
    start = day + timedelta(hours=hour)
    return UsageRecord.measure(
        cluster=cluster,
        kind="Pod",
        category="storage" if item == "storage_gib_hours" else "compute",
        item=item,
        name=name,
        namespace=namespace or tenant,
        project=f"proj-{tenant}",
        tenant=tenant,
        period_kind=PeriodKind.hourly,
        period=Period(start, start + timedelta(hours=1)),
        usage=Decimal(usage),
        unit=unit,
        dimensions={"gpu_sku": sku} if sku else None,
    )


def east_records() -> list[UsageRecord]:
    out = [hourly("east", "team-a", "train-0", "gpu_hours", h, "8", sku=H100) for h in range(24)]
    out += [hourly("east", "team-a", "train-0", "cpu_core_hours", h, "16") for h in range(24)]
    return out


def west_records() -> list[UsageRecord]:
    out = [hourly("west", "team-a", "infer-0", "gpu_hours", h, "4", sku=A100) for h in range(24)]
    out += [hourly("west", "team-b", "batch-0", "gpu_hours", h, "2", sku=H100) for h in range(8, 18)]
    out += [hourly("west", "team-b", "data-0", "storage_gib_hours", h, "100", unit="GiB-h") for h in range(24)]
    return out


#: (cluster, tenant) → cost in micro-units, derived in the module docstring.
EXPECTED_MICROS = {
    ("east", "team-a"): 687_744_000,
    ("west", "team-a"): 181_440_000,
    ("west", "team-b"): 78_000_000,
}
