"""What the cost API answers, as plain functions over the ledger — no HTTP in here.

Every number comes from :func:`kubetally.reports.build_report`, the code path of
``kubetally report``: a ``costs/total`` row with ``kind=tenant, step=day`` is the row
``kubetally report --by tenant --per day`` prints for the same range, to the micro-unit.

How the API's words map to a report:

* ``kind`` picks the report's ``--by``: ``tenant``, ``project``, ``cluster``, or ``namespace`` —
  which is always grouped *with its cluster*, so two clusters' ``team-a`` namespaces are never
  summed into one row. ``item=true`` (and every ``costs/usage`` and ``costs/detail`` row) adds
  ``item``.
* A ``tenant`` filter (and a tenant token's scope) goes into the report itself — prices,
  discounts and graduated tiers are per tenant, so a tenant's own report is exactly its rows of
  everyone's. ``item`` filters likewise (as ``kubetally report --item``).
* ``project``, ``cluster`` and ``namespace`` filters add that column to the grouping and keep
  the matching rows, so the rows are the ones of ``kubetally report --by <kind>,<column>``.

The API's days, weeks and months are those of ``billing.timezone`` (as in ``kubetally report``),
and its ``from``/``to`` dates are local dates there: a server and a CLI sharing one ledger then
keep its rollups in one zone instead of rebuilding them back and forth.
"""

from __future__ import annotations

import csv
import functools
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select

from kubetally.config.loader import Config
from kubetally.errors import KubetallyError
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, format_time
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.money import EXACT, format_money_fixed
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rollups import refresh_rollups, rollup_cursor, rollup_label_keys
from kubetally.rating.tables import DAY, rollups
from kubetally.record import normalize
from kubetally.reports import build_report
from kubetally.reports.buckets import Per, buckets, month_start
from kubetally.reports.build import Report, ReportRow, UnpricedSummary, merge_reports

KINDS = ("tenant", "project", "namespace", "cluster")
FILTERS = ("tenant", "project", "cluster", "namespace", "item")
ORDERABLE = ("start", "tenant", "project", "cluster", "namespace", "item", "cost", "usage")
DETAIL_BY = ("tenant", "project", "cluster", "namespace", "item")
#: One ledger (UTC) day: the span of a record's ``date``.
_DAY = timedelta(days=1)


class QueryError(KubetallyError):
    """A query parameter that cannot be answered; ``parameter`` names it."""

    def __init__(self, parameter: str, reason: str):
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"{parameter}: {reason}")


@dataclass(frozen=True)
class Scope:
    """What the caller may see: every tenant (``tenant=None``) or one."""

    tenant: str | None = None

    def tenants(self, asked: Sequence[str] | None) -> list[str] | None:
        """The tenants a query may touch: the intersection of what was asked and the scope."""
        if self.tenant is None:
            return list(asked) if asked else None
        if asked and self.tenant not in asked:
            return []
        return [self.tenant]


@dataclass
class CostQuery:
    start: datetime
    end: datetime
    step: Per = Per.month
    kind: str = "tenant"
    split_item: bool = False
    filters: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.step = Per.parse(str(self.step))
        except ValueError as exc:
            raise QueryError("step", str(exc).replace("--per ", "")) from None


