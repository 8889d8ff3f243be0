"""The provider's views: GPU capacity against what was sold (``--view capacity``) and each
tenant's share of the cloud (``--view efficiency``).

Both read the ledger's records directly (the provider records carry their kind, which the
rollups do not keep) for ``[start, end)``, GPU-hours only, bucketed like ``kubetally report``:

* **capacity** per cluster, GPU SKU and bucket: capacity, allocated to tenants on dedicated
  nodes and on shared nodes, idle, down (NotReady; a part of capacity), over-commit, the
  allocation rate (allocated ÷ capacity) and, priced with the price book at list price, the
  value sold against the value left idle. Tenants' usage counts only on nodes that have a
  capacity record for that hour, so the columns add up: dedicated + shared + idle −
  over-commit = capacity.
* **efficiency** per tenant and SKU: GPU-hours billed (on dedicated / shared nodes), busy
  GPU-hours measured by DCGM (the ``dcgm`` preset's ``busy-GPU-hours`` records, joined by
  tenant and by the SKU of their ``modelName``; a MIG instance's busy hours times its profile's
  share of the GPU, as it is billed) and the share busy ÷ allocated; utilisation
  records whose period was only partly covered by samples are counted (``partial``), because
  missing samples are missing, not idle.
* **pods** per tenant, pod and bucket: the GPU-hours Kubernetes billed the pod and, from the
  DCGM records of the GPUs (or MIG instances) that pod held (their ``pod`` label, matched to the
  Kubernetes record of the same cluster, namespace, pod name and hour), the GPU-hours that had
  samples (``measured``), of those the busy ones and the idle ones (measured − busy), and the
  billed hours without samples (``unmeasured``: neither busy nor idle). A MIG instance counts
  by its profile's share of the GPU (3g.40gb = 3/7). A DCGM record whose pod has no GPU-hours
  from Kubernetes in that hour (a pod on a dedicated node, which is billed as the node, or a
  pod the Kubernetes source never saw) is listed with ``matched`` false, never folded into
  another pod. DCGM measures a whole GPU (or MIG instance): on a time-sliced or HAMi-shared GPU
  the pod that DCGM names gets the whole device's measured hours, which can exceed what it was
  billed (its ``unmeasured`` is then 0, not negative).

List prices are used for both values (a tenant's discount is not the provider's idle cost);
a graduated price is applied to each bucket's usage on its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from rich.table import Table

from kubetally.config.loader import Config
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, format_time
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rate import Rater, UsageLine
from kubetally.record import UsageRecord, normalize
from kubetally.reports.buckets import Per, bucket_end, bucket_start
from kubetally.sources.kubernetes import items as it
from kubetally.sources.kubernetes.provider import CAPACITY, DOWN, IDLE, OVERCOMMIT
from kubetally.sources.kubernetes.sku import mig_fraction, parse_model

RATE_PLACES = Decimal("0.0001")
#: Unit of the dcgm preset's utilisation item (busy GPU-hours, 1 = fully busy for an hour).
BUSY_UNIT = "busy-GPU-hours"
MODEL_LABEL = "modelName"


@dataclass
class CapacityRow:
    cluster: str
    sku: str
    period: Period
    capacity: Decimal = Decimal(0)
    dedicated: Decimal = Decimal(0)
    shared: Decimal = Decimal(0)
    idle: Decimal = Decimal(0)
    down: Decimal = Decimal(0)
    overcommit: Decimal = Decimal(0)
    #: list value of the allocated and of the idle GPU-hours, micro-units (None: no price)
    sold_value: int | None = 0
    idle_value: int | None = 0

    @property
    def allocated(self) -> Decimal:
        return self.dedicated + self.shared

    @property
    def allocation_rate(self) -> Decimal | None:
        """allocated ÷ capacity, half-even to 4 places (None without capacity)."""
        if not self.capacity:
            return None
        return (self.allocated / self.capacity).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass
class EfficiencyRow:
    tenant: str
    sku: str
    period: Period
    dedicated: Decimal = Decimal(0)
    shared: Decimal = Decimal(0)
    #: busy GPU-hours measured (DCGM), over the steps that had samples
    busy: Decimal = Decimal(0)
    #: utilisation records covering only part of their period (samples missing, not zero)
    partial: int = 0

    @property
    def allocated(self) -> Decimal:
        return self.dedicated + self.shared

    @property
    def share(self) -> Decimal | None:
        """busy ÷ allocated, half-even to 4 places (None: nothing allocated)."""
        if not self.allocated:
            return None
        return (self.busy / self.allocated).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass
class PodRow:
    """One pod's GPU time in a bucket: billed, measured by DCGM, busy and idle (GPU-hours)."""

    tenant: str
    cluster: str
    namespace: str
    pod: str
    sku: str
    period: Period
    #: whether Kubernetes billed this pod GPU-hours in the hours DCGM saw it
    matched: bool = True
    allocated: Decimal = Decimal(0)
    measured: Decimal = Decimal(0)
    busy: Decimal = Decimal(0)
    #: DCGM steps with samples / steps, summed over the pod's GPU records
    present: int = 0
    steps: int = 0

    @property
    def idle(self) -> Decimal:
        """Measured GPU-hours that were not busy (DCGM's activity is at most 1, so never < 0)."""
        return max(self.measured - self.busy, Decimal(0))

    @property
    def unmeasured(self) -> Decimal:
        """Billed GPU-hours with no sample: unknown, neither busy nor idle."""
        return max(self.allocated - self.measured, Decimal(0))

    @property
    def share(self) -> Decimal | None:
        """busy ÷ measured, half-even to 4 places (None: no samples)."""
        if not self.measured:
            return None
        return (self.busy / self.measured).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN)


