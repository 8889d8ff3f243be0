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
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter

from kubetally.periods import Period, PeriodKind
from kubetally.record import RecordBuilder, UsageRecord, normalize
from kubetally.sources.kubernetes.items import UNIT
from kubetally.sources.kubernetes.lifetimes import Billed, Meter
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


class _Acc:
    """One record in the making: the segments of one (thing, tenant, item, dimensions)."""

    __slots__ = ("billed", "intervals", "labels", "meter", "numerators")

    def __init__(self, billed: Billed, meter: Meter):
        self.billed = billed
        #: The first meter of the key: category, item and dimensions are the key's own.
        self.meter = meter
        #: Σ seconds × quantity kept as integer numerators per quantity denominator (exact, and
        #: much faster than summing Fractions: most quantities share one or two denominators).
        self.numerators: dict[int, int] = {}
        self.intervals: list[tuple[datetime, datetime]] = []
        self.labels: dict[str, str] = {}

    @property
    def unit_seconds(self) -> Fraction:
        return sum((Fraction(n, d) for d, n in self.numerators.items()), Fraction(0))


_SEGMENT_ORDER = attrgetter("start", "uid", "role")
_RECORD_ORDER = attrgetter("tenant", "item", "kind", "name", "id")


def meter_period(
    segments: Iterable[Segment], period: Period, *, cluster: str, period_kind: PeriodKind
) -> list[UsageRecord]:
    """Records of one closed period from every segment overlapping it (see module doc)."""
    accs: dict[tuple[object, ...], _Acc] = {}
    period_start, period_end = period.start, period.end
    for segment in sorted(segments, key=_SEGMENT_ORDER):
        lo = segment.start if segment.start > period_start else period_start
        end = segment.end
        hi = end if end is not None and end < period_end else period_end
        if hi <= lo:
            continue
        seconds = int((hi - lo).total_seconds())
        b = segment.billed
        for meter in b.meters:
            key = (b.kind, b.name, b.namespace, b.tenant, b.project, meter.category, meter.item, meter.dimensions)
            acc = accs.get(key)
            if acc is None:
                acc = accs[key] = _Acc(b, meter)
            if meter.union:
                acc.intervals.append((lo, hi))
            else:
                q = meter.quantity
                numerators = acc.numerators
                numerators[q.denominator] = numerators.get(q.denominator, 0) + seconds * q.numerator
            labels = acc.labels
            labels.update(b.labels)  # later segments win: the newest enrichment
            if meter.labels:
                labels.update(meter.labels)
    records = []
    build = RecordBuilder(cluster=cluster, period_kind=period_kind, period=period, unit=UNIT)
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
        b, m = acc.billed, acc.meter
        records.append(
            build(
                b.kind, m.category, m.item, b.name, b.namespace, b.project, b.tenant,
                normalize(usage), m.dimensions, acc.labels,
            )
        )  # fmt: skip
    records += idle_records(records)  # the provider's idle and over-commit (none without capacity)
    records.sort(key=_RECORD_ORDER)
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
