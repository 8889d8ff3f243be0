"""Build a priced usage report from the ledger's rollups.

How a report is computed, and why it is exact:

1. The rollups are brought up to date (:func:`~kubetally.rating.rollups.refresh_rollups`).
2. ``[from, to)`` is cut into *segments* at every bucket start, every month start (tiers
   restart each billing month) and every price change date. A segment that is a whole
   calendar month reads the monthly rollup; any other reads the daily one. With graduated
   tiers, the part of the first month before ``from`` is read too, as *context*, so tiers
   count the whole month's usage.
3. Per segment, usage is summed exactly in SQL per (report group, tenant, item, unit,
   labels) — the tenant and the pricing labels are always kept because discounts, tiers and
   label prices depend on them (the rollups keep every label key the price book uses).
4. Each sum is a usage line; the :class:`~kubetally.rating.rate.Rater` prices it, rounding
   once per charge (see :mod:`kubetally.rating.money`). Lines of a segment are rated in a
   fixed order (group values, tenant, item, labels), so tier splits are reproducible.
5. A report row is the integer sum of its charges; a total is the integer sum of its rows.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from kubetally.config.loader import Config
from kubetally.errors import KubetallyError
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, format_time, zone_name
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.money import EXACT, WIDE
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rate import Charge, Rater, UsageLine
from kubetally.rating.rollups import refresh_rollups, summed_usage
from kubetally.rating.tables import DAY, MONTH, ROLLUP_CURSOR, rollup_state
from kubetally.reports.buckets import (
    Per,
    bucket_end,
    bucket_start,
    buckets,
    is_midnight,
    month_start,
    month_starts,
    next_month,
)

#: What a report can be grouped by.
GROUPABLE = ("tenant", "project", "namespace", "cluster", "item")


class ReportError(KubetallyError):
    """A report was asked for in a way that cannot be answered (bad range, bad grouping)."""


@dataclass
class ReportRow:
    """Priced usage of one group in one bucket."""

    period: Period
    #: ``by`` name → value; ``item`` is written ``category/item``.
    group: dict[str, str]
    list_cost: int = 0
    cost: int = 0
    #: Raw usage per (category, item, unit) in this row.
    usage_by_item: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    unpriced_usage: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    charges: list[Charge] = field(default_factory=list)

    @property
    def single_item(self) -> tuple[str, str, str] | None:
        """(category, item, unit) when the row holds one item, so its usage can be shown."""
        return next(iter(self.usage_by_item)) if len(self.usage_by_item) == 1 else None

    @property
    def usage(self) -> Decimal | None:
        single = self.single_item
        return None if single is None else self.usage_by_item[single]

    @property
    def status(self) -> str:
        if not self.unpriced_usage:
            return "priced"
        return "unpriced" if not any(c.priced for c in self.charges) else "partly unpriced"


@dataclass
class UnpricedSummary:
    category: str
    item: str
    unit: str
    reason: str
    usage: Decimal
    lines: int


@dataclass
class Report:
    start: datetime
    end: datetime
    by: tuple[str, ...]
    per: Per
    currency: str
    rows: list[ReportRow]
    unpriced: list[UnpricedSummary]
    display: DisplayCatalog
    unit: str = "raw"
    lang: str = "en"
    #: The billing time zone the buckets are local days/weeks/months of.
    zone: tzinfo = UTC

    @property
    def total(self) -> int:
        return sum(row.cost for row in self.rows)

    @property
    def list_total(self) -> int:
        return sum(row.list_cost for row in self.rows)

    def subtotals(self) -> list[tuple[Period, int]]:
        """Cost per bucket, in bucket order (each the sum of that bucket's rows)."""
        totals: dict[Period, int] = {}
        for row in self.rows:
            totals[row.period] = totals.get(row.period, 0) + row.cost
        return sorted(totals.items())

    def display_usage(self, row: ReportRow) -> Decimal | None:
        """Row usage in display units (after the divisor), or ``None`` for a mixed row."""
        single = row.single_item
        if single is None:
            return None
        usage = row.usage_by_item[single]
        divisor = self.display.divisor(single[1])
        return usage if divisor == 1 else WIDE.divide(usage, divisor)


def parse_by(value: str | Sequence[str]) -> tuple[str, ...]:
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if not names:
        raise ReportError(f"--by must name at least one of {', '.join(GROUPABLE)}")
    unknown = [n for n in names if n not in GROUPABLE]
    if unknown:
        raise ReportError(f"--by: unknown {', '.join(unknown)} (choose from {', '.join(GROUPABLE)})")
    if len(set(names)) != len(names):
        raise ReportError(f"--by: {value!r} names a column twice")
    return tuple(names)


def _segments(
    context_start: datetime, start: datetime, end: datetime, per: Per, pricebook: PriceBook, zone: tzinfo
) -> list[Period]:
    cuts = {context_start, start, end}
    cuts.update(b.start for b in buckets(start, end, per, zone))
    cuts.update(month_starts(context_start, end, zone))
    cuts.update(d for d in pricebook.change_dates() if context_start < d < end)
    ordered = sorted(cuts)
    return [Period(a, b) for a, b in itertools.pairwise(ordered)]


def _getter(positions: list[int]) -> Callable[[Any], tuple[Any, ...]]:
    """A row → tuple of those positions (always a tuple, even for one position)."""
    if len(positions) == 1:
        only = positions[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*positions)


#: The order lines of a segment are rated in: (key, tenant, category, item, unit, labels) —
#: the UsageLine fields by position, fetched in C rather than by a lambda per line.
_RATING_ORDER = operator.itemgetter(8, 2, 3, 4, 5, 6)
_ZERO = Decimal(0)


class _LabelCache(dict[str, tuple[tuple[str, str], ...]]):
    def __missing__(self, text: str) -> tuple[tuple[str, str], ...]:
        value = tuple(sorted(json.loads(text).items()))
        self[text] = value
        return value


def _add(
    rows: dict[tuple[datetime, tuple[str, ...]], ReportRow],
    unpriced: dict[tuple[str, str, str, str], UnpricedSummary],
    bucket: Period,
    by: tuple[str, ...],
    line: UsageLine,
    charges: list[Charge],
) -> None:
    """Add a rated line to its report row (integer sums only: rounding happened per charge)."""
    report_row = rows.get((bucket.start, line.key))
    if report_row is None:
        report_row = rows[(bucket.start, line.key)] = ReportRow(bucket, dict(zip(by, line.key, strict=True)))
    item_key = (line.category, line.item, line.unit)
    by_item = report_row.usage_by_item
    held = by_item.get(item_key)
    by_item[item_key] = EXACT.add(_ZERO if held is None else held, line.usage)
    report_row.charges.extend(charges)
    for charge in charges:
        report_row.list_cost += charge.list_cost
        report_row.cost += charge.cost
        if charge.match is None:
            report_row.unpriced_usage[item_key] = EXACT.add(
                report_row.unpriced_usage.get(item_key, Decimal(0)), charge.usage
            )
            reason = charge.unpriced_reason
            summary = unpriced.get((*item_key, reason))
            if summary is None:
                summary = unpriced[(*item_key, reason)] = UnpricedSummary(*item_key, reason, Decimal(0), 0)
            summary.usage = EXACT.add(summary.usage, charge.usage)
            summary.lines += 1


def build_report(
    ledger: Ledger,
    pricebook: PriceBook,
    config: Config | None,
    start: datetime,
    end: datetime,
    by: str | Sequence[str] = ("tenant", "item"),
    per: Per | str = Per.month,
    *,
    unit: str = "raw",
    lang: str = "en",
    tenants: Iterable[str] | None = None,
    items: Iterable[str] | None = None,
    exclude_items: Iterable[str] | None = None,
    refresh: bool = True,
    zone: tzinfo | None = None,
) -> Report:
    """Priced usage per group and bucket for ``[start, end)`` (both local midnights in the
    billing time zone: ``zone``, else the config's ``billing.timezone``, else UTC).

    ``items`` keeps only those items, ``exclude_items`` drops those: the server rates a day's
    flat-priced items apart from its tiered ones, because only tiered lines depend on the
    rest of their month (see :func:`merge_reports`)."""
    by = parse_by(by)
    try:
        per = per if isinstance(per, Per) else Per.parse(per)
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    if unit not in ("raw", "display"):
        raise ReportError(f"--unit must be raw or display, not {unit!r}")
    if lang not in ("en", "zh"):
        raise ReportError(f"--lang must be en or zh, not {lang!r}")
    if zone is None:
        zone = config.settings.billing.zone if config is not None else UTC
    for name, moment in (("--from", start), ("--to", end)):
        if not is_midnight(moment, zone):
            raise ReportError(
                f"{name} {format_time(moment)}: reports cover whole {zone_name(zone)} days "
                "(billing.timezone); give a date"
            )
    if end <= start:
        raise ReportError(f"--to {format_time(end)} must be after --from {format_time(start)}")
    display = DisplayCatalog.from_config(config)
    if refresh:
        refresh_rollups(ledger, label_keys=pricebook.label_keys, zone=zone)
    excluded = sorted(set(exclude_items or ()))
    # Earlier usage of the month is read only when some line asked for can be tiered: a flat
    # price depends on the line's own usage alone.
    tiered = {item for _, item in pricebook.tiered_items} - set(excluded)
    asked_items = list(items) if items is not None else None
    if asked_items is not None:
        tiered &= set(asked_items)
    context_start = month_start(start, zone) if tiered else start
    group_cols = [c for c in by if c != "item"]
    columns = list(dict.fromkeys([*group_cols, "tenant", "category", "item", "unit", "labels"]))
    filters: dict[str, Sequence[str] | None] = {
        "tenant": list(tenants) if tenants is not None else None,
        "item": asked_items,
    }
    at = {c: i for i, c in enumerate(columns)}
    at_tenant, at_category, at_item, at_unit, at_labels = (
        at[c] for c in ("tenant", "category", "item", "unit", "labels")
    )
    key_parts = [(at[c], c == "item") for c in by]
    # The row key of a fetched line; a plain getter when ``item`` is not part of it.
    plain: Callable[[Any], tuple[Any, ...]] | None = None if "item" in by else _getter([at[c] for c in by])
    rater = Rater(pricebook, display.divisor, zone)
    labels = _LabelCache()
    rows: dict[tuple[datetime, tuple[str, ...]], ReportRow] = {}
    unpriced: dict[tuple[str, str, str, str], UnpricedSummary] = {}

    segments = _segments(context_start, start, end, per, pricebook, zone)
    grains = {
        segment: MONTH
        if segment.start == month_start(segment.start, zone) and segment.end == next_month(segment.start, zone)
        else DAY
        for segment in segments
    }
    fetched: dict[Period, list[Any]] = {segment: [] for segment in segments}
    with ledger.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for every query, even if rollups refresh meanwhile.
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        kept_zone: str = conn.execute(
            select(rollup_state.c.timezone).where(rollup_state.c.name == ROLLUP_CURSOR)
        ).scalar_one()
        if kept_zone != zone_name(zone):
            # Another reader (a report in another billing time zone) rebuilt them meanwhile.
            raise ReportError(
                f"usage rollups are kept in time zone {kept_zone}, not {zone_name(zone)}: "
                "run the report again (every reader of one ledger should share billing.timezone)"
            )
        for grain in (MONTH, DAY):
            wanted = [s for s in segments if grains[s] == grain]
            spans = [(s.start, s.end) for s in wanted]
            for row in summed_usage(conn, grain, spans, columns, filters, {"item": excluded}):
                fetched[wanted[row[0]]].append(row[1:])

    for segment in segments:
        context = segment.start < start
        lines = []
        for row in fetched[segment]:
            category, item = row[at_category], row[at_item]
            if plain is not None:
                key = plain(row)
            else:
                key = tuple(f"{category}/{item}" if is_item else row[i] for i, is_item in key_parts)
            lines.append(
                UsageLine(
                    segment.start,
                    segment.end,
                    row[at_tenant],
                    category,
                    item,
                    row[at_unit],
                    labels[row[at_labels]],
                    row[-1],
                    key,
                    context,
                )
            )
        lines.sort(key=_RATING_ORDER)
        bucket = (
            None
            if context
            else Period(
                max(bucket_start(segment.start, per, zone), start),
                min(bucket_end(bucket_start(segment.start, per, zone), per, zone), end),
            )
        )
        for line in lines:
            charges = rater.rate_line(line)
            if bucket is not None:
                _add(rows, unpriced, bucket, by, line, charges)

    ordered = [rows[key] for key in sorted(rows)]
    return Report(
        start=start,
        end=end,
        by=by,
        per=per,
        currency=pricebook.currency,
        rows=ordered,
        unpriced=sorted(unpriced.values(), key=lambda u: (u.category, u.item, u.reason)),
        display=display,
        unit=unit,
        lang=lang,
        zone=zone,
    )


def _charge_order(charge: Charge) -> tuple[Any, ...]:
    line = charge.line
    return (line.start, line.tenant, line.category, line.item, line.unit, line.labels)


def merge_reports(parts: Sequence[Report]) -> Report:
    """Reports of the same range and grouping over disjoint sets of items, as the one report
    of all those items.

    Exact because nothing crosses items: a line is rated from its own item's price (tier
    counters are per item), a row's cost is the integer sum of its charges. The rows'
    charges are put back in the order one report rates them (period, tenant, category, item,
    unit, labels; the tier portions of a line stay in order), so the merged report is the
    report ``build_report`` makes over all the items at once."""
    first = parts[0]
    if len(parts) == 1:
        return first
    rows: dict[tuple[datetime, tuple[str, ...]], ReportRow] = {}
    unpriced: dict[tuple[str, str, str, str], UnpricedSummary] = {}
    for part in parts:
        for row in part.rows:
            key = (row.period.start, tuple(row.group[c] for c in first.by))
            held = rows.get(key)
            if held is None:
                rows[key] = ReportRow(
                    row.period,
                    dict(row.group),
                    row.list_cost,
                    row.cost,
                    dict(row.usage_by_item),
                    dict(row.unpriced_usage),
                    list(row.charges),
                )
                continue
            held.list_cost += row.list_cost
            held.cost += row.cost
            held.usage_by_item.update(row.usage_by_item)
            held.unpriced_usage.update(row.unpriced_usage)
            held.charges.extend(row.charges)
            held.charges.sort(key=_charge_order)
            # Items in the order their first line was rated, as in one report.
            seen = list(dict.fromkeys((c.line.category, c.line.item, c.line.unit) for c in held.charges))
            held.usage_by_item = {k: held.usage_by_item[k] for k in seen if k in held.usage_by_item}
            held.unpriced_usage = {k: held.unpriced_usage[k] for k in seen if k in held.unpriced_usage}
        for u in part.unpriced:
            summary = unpriced.get((u.category, u.item, u.unit, u.reason))
            if summary is None:
                unpriced[(u.category, u.item, u.unit, u.reason)] = UnpricedSummary(
                    u.category, u.item, u.unit, u.reason, u.usage, u.lines
                )
            else:
                summary.usage = EXACT.add(summary.usage, u.usage)
                summary.lines += u.lines
    return Report(
        start=first.start,
        end=first.end,
        by=first.by,
        per=first.per,
        currency=first.currency,
        rows=[rows[key] for key in sorted(rows)],
        unpriced=sorted(unpriced.values(), key=lambda u: (u.category, u.item, u.reason)),
        display=first.display,
        unit=first.unit,
        lang=first.lang,
        zone=first.zone,
    )


def split_report(report: Report, periods: Sequence[Period]) -> list[Report]:
    """A report as the reports of its buckets ``periods`` (buckets of its ``per``, covering its
    range in order): each is the report ``build_report`` makes over that bucket alone.

    Exact because a report's rows are per bucket already and ``build_report`` cuts its segments
    at every bucket start; the unpriced summaries are counted again per bucket from the rows'
    unpriced charges (one per unpriced line, as :func:`_add` counts them). Rows of a bucket are
    taken as they are (they are not copied: a split report shares them with ``report``)."""
    rows_of: dict[datetime, list[ReportRow]] = {p.start: [] for p in periods}
    for row in report.rows:
        rows_of[row.period.start].append(row)
    out = []
    for period in periods:
        rows = rows_of[period.start]
        unpriced: dict[tuple[str, str, str, str], UnpricedSummary] = {}
        for row in rows:
            if not row.unpriced_usage:
                continue
            for charge in row.charges:
                if charge.match is not None:
                    continue
                line = charge.line
                key = (line.category, line.item, line.unit, charge.unpriced_reason)
                summary = unpriced.get(key)
                if summary is None:
                    summary = unpriced[key] = UnpricedSummary(*key, Decimal(0), 0)
                summary.usage = EXACT.add(summary.usage, charge.usage)
                summary.lines += 1
        out.append(
            Report(
                start=period.start,
                end=period.end,
                by=report.by,
                per=report.per,
                currency=report.currency,
                rows=rows,
                unpriced=sorted(unpriced.values(), key=lambda u: (u.category, u.item, u.reason)),
                display=report.display,
                unit=report.unit,
                lang=report.lang,
                zone=report.zone,
            )
        )
    return out
