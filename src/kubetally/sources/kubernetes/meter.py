"""THE place a GPU-hour (and every other Kubernetes usage hour) is computed.

Input: lifetime segments (an object held ``quantity`` of something for a tenant from ``start`` to
``end``). Output: one :class:`~kubetally.record.UsageRecord` per (tenant, item, thing, dimensions,
period). Nothing is sampled: each segment is intersected with the period in whole seconds
(Kubernetes timestamps are RFC 3339 seconds), multiplied by its quantity as an exact
:class:`~fractions.Fraction` (1/7 of a GPU for a MIG 1g slice, 1/4 for a 4-way time-sliced GPU,
``500m`` = 1/2 core, ``1Gi`` = 1 GiB), summed per record, and converted to hours **once**:

    usage = round_half_even(Σ seconds × quantity / 3600, 9 decimal places)

So a record is exact to the second and to 1e-9 h, and splitting a segment into pieces can never
add rounding drift. ``union`` meters (control-plane hours) count the seconds covered by at least
one segment, so three Ready control-plane replicas make one control-plane hour per hour.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from kubetally.periods import Period, PeriodKind
from kubetally.record import UsageRecord
from kubetally.sources.kubernetes.items import UNIT
from kubetally.sources.kubernetes.lifetimes import Billed
from kubetally.sources.kubernetes.provider import idle_records

_SCALE = 10**9


@dataclass(frozen=True)
class Segment:
    """One continuous stretch of one presence, as journaled (``end`` None: still open)."""

    uid: str
    role: str
    billed: Billed
    start: datetime
    end: datetime | None = None
    id: int | None = None


def exact_hours(unit_seconds: Fraction | int) -> Decimal:
    """Quantity-seconds → hours, rounded half-even to 9 places, exactly (no float, no Decimal
    context precision involved: the rounding is done in integers on the exact fraction)."""
    value = Fraction(unit_seconds)
    return _exact_hours(value.numerator, value.denominator)


def _exact_hours(numerator: int, denominator: int) -> Decimal:
    """:func:`exact_hours` of ``numerator / denominator`` (need not be reduced: same rational,
    same rounding)."""
    numerator, denominator = numerator * _SCALE, denominator * 3600
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-9)


def overlap_seconds(start: datetime, end: datetime | None, window: Period) -> int:
    """Whole seconds of ``[start, end)`` inside ``window`` (an open segment runs to the end)."""
    lo = max(start, window.start)
    hi = min(end or window.end, window.end)
    return max(int((hi - lo).total_seconds()), 0)


def _union_seconds(intervals: list[tuple[datetime, datetime]]) -> int:
    total = 0
    current: tuple[datetime, datetime] | None = None
    for lo, hi in sorted(intervals):
        if current is None or lo > current[1]:
            if current is not None:
                total += int((current[1] - current[0]).total_seconds())
            current = (lo, hi)
        elif hi > current[1]:
            current = (current[0], hi)
    if current is not None:
        total += int((current[1] - current[0]).total_seconds())
    return total


@dataclass
class _Acc:
    billed: Billed
    category: str
    item: str
    dimensions: dict[str, str]
    #: Σ seconds × quantity kept as integer numerators per quantity denominator (exact, and much
    #: faster than summing Fractions: most quantities share one or two denominators).
    numerators: dict[int, int] = field(default_factory=dict)
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def unit_seconds(self) -> Fraction:
        return sum((Fraction(n, d) for d, n in self.numerators.items()), Fraction(0))


def meter_period(
    segments: Iterable[Segment], period: Period, *, cluster: str, period_kind: PeriodKind
) -> list[UsageRecord]:
    """Records of one closed period from every segment overlapping it (see module doc)."""
    accs: dict[tuple[object, ...], _Acc] = {}
    for segment in sorted(segments, key=lambda s: (s.start, s.uid, s.role)):
        lo = max(segment.start, period.start)
        hi = min(segment.end or period.end, period.end)
        if hi <= lo:
            continue
        seconds = int((hi - lo).total_seconds())
        b = segment.billed
        for meter in b.meters:
            key = (b.kind, b.name, b.namespace, b.tenant, b.project, meter.category, meter.item, meter.dimensions)
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = _Acc(b, meter.category, meter.item, dict(meter.dimensions))
            if meter.union:
                acc.intervals.append((lo, hi))
            else:
                q = meter.quantity
                acc.numerators[q.denominator] = acc.numerators.get(q.denominator, 0) + seconds * q.numerator
            acc.labels.update(b.labels)  # later segments win: the newest enrichment
            acc.labels.update(meter.labels)
    records = []
    while accs:  # popped, so each accumulator is freed as its record is made (records are sorted below)
        _key, acc = accs.popitem()
        if len(acc.numerators) == 1 and not acc.intervals:  # the common case, in plain integers
            ((denominator, numerator),) = acc.numerators.items()
            if numerator <= 0:
                continue
            usage = _exact_hours(numerator, denominator)
        else:
            unit_seconds = acc.unit_seconds + _union_seconds(acc.intervals)
            if unit_seconds <= 0:
                continue
            usage = exact_hours(unit_seconds)
        b = acc.billed
        records.append(
            UsageRecord.measure(
                cluster=cluster,
                kind=b.kind,
                category=acc.category,
                item=acc.item,
                name=b.name,
                namespace=b.namespace,
                project=b.project,
                tenant=b.tenant,
                period_kind=period_kind,
                period=period,
                usage=usage,
                unit=UNIT,
                dimensions=acc.dimensions,
                labels=acc.labels,
            )
        )
    records += idle_records(records)  # the provider's idle and over-commit (none without capacity)
    records.sort(key=lambda r: (r.tenant, r.item, r.kind, r.name, r.id))
    return records


def meter_periods(
    segments: Sequence[Segment], periods: Iterable[Period], *, cluster: str, period_kind: PeriodKind
) -> list[UsageRecord]:
    """:func:`meter_period` for several periods (segments are filtered per period)."""
    out: list[UsageRecord] = []
    for period in periods:
        relevant = [s for s in segments if s.start < period.end and (s.end is None or s.end > period.start)]
        out.extend(meter_period(relevant, period, cluster=cluster, period_kind=period_kind))
    return out