class ReportCache:
    """Reports by (parameters, version of the days they depend on; see :class:`DayVersions`):
    any new or corrected record, from any writer, gives its day a new version and the reports
    depending on that day are computed afresh. Pages of one query, the CSV archive of what was
    just shown, many readers of the same range — and yesterday's buckets while today's records
    arrive — share one computation. Least recently used entries go first."""

    def __init__(self, size: int = 64):
        self.size = size
        self._entries: OrderedDict[tuple[Any, ...], tuple[Hashable, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], version: Hashable) -> Any:
        with self._lock:
            held = self._entries.get(key)
            if held is None or held[0] != version:
                return None
            self._entries.move_to_end(key)
            return held[1]

    def put(self, key: tuple[Any, ...], version: Hashable, report: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (version, report)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class DayVersions:
    """Which days' usage changed, and when, from the ledger's own order of writes.

    Every write (a new record or a revision, by any writer) gets a ``seq`` above the rollup
    cursor; after a refresh, the records with ``seq`` in (last cursor, new cursor] name exactly
    the days whose rollups changed (a revision keeps its record's day). A day's version is the
    cursor at which it last changed; a day not seen changing has the baseline version.
    """

    def __init__(self) -> None:
        self.cursor: int | None = None
        self.generation = 0
        self.baseline = 0
        self.changed: dict[datetime, int] = {}
        self._lock = threading.Lock()

    def update(self, ledger: Ledger) -> int:
        """Catch up with the rollup cursor; returns the generation (new after a rollup rebuild)."""
        cursor = rollup_cursor(ledger)
        with self._lock:
            if self.cursor is None or cursor < self.cursor:
                self.generation += 1
                self.cursor = self.baseline = cursor
                self.changed.clear()
                return self.generation
            if cursor > self.cursor:
                t = schema.records
                with ledger.engine.connect() as conn:
                    changed = select(t.c.date).where(and_(t.c.seq > self.cursor, t.c.seq <= cursor)).distinct()
                    days: list[datetime] = list(conn.execute(changed).scalars())
                for day in days:
                    self.changed[day] = cursor
                self.cursor = cursor
            return self.generation

    def version(self, start: datetime, end: datetime) -> int:
        """The latest change of any (UTC) day overlapping ``[start, end)``: a local day of the
        billing time zone straddles two UTC days."""
        with self._lock:
            return max([self.baseline, *(v for day, v in self.changed.items() if start < day + _DAY and day < end)])


def _joined(parts: list[Report], query: CostQuery) -> Report:
    """Bucket reports as one report (their rows are in bucket order already)."""
    first = parts[0]
    unpriced: dict[tuple[str, str, str, str], UnpricedSummary] = {}
    for part in parts:
        for u in part.unpriced:
            held = unpriced.get((u.category, u.item, u.unit, u.reason))
            if held is None:
                unpriced[(u.category, u.item, u.unit, u.reason)] = UnpricedSummary(
                    u.category, u.item, u.unit, u.reason, u.usage, u.lines
                )
            else:
                held.usage = EXACT.add(held.usage, u.usage)
                held.lines += u.lines
    return Report(
        start=query.start,
        end=query.end,
        by=first.by,
        per=first.per,
        currency=first.currency,
        rows=[row for part in parts for row in part.rows],
        unpriced=sorted(unpriced.values(), key=lambda u: (u.category, u.item, u.reason)),
        display=first.display,
        unit=first.unit,
        lang=first.lang,
    )


def _frozen(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(sorted(values))


@dataclass
class CostService:
    """The ledger, price book and config a server answers from."""

    ledger: Ledger
    pricebook: PriceBook
    config: Config | None = None
    cache: ReportCache = field(default_factory=ReportCache)
    #: Reports of single buckets (a day, a week, a month), reused while their days are unchanged.
    bucket_cache: ReportCache = field(default_factory=lambda: ReportCache(4096))
    days: DayVersions = field(default_factory=lambda: DayVersions())

    def __post_init__(self) -> None:
        self._rows: dict[tuple[int, Hashable], tuple[Report, list[dict[str, Any]]]] = {}
        self._rows_lock = threading.Lock()
        display = DisplayCatalog.from_config(self.config)
        tiered = {
            entry.item
            for entry in self.pricebook.config.prices
            if (entry.tiers and len(entry.tiers) > 1) or any(g.tiers and len(g.tiers) > 1 for g in entry.groups)
        }
        # Tier counters sum display quantities; with a divisor a sum of quotients may differ from
        # the quotient of the sum in its last places, so such books are rated as one report.
        self._split_safe = all(display.divisor(item) == 1 for item in tiered)

    @property
    def zone(self) -> tzinfo:
        """``billing.timezone`` (UTC without a config): the API's days and months."""
        return self.config.settings.billing.zone if self.config is not None else UTC

    # -- reports ---------------------------------------------------------------------------------

    def report(
        self, query: CostQuery, scope: Scope, by: Sequence[str], *, prices: bool = False
    ) -> tuple[Report, list[dict[str, Any]]]:
        """The report for ``by`` (plus filter columns) and its API rows that pass the filters."""
        if query.kind not in KINDS:
            raise QueryError("kind", f"must be one of {', '.join(KINDS)}, not {query.kind!r}")
        tenants = scope.tenants(query.filters.get("tenant"))
        post = {k: set(v) for k, v in query.filters.items() if k in ("project", "cluster", "namespace") and v}
        columns = tuple(dict.fromkeys([*by, *post]))
        items = query.filters.get("item") or None
        # Fold new ledger rows first; the rollup cursor then names the ledger state exactly.
        refresh_rollups(self.ledger, label_keys=self.pricebook.label_keys, zone=self.zone)
        state = (self.days.update(self.ledger), rollup_label_keys(self.ledger))
        key = (columns, str(query.step), query.start, query.end, _frozen(tenants), _frozen(items))
        spans = self._buckets(query)
        version = (state, tuple(self.days.version(dep, b.end) for b, _items, dep in spans))
        held = self.cache.get(key, version)
        if held is None:
            pieces: dict[Period, list[tuple[tuple[bool, frozenset[str]] | None, int]]] = {}
            for (bucket, part_items, _dep), part_version in zip(spans, version[1], strict=True):
                pieces.setdefault(bucket, []).append((part_items, part_version))
            parts = []
            for bucket, wanted in pieces.items():
                # A bucket's parts merged once, and kept while none of them changed.
                merged_key = (columns, str(query.step), bucket.start, bucket.end, _frozen(tenants), _frozen(items))
                merged_version = (state, tuple(v for _, v in wanted))
                merged = self.bucket_cache.get(merged_key, merged_version) if len(wanted) > 1 else None
                if merged is None:
                    built = [
                        self._bucket_report(bucket, part_items, (state, v), query, columns, tenants, items)
                        for part_items, v in wanted
                    ]
                    merged = merge_reports([b for b in built if b is not None])
                    if len(wanted) > 1:
                        self.bucket_cache.put(merged_key, merged_version, merged)
                parts.append(merged)
            held = (_joined(parts, query), {}, parts)
            self.cache.put(key, version, held)
        report, derived, bucket_reports = held
        shape = (prices, tuple(sorted((k, tuple(sorted(v))) for k, v in post.items())))
        rows = derived.get(shape)
        if rows is None:
            rows = derived[shape] = [
                row for part in bucket_reports for row in self._api_rows(part, shape, prices, post)
            ]
        return report, rows

    def _api_rows(self, part: Report, shape: Hashable, prices: bool, post: dict[str, set[str]]) -> list[dict[str, Any]]:
        """A bucket's API rows, made once per bucket report: after a write only the changed
        buckets' rows are formatted again, not the whole range's."""
        with self._rows_lock:
            held = self._rows.get((id(part), shape))
        if held is not None and held[0] is part:
            return held[1]
        kept = (r for r in part.rows if all(r.group[k] in allowed for k, allowed in post.items()))
        rows = [row_dict(part, r, prices=prices) for r in kept]
        with self._rows_lock:
            # Keyed by identity; the entry holds the report, so its id cannot be reused meanwhile.
            self._rows[(id(part), shape)] = (part, rows)
            while len(self._rows) > max(self.bucket_cache.size, 1) * 2:
                self._rows.pop(next(iter(self._rows)))
        return rows

    def _bucket_report(
        self,
        bucket: Period,
        part_items: tuple[bool, frozenset[str]] | None,
        version: Hashable,
        query: CostQuery,
        columns: tuple[str, ...],
        tenants: list[str] | None,
        items: list[str] | None,
    ) -> Report | None:
        """The report of one bucket over every item (``part_items`` None), or over only the
        tiered items (``(True, names)``) or every item but those (``(False, names)``); None
        when the query's item filter leaves nothing for that part."""
        keep, exclude = items, None
        if part_items is not None:
            only, names = part_items
            if only:
                keep = sorted(names if items is None else names.intersection(items))
                if not keep:
                    return None
            elif items is None:
                exclude = sorted(names)
            else:
                keep = [i for i in items if i not in names]
                if not keep:
                    return None
        part_key = (columns, str(query.step), bucket.start, bucket.end, _frozen(tenants), _frozen(items), part_items)
        part: Report | None = self.bucket_cache.get(part_key, version)
        if part is None:
            part = build_report(
                self.ledger,
                self.pricebook,
                self.config,
                bucket.start,
                bucket.end,
                by=columns,
                per=query.step,
                tenants=tenants,
                items=keep,
                exclude_items=exclude,
                refresh=False,
                zone=self.zone,
            )
            self.bucket_cache.put(part_key, version, part)
        return part

    def _buckets(self, query: CostQuery) -> list[tuple[Period, tuple[bool, frozenset[str]] | None, datetime]]:
        """The pieces a report is computed in: (bucket, which items, the first day its
        figures depend on).

        A report is the concatenation of the reports of its buckets: ``build_report`` cuts its
        segments at every bucket start, so each bucket's rows are rated from the same rollup
        sums in the same order either way. A flat-priced line depends on its own day only;
        graduated tiers count from the start of the billing month, so a bucket's tiered items
        are rated apart from the rest (:func:`merge_reports` joins the two exactly) and depend
        on the days since the month started — read by their own report as context (an exact
        sum when the tiered items have divisor 1, the only case split here). A new record of
        one day therefore recomputes that day's flat items and the tiered items of the buckets
        from that day to the month's end.
        """
        if not self._split_safe or self.bucket_cache.size <= 0:
            return [(Period(query.start, query.end), None, month_start(query.start, self.zone))]
        tiered = frozenset(item for _, item in self.pricebook.tiered_items)
        out: list[tuple[Period, tuple[bool, frozenset[str]] | None, datetime]] = []
        for b in buckets(query.start, query.end, query.step, self.zone):
            if tiered:
                out.append((b, (False, tiered), b.start))
                out.append((b, (True, tiered), month_start(b.start, self.zone)))
            else:
                out.append((b, None, b.start))
        return out

    def total(self, query: CostQuery, scope: Scope) -> tuple[Report, list[dict[str, Any]]]:
        return self.report(query, scope, _kind_columns(query.kind) + (("item",) if query.split_item else ()))

    def usage(self, query: CostQuery, scope: Scope) -> tuple[Report, list[dict[str, Any]]]:
        return self.report(query, scope, (*_kind_columns(query.kind), "item"))

    def detail(self, query: CostQuery, scope: Scope) -> tuple[Report, list[dict[str, Any]]]:
        return self.report(query, scope, DETAIL_BY, prices=True)

    # -- catalogue -------------------------------------------------------------------------------

    def tenants(self, scope: Scope) -> list[dict[str, Any]]:
        """Every tenant with usage, with the clusters and projects it has usage in."""
        refresh_rollups(self.ledger, label_keys=self.pricebook.label_keys, zone=self.zone)
        r = rollups
        query = select(r.c.tenant, r.c.cluster, r.c.project).where(r.c.grain == DAY).distinct()
        if scope.tenant is not None:
            query = query.where(r.c.tenant == scope.tenant)
        found: dict[str, dict[str, set[str]]] = {}
        with self.ledger.engine.connect() as conn:
            for row in conn.execute(query):
                entry = found.setdefault(row.tenant, {"clusters": set(), "projects": set()})
                entry["clusters"].add(row.cluster)
                if row.project:
                    entry["projects"].add(row.project)
        adjustments = self.pricebook.config.tenants
        return [
            {
                "tenant": tenant,
                "clusters": sorted(v["clusters"]),
                "projects": sorted(v["projects"]),
                "adjustment": _adjustment(adjustments.get(tenant)),
            }
            for tenant, v in sorted(found.items())
        ]

    def items(self, scope: Scope, at: datetime) -> list[dict[str, Any]]:
        """Every item with usage (in the scope), its display names and whether it has a price."""
        refresh_rollups(self.ledger, label_keys=self.pricebook.label_keys, zone=self.zone)
        r = rollups
        query = select(r.c.category, r.c.item, r.c.unit).where(r.c.grain == DAY).distinct()
        if scope.tenant is not None:
            query = query.where(r.c.tenant == scope.tenant)
        with self.ledger.engine.connect() as conn:
            seen = {(row.category, row.item, row.unit) for row in conn.execute(query)}
        display = DisplayCatalog.from_config(self.config)
        out = []
        for category, item, unit in sorted(seen):
            entry = self.pricebook.entry_at(category, item, at)
            out.append(
                {
                    "category": category,
                    "item": item,
                    "unit": unit,
                    "name": {
                        "en": display.item_name(category, item, "en"),
                        "zh": display.item_name(category, item, "zh"),
                    },
                    "displayUnit": display.unit_name(item, unit, "en"),
                    "divisor": format(normalize(display.divisor(item)), "f"),
                    "priced": entry is not None,
                }
            )
        return out

    def prices(self, scope: Scope, at: datetime) -> dict[str, Any]:
        """The price book in force at ``at``: one entry per item, and tenant adjustments
        (only the caller's own for a tenant)."""
        entries = []
        for category, item in self.pricebook.items:
            entry = self.pricebook.entry_at(category, item, at)
            if entry is not None:
                entries.append(entry.model_dump(mode="json", exclude_none=True))
        tenants = self.pricebook.config.tenants
        if scope.tenant is not None:
            tenants = {k: v for k, v in tenants.items() if k == scope.tenant}
        return {
            "at": format_time(at),
            "currency": self.pricebook.currency,
            "prices": entries,
            "tenants": {k: _adjustment(v) for k, v in sorted(tenants.items())},
            "changes": [format_time(d) for d in self.pricebook.change_dates()],
        }


def _kind_columns(kind: str) -> tuple[str, ...]:
    if kind == "namespace":
        return ("cluster", "namespace")
    if kind not in KINDS:
        raise QueryError("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    return (kind,)


def _adjustment(adj: Any) -> dict[str, Any] | None:
    return None if adj is None else adj.model_dump(mode="json", exclude_none=True)


#: Bucket bounds as text: a page repeats the same few dozen times thousands of times.
_time_text = functools.lru_cache(maxsize=4096)(format_time)


def row_dict(report: Report, row: ReportRow, *, prices: bool = False) -> dict[str, Any]:
    """One API row (the fields of ``kubetally report --format json``, Alauda names)."""
    unpriced = row.status == "unpriced"
    out: dict[str, Any] = {
        "start": _time_text(row.period.start),
        "end": _time_text(row.period.end),
        "tenant": row.group.get("tenant"),
        "project": row.group.get("project"),
        "cluster": row.group.get("cluster"),
        "namespace": row.group.get("namespace"),
        "category": None,
        "item": None,
    }
    if "item" in row.group:
        out["category"], out["item"] = row.group["item"].split("/", 1)
    single = row.single_item
    out["usage"] = format(normalize(row.usage), "f") if row.usage is not None else None
    out["unit"] = single[2] if single is not None else None
    out["listCost"] = None if unpriced else format_money_fixed(row.list_cost)
    out["cost"] = None if unpriced else format_money_fixed(row.cost)
    out["costMicros"] = None if unpriced else row.cost
    out["currency"] = report.currency
    out["status"] = row.status
    if prices:
        unit_prices = {c.unit_price for c in row.charges if c.priced}
        out["price"] = format(normalize(unit_prices.pop()), "f") if len(unit_prices) == 1 else None
    return out


def order_rows(rows: list[dict[str, Any]], order_by: str, descending: bool) -> list[dict[str, Any]]:
    """Sort API rows by one column (nulls last), ties broken by the natural row order."""
    if order_by not in ORDERABLE:
        raise QueryError("orderBy", f"must be one of {', '.join(ORDERABLE)}, not {order_by!r}")
    numeric: Callable[[Any], Any] = (lambda v: Decimal(v)) if order_by in ("cost", "usage") else (lambda v: v)
    present = [r for r in rows if r.get(order_by) is not None]
    missing = [r for r in rows if r.get(order_by) is None]
    present.sort(key=lambda r: numeric(r[order_by]), reverse=descending)
    return present + missing


def total_of(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    micros = sum(r["costMicros"] or 0 for r in rows)
    return {"cost": format_money_fixed(micros), "costMicros": micros}


CSV_COLUMNS = (
    "start",
    "end",
    "tenant",
    "project",
    "cluster",
    "namespace",
    "category",
    "item",
    "usage",
    "unit",
    "price",
    "listCost",
    "cost",
    "currency",
    "status",
)


def detail_csv(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    """The ``costs/detail/archive`` CSV, a chunk of lines at a time."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for i, row in enumerate(rows, 1):
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
        if i % 1000 == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


__all__ = ["CostQuery", "CostService", "QueryError", "Scope"]
