"""The fixed report scenario: a small ledger whose every cost is derived by hand.

November 2026 (the 1st is a Sunday, so the 15th is a Sunday and the 16th a Monday, ISO W47).
Prices: ``tests/data/rating/prices.yaml``; display: the Alauda seed display ConfigMap
(VgpuMemoryUsed is collected in byte-hours, divisor 2^30 = 1073741824 → Gi-hours).

======  ==========================  ======  ====================================================
tenant  item / labels               day     usage
======  ==========================  ======  ====================================================
acme    gpu_hours h100 on-demand    15th    8 (10:00, one 8-GPU pod)
acme    gpu_hours h100 on-demand    16th    8 (10:00)
acme    cpu_core_hours              15th    60 (10:00)
acme    cpu_core_hours              16th    70 (10:00)
beta    gpu_hours h100 spot         15th    4 (11:00)
beta    gpu_hours h100 spot         16th    4 (11:00)
beta    gpu_hours b200 on-demand    16th    2 (12:00) → no price for b200: unpriced
beta    cpu_core_hours              15th    0.0000125 (12:00)
beta    VgpuMemoryUsed Tesla T4     15th    3221225472 byte-hours = 3 Gi-hours
beta    VgpuMemoryUsed Tesla P100   15th    1610612736 byte-hours = 1.5 Gi-hours (default price)
======  ==========================  ======  ====================================================
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from kubetally.config import Config, load_config
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind, parse_time
from kubetally.rating.pricebook import PriceBook
from kubetally.record import UsageRecord

DATA = Path(__file__).resolve().parent.parent / "data"
PRICES = DATA / "rating" / "prices.yaml"
DISPLAY = DATA / "seeds" / "alauda-display-configmap.yaml"
NOV = parse_time("2026-11-01T00:00:00Z")
DEC = parse_time("2026-12-01T00:00:00Z")

H100 = "nvidia-h100-sxm-80gb"


def hour(day: int, at: int) -> Period:
    start = datetime(2026, 11, day, at, tzinfo=NOV.tzinfo)
    return Period(start, start + timedelta(hours=1))


def record(
    tenant: str,
    item: str,
    period: Period,
    usage: str,
    *,
    category: str = "compute",
    name: str = "pod-1",
    namespace: str | None = None,
    project: str | None = None,
    cluster: str = "c1",
    kind: str = "Pod",
    unit: str = "h",
    dimensions: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> UsageRecord:
    return UsageRecord.measure(
        cluster=cluster,
        kind=kind,
        category=category,
        item=item,
        name=name,
        namespace=f"ns-{tenant}" if namespace is None else namespace,
        project=f"p-{tenant}" if project is None else project,
        tenant=tenant,
        period_kind=PeriodKind.hourly,
        period=period,
        usage=Decimal(usage),
        unit=unit,
        dimensions=dimensions,
        labels=labels,
    )


def scenario_records() -> list[UsageRecord]:
    gpu = "gpu_hours"
    cpu = "cpu_core_hours"
    on_demand = {"gpu_sku": H100, "capacity_type": "on-demand"}
    spot = {"gpu_sku": H100, "capacity_type": "spot"}
    vgpu = {"category": "VgpuMemory", "kind": "vGPU", "unit": "byte-hours"}
    return [
        record("acme", gpu, hour(15, 10), "8", name="train-0", dimensions=on_demand),
        record("acme", gpu, hour(16, 10), "8", name="train-0", dimensions=on_demand),
        record("acme", cpu, hour(15, 10), "60", name="train-0"),
        record("acme", cpu, hour(16, 10), "70", name="train-0"),
        record("beta", gpu, hour(15, 11), "4", name="infer-0", dimensions=spot),
        record("beta", gpu, hour(16, 11), "4", name="infer-0", dimensions=spot),
        record(
            "beta",
            gpu,
            hour(16, 12),
            "2",
            name="infer-1",
            dimensions={"gpu_sku": "nvidia-b200-180gb", "capacity_type": "on-demand"},
        ),
        record("beta", cpu, hour(15, 12), "0.0000125", name="infer-0"),
        record(
            "beta",
            "VgpuMemoryUsed",
            hour(15, 10),
            "3221225472",
            name="GPU-aaaa",
            labels={"modelName": "Tesla T4"},
            **vgpu,
        ),
        record(
            "beta",
            "VgpuMemoryUsed",
            hour(15, 10),
            "1610612736",
            name="GPU-bbbb",
            labels={"modelName": "Tesla P100"},
            **vgpu,
        ),
    ]


@pytest.fixture
def pricebook() -> PriceBook:
    return PriceBook.load(PRICES)


#: A flat GPU price and a graduated CPU tier (0.04 up to 100 core-hours a month, then 0.03): where
#: the tier counter restarts shows which billing month a record fell in (the time-zone tests).
TIERED_PRICES = """\
currency: USD
prices:
  - {category: compute, item: gpu_hours, price: "2.00"}
  - category: compute
    item: cpu_core_hours
    tiers:
      - {upto: 100, price: "0.04"}
      - {price: "0.03"}
"""


@pytest.fixture
def tiered_pricebook(tmp_path: Path) -> PriceBook:
    path = tmp_path / "tiered-prices.yaml"
    path.write_text(TIERED_PRICES)
    return PriceBook.load(path)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def hours(first: datetime, last: datetime) -> list[Period]:
    """Every hour from ``first`` to ``last`` inclusive."""
    out = []
    while first <= last:
        out.append(Period(first, first + timedelta(hours=1)))
        first += timedelta(hours=1)
    return out


@pytest.fixture
def display_config() -> Config:
    return load_config([DISPLAY])


@pytest.fixture
def scenario(ledger: Ledger) -> Ledger:
    ledger.write(scenario_records())
    return ledger