_NINE = Decimal("1e-9")


def _gpu_weight(record: UsageRecord) -> Fraction:
    """A utilisation record's device as a share of a whole GPU: 1, or its MIG profile's share."""
    profile = record.labels.get("GPU_I_PROFILE", "")
    if not profile:
        return Fraction(1)
    return mig_fraction(profile, parse_model(record.labels.get(MODEL_LABEL, ""))) or Fraction(1)


def _measured_hours(record: UsageRecord) -> tuple[Fraction, int, int] | None:
    """Device-hours with samples, from ``coverage_steps`` (present/steps over the period)."""
    present, _, steps = record.labels.get("coverage_steps", "").partition("/")
    if not (present.isdigit() and steps.isdigit() and int(steps)):
        return None
    window = record.period_window  # ``end`` is the period's last second (Alauda's convention)
    seconds = int((window.end - window.start).total_seconds())
    return Fraction(int(present) * seconds, int(steps) * 3600), int(present), int(steps)


def _exact(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(_NINE, rounding=ROUND_HALF_EVEN)


def pod_view(ledger: Ledger, start: datetime, end: datetime, per: Per = Per.month) -> list[PodRow]:
    """Per pod: billed GPU-hours (Kubernetes) against DCGM's measured, busy and idle GPU-hours
    of the devices that pod held, joined hour by hour on (cluster, namespace, pod)."""
    billed: dict[tuple[str, str, str, datetime], list[UsageRecord]] = defaultdict(list)
    dcgm: list[UsageRecord] = []
    for r in ledger.records(start=start, end=end):
        if r.unit == BUSY_UNIT and r.labels.get("pod"):
            dcgm.append(r)
        elif r.item == it.GPU_HOURS and r.kind == it.POD:
            billed[(r.cluster, r.namespace, r.name, r.start)].append(r)
    rows: dict[tuple[str, str, str, str, str, datetime, bool], PodRow] = {}

    def row(tenant: str, r: UsageRecord, pod: str, sku: str, matched: bool) -> PodRow:
        bucket = _bucket(r, start, end, per)
        key = (tenant, r.cluster, r.namespace, pod, sku, bucket.start, matched)
        return rows.setdefault(key, PodRow(tenant, r.cluster, r.namespace, pod, sku, bucket, matched))

    for records in billed.values():
        for r in records:
            row(r.tenant, r, r.name, r.labels.get(it.GPU_SKU, "unknown"), True).allocated += r.usage
    for r in dcgm:
        pod = r.labels["pod"]
        held = billed.get((r.cluster, r.namespace, pod, r.start))
        if held:
            first = held[0]
            target = row(first.tenant, r, pod, first.labels.get(it.GPU_SKU, "unknown"), True)
        else:
            target = row(r.tenant, r, pod, _utilisation_sku(r), False)
        weight = _gpu_weight(r)
        target.busy += _exact(Fraction(r.usage) * weight)
        measured = _measured_hours(r)
        if measured is not None:
            hours, present, steps = measured
            target.measured += _exact(hours * weight)
            target.present += present
            target.steps += steps
    return [rows[k] for k in sorted(rows, key=lambda k: (k[5], k[0], k[1], k[2], k[3], k[4], not k[6]))]


def _bucket(record: UsageRecord, start: datetime, end: datetime, per: Per) -> Period:
    first = bucket_start(record.start, per)
    return Period(max(first, start), min(bucket_end(first, per), end))


def _node(record: UsageRecord) -> str:
    return record.labels.get(it.NODE_NAME, "") if record.kind == it.POD else record.name


def capacity_view(
    ledger: Ledger,
    pricebook: PriceBook,
    config: Config | None,
    start: datetime,
    end: datetime,
    per: Per = Per.month,
) -> list[CapacityRow]:
    records = [r for r in ledger.records(start=start, end=end, item=it.GPU_HOURS)]
    with_capacity = {(r.start, r.cluster, r.name) for r in records if r.kind == CAPACITY}
    rows: dict[tuple[str, str, datetime], CapacityRow] = {}
    sold: dict[tuple[str, str, datetime], dict[tuple[str, tuple[tuple[str, str], ...]], Decimal]] = {}
    idle: dict[tuple[str, str, datetime], dict[tuple[str, tuple[tuple[str, str], ...]], Decimal]] = {}
    for r in records:
        bucket = _bucket(r, start, end, per)
        sku = r.labels.get(it.GPU_SKU, "unknown")
        key = (r.cluster, sku, bucket.start)
        row = rows.get(key) or rows.setdefault(key, CapacityRow(r.cluster, sku, bucket))
        labels = tuple(sorted(r.labels.items()))
        if r.kind == CAPACITY:
            row.capacity += r.usage
        elif r.kind == IDLE:
            row.idle += r.usage
            bag = idle.setdefault(key, defaultdict(Decimal))
            bag[("", labels)] += r.usage
        elif r.kind == DOWN:
            row.down += r.usage
        elif r.kind == OVERCOMMIT:
            row.overcommit += r.usage
        elif r.tenant and r.kind in (it.POD, it.NODE) and (r.start, r.cluster, _node(r)) in with_capacity:
            if r.labels.get(it.BILLING_MODE) == it.DEDICATED:
                row.dedicated += r.usage
            else:
                row.shared += r.usage
            bag = sold.setdefault(key, defaultdict(Decimal))
            bag[(r.tenant, labels)] += r.usage
    display = DisplayCatalog.from_config(config)
    for key, row in rows.items():
        row.sold_value = _value(pricebook, display, row.period, sold.get(key, {}))
        row.idle_value = _value(pricebook, display, row.period, idle.get(key, {}))
    return [rows[k] for k in sorted(rows, key=lambda k: (k[2], k[0], k[1]))]


def _value(
    pricebook: PriceBook,
    display: DisplayCatalog,
    period: Period,
    usage: dict[tuple[str, tuple[tuple[str, str], ...]], Decimal],
) -> int | None:
    """List value of GPU-hours in micro-units; None when any of them has no price."""
    rater = Rater(pricebook, display.divisor)
    total = 0
    for (tenant, labels), amount in sorted(usage.items()):
        line = UsageLine(period.start, period.end, tenant, it.COMPUTE, it.GPU_HOURS, it.UNIT, labels, amount)
        for charge in rater.rate_line(line):
            if not charge.priced:
                return None
            total += charge.list_cost
    return total


def _utilisation_sku(record: UsageRecord) -> str:
    model = parse_model(record.labels.get(MODEL_LABEL, ""))
    return model.sku if model is not None else "unknown"


def efficiency_view(ledger: Ledger, start: datetime, end: datetime, per: Per = Per.month) -> list[EfficiencyRow]:
    """Per tenant and SKU: GPU-hours billed (dedicated / shared) and busy GPU-hours measured by
    DCGM (records in ``busy-GPU-hours``, SKU from their ``modelName``)."""
    rows: dict[tuple[str, str, datetime], EfficiencyRow] = {}
    for r in ledger.records(start=start, end=end):
        if not r.tenant:
            continue
        bucket = _bucket(r, start, end, per)
        if r.unit == BUSY_UNIT:
            sku = _utilisation_sku(r)
            row = rows.setdefault((r.tenant, sku, bucket.start), EfficiencyRow(r.tenant, sku, bucket))
            row.busy += _exact(Fraction(r.usage) * _gpu_weight(r))  # a MIG instance's busy hours as GPU-hours
            if r.labels.get("coverage", "1") != "1":
                row.partial += 1
            continue
        if r.item != it.GPU_HOURS or r.kind not in (it.POD, it.NODE):
            continue
        sku = r.labels.get(it.GPU_SKU, "unknown")
        row = rows.setdefault((r.tenant, sku, bucket.start), EfficiencyRow(r.tenant, sku, bucket))
        if r.labels.get(it.BILLING_MODE) == it.DEDICATED:
            row.dedicated += r.usage
        else:
            row.shared += r.usage
    return [rows[k] for k in sorted(rows, key=lambda k: (k[2], k[0], k[1]))]


def provider_view(
    ledger: Ledger, pricebook: PriceBook, config: Config | None, window: Period, view: str, per: str
) -> tuple[list[dict[str, Any]], Table]:
    """Rows as JSON-ready dicts and as a table, for ``kubetally report --view``."""
    from kubetally.reports.build import ReportError

    try:
        bucket = Per.parse(per)
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    if view == "capacity":
        rows = capacity_view(ledger, pricebook, config, window.start, window.end, bucket)
        return capacity_json(rows), capacity_table(rows, pricebook.currency)
    if view == "efficiency":
        found = efficiency_view(ledger, window.start, window.end, bucket)
        return efficiency_json(found), efficiency_table(found)
    if view == "pods":
        pods = pod_view(ledger, window.start, window.end, bucket)
        return pod_json(pods), pod_table(pods)
    raise ReportError(f"--view must be usage, capacity, efficiency or pods, not {view!r}")


# -- rendering ---------------------------------------------------------------------------------


def _money(micros: int | None, currency: str) -> str:
    from kubetally.rating.money import format_money

    return "unpriced" if micros is None else f"{format_money(micros)} {currency}"


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def capacity_table(rows: list[CapacityRow], currency: str) -> Table:
    table = Table(title="GPU capacity (GPU-hours)", title_justify="left")
    for column in ("period", "cluster", "sku", "capacity", "dedicated", "shared", "idle", "down", "over", "rate"):
        table.add_column(column, justify="left" if column in ("period", "cluster", "sku") else "right")
    table.add_column("sold", justify="right")
    table.add_column("idle value", justify="right")
    for r in rows:
        rate = "—" if r.allocation_rate is None else f"{r.allocation_rate * 100:.2f}%"
        table.add_row(
            f"{_day(r.period.start)}..{_day(r.period.end)}",
            r.cluster,
            r.sku,
            *(format(normalize(v), "f") for v in (r.capacity, r.dedicated, r.shared, r.idle, r.down, r.overcommit)),
            rate,
            _money(r.sold_value, currency),
            _money(r.idle_value, currency),
        )
    return table


def efficiency_table(rows: list[EfficiencyRow]) -> Table:
    table = Table(title="GPU-hours per tenant", title_justify="left")
    for column in ("period", "tenant", "sku", "dedicated", "shared", "allocated", "busy", "share", "partial"):
        table.add_column(column, justify="left" if column in ("period", "tenant", "sku") else "right")
    for r in rows:
        share = "—" if r.share is None else f"{r.share * 100:.2f}%"
        table.add_row(
            f"{_day(r.period.start)}..{_day(r.period.end)}",
            r.tenant,
            r.sku,
            *(format(normalize(v), "f") for v in (r.dedicated, r.shared, r.allocated, r.busy)),
            share,
            str(r.partial),
        )
    return table


def capacity_json(rows: list[CapacityRow]) -> list[dict[str, Any]]:
    return [
        {
            "start": format_time(r.period.start),
            "end": format_time(r.period.end),
            "cluster": r.cluster,
            "gpu_sku": r.sku,
            "capacity": r.capacity,
            "allocated_dedicated": r.dedicated,
            "allocated_shared": r.shared,
            "idle": r.idle,
            "down": r.down,
            "overcommit": r.overcommit,
            "allocation_rate": r.allocation_rate,
            "sold_value_micros": r.sold_value,
            "idle_value_micros": r.idle_value,
        }
        for r in rows
    ]


def efficiency_json(rows: list[EfficiencyRow]) -> list[dict[str, Any]]:
    return [
        {
            "start": format_time(r.period.start),
            "end": format_time(r.period.end),
            "tenant": r.tenant,
            "gpu_sku": r.sku,
            "dedicated": r.dedicated,
            "shared": r.shared,
            "allocated": r.allocated,
            "busy": r.busy,
            "share": r.share,
            "partial_coverage_records": r.partial,
        }
        for r in rows
    ]


def pod_table(rows: list[PodRow]) -> Table:
    table = Table(title="GPU-hours per pod (DCGM joined to Kubernetes)", title_justify="left")
    columns = ("period", "tenant", "namespace", "pod", "sku", "billed", "measured", "busy", "idle", "unmeasured")
    for column in (*columns, "share", "matched"):
        table.add_column(column, justify="left" if column in columns[:5] or column == "matched" else "right")
    for r in rows:
        share = "—" if r.share is None else f"{r.share * 100:.2f}%"
        table.add_row(
            f"{_day(r.period.start)}..{_day(r.period.end)}",
            r.tenant,
            r.namespace,
            r.pod,
            r.sku,
            *(format(normalize(v), "f") for v in (r.allocated, r.measured, r.busy, r.idle, r.unmeasured)),
            share,
            "yes" if r.matched else "no Kubernetes GPU-hours",
        )
    return table


def pod_json(rows: list[PodRow]) -> list[dict[str, Any]]:
    return [
        {
            "start": format_time(r.period.start),
            "end": format_time(r.period.end),
            "tenant": r.tenant,
            "cluster": r.cluster,
            "namespace": r.namespace,
            "pod": r.pod,
            "gpu_sku": r.sku,
            "matched": r.matched,
            "allocated": r.allocated,
            "measured": r.measured,
            "busy": r.busy,
            "idle": r.idle,
            "unmeasured": r.unmeasured,
            "share": r.share,
            "coverage_steps": f"{r.present}/{r.steps}",
        }
        for r in rows
    ]
