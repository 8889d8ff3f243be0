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
import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from kubetally.config.loader import Config
from kubetally.errors import KubetallyError
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, format_time
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.money import EXACT, format_money_fixed
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rollups import day_versions, refresh_rollups
from kubetally.rating.tables import DAY, rollups
from kubetally.record import normalize
from kubetally.reports import build_report
from kubetally.reports.buckets import Per, buckets, month_start
from kubetally.reports.build import Report, ReportRow, UnpricedSummary, merge_reports, split_report
from kubetally.server import stored

KINDS = ("tenant", "project", "namespace", "cluster")
FILTERS = ("tenant", "project", "cluster", "namespace", "item")
ORDERABLE = ("start", "tenant", "project", "cluster", "namespace", "item", "cost", "usage")
DETAIL_BY = ("tenant", "project", "cluster", "namespace", "item")
log = logging.getLogger(__name__)


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


def _stored_api_rows(report: Report) -> dict[str, list[dict[str, Any]]]:
    """A bucket's API rows without filters, as :meth:`CostService._api_rows` makes them."""
    return {
        "plain": [row_dict(report, r) for r in report.rows],
        "priced": [row_dict(report, r, prices=True) for r in report.rows],
    }


def _merged_version(wanted: list[tuple[PartItems, Versions]]) -> tuple[Versions, ...]:
    return tuple(v for _, v in wanted)


def _within(days: tuple[tuple[datetime, int], ...], start: datetime, end: datetime) -> tuple[tuple[datetime, int], ...]:
    return tuple(d for d in days if start <= d[0] < end)


def _item_args(part_items: PartItems, items: list[str] | None) -> tuple[list[str] | None, list[str] | None] | None:
    """``build_report``'s (items, exclude_items) for a part, or None when the query's item
    filter leaves the part nothing to rate."""
    if part_items is None:
        return items, None
    only, names = part_items
    if only:
        keep = sorted(names if items is None else names.intersection(items))
        return (keep, None) if keep else None
    if items is None:
        return None, sorted(names)
    rest = [i for i in items if i not in names]
    return (rest, None) if rest else None


def _empty(query: CostQuery, bucket: Period, columns: tuple[str, ...], service: CostService) -> Report:
    """A bucket with nothing to rate (the item filter leaves none of its parts)."""
    return Report(
        start=bucket.start,
        end=bucket.end,
        by=columns,
        per=query.step,
        currency=service.pricebook.currency,
        rows=[],
        unpriced=[],
        display=service._display,
        zone=service.zone,
    )


def _frozen(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(sorted(values))


#: Which items a bucket part rates: all (None), only the tiered ones ``(True, names)``, or all
#: but those ``(False, names)``.
PartItems = tuple[bool, frozenset[str]] | None
#: A bucket part: (bucket, its items, the first day its figures depend on).
Span = tuple[Period, PartItems, datetime]
#: (day, version) of the rollup days a part depends on.
Versions = tuple[tuple[datetime, int], ...]


@dataclass
class CostService:
    """The ledger, price book and config a server answers from."""

    ledger: Ledger
    pricebook: PriceBook
    config: Config | None = None
    cache: ReportCache = field(default_factory=ReportCache)
    #: Reports of single buckets (a day, a week, a month), reused while their days are unchanged.
    bucket_cache: ReportCache = field(default_factory=lambda: ReportCache(4096))
    #: Keep bucket parts in the ledger database too (:mod:`kubetally.server.stored`).
    store: bool = True

    def __post_init__(self) -> None:
        self._rows: dict[tuple[int, Hashable], tuple[Report, list[dict[str, Any]]]] = {}
        self._rows_lock = threading.Lock()
        self._display = DisplayCatalog.from_config(self.config)
        tiered = {
            entry.item
            for entry in self.pricebook.config.prices
            if (entry.tiers and len(entry.tiers) > 1) or any(g.tiers and len(g.tiers) > 1 for g in entry.groups)
        }
        # Tier counters sum display quantities; with a divisor a sum of quotients may differ from
        # the quotient of the sum in its last places, so such books are rated as one report.
        self._split_safe = all(self._display.divisor(item) == 1 for item in tiered)
        self._fingerprint = stored.fingerprint(self.pricebook, self.config, self.zone)
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubetally-report-store")
        self._saving: list[Future[None]] = []
        self._saving_lock = threading.Lock()

    @property
    def zone(self) -> tzinfo:
        """``billing.timezone`` (UTC without a config): the API's days and months."""
        return self.config.settings.billing.zone if self.config is not None else UTC

    # -- reports ---------------------------------------------------------------------------------

    def _versions(self, start: datetime, end: datetime) -> Versions:
        """The versions of the rollup days in ``[start, end)``. (The rollups' label keys need
        no version of their own: rebuilding the rollups with other keys moves every day's.)"""
        with self.ledger.engine.connect() as conn:
            return day_versions(conn, start, end)

    def report(
        self, query: CostQuery, scope: Scope, by: Sequence[str], *, prices: bool = False
    ) -> tuple[Report, list[dict[str, Any]]]:
        """The report for ``by`` (plus filter columns) and its API rows that pass the filters.

        Computed bucket part by bucket part (:meth:`_buckets`). A part is valid while the
        rollup days it depends on keep their versions (``rating_rollup_days``: every fold, by
        any process, moves the versions of the days it changed), so after a new record only
        the parts depending on its day are rated again. Parts are looked for in memory, then in
        the ledger database (:mod:`kubetally.server.stored`; shared by replicas, kept across
        restarts), and the rest are rated together: one ``build_report`` per kind of part and
        run of consecutive buckets, cut into buckets by :func:`split_report`.
        """
        if query.kind not in KINDS:
            raise QueryError("kind", f"must be one of {', '.join(KINDS)}, not {query.kind!r}")
        tenants = scope.tenants(query.filters.get("tenant"))
        post = {k: set(v) for k, v in query.filters.items() if k in ("project", "cluster", "namespace") and v}
        columns = tuple(dict.fromkeys([*by, *post]))
        items = query.filters.get("item") or None
        # Fold new ledger rows first; the day versions then name the ledger state exactly.
        refresh_rollups(self.ledger, label_keys=self.pricebook.label_keys, zone=self.zone)
        spans = self._buckets(query)
        first = min(dep for _b, _i, dep in spans)
        days = self._versions(first, query.end)
        part_versions = [_within(days, dep, b.end) for b, _i, dep in spans]
        key = (columns, str(query.step), query.start, query.end, _frozen(tenants), _frozen(items))
        version = tuple(part_versions)
        held = self.cache.get(key, version)
        if held is None:
            shape = (columns, str(query.step), _frozen(tenants), _frozen(items))
            parts = self._parts(query, shape, spans, part_versions, first, tenants, items)
            held = (_joined(parts, query), {}, parts)
            self.cache.put(key, version, held)
        report, derived, bucket_reports = held
        row_shape = (prices, tuple(sorted((k, tuple(sorted(v))) for k, v in post.items())))
        rows = derived.get(row_shape)
        if rows is None:
            rows = derived[row_shape] = [
                row for part in bucket_reports for row in self._api_rows(part, row_shape, prices, post)
            ]
        return report, rows

    def _parts(
        self,
        query: CostQuery,
        shape: tuple[Any, ...],
        spans: list[Span],
        part_versions: list[Versions],
        first: datetime,
        tenants: list[str] | None,
        items: list[str] | None,
    ) -> list[Report]:
        """The report of every bucket of ``spans`` (its parts merged), in bucket order."""
        columns = shape[0]
        pieces: dict[Period, list[tuple[PartItems, Versions]]] = {}
        for (bucket, part_items, _dep), part_version in zip(spans, part_versions, strict=True):
            pieces.setdefault(bucket, []).append((part_items, part_version))
        merged: dict[Period, Report | None] = {}
        for bucket, wanted in pieces.items():
            # A bucket's parts merged once, and kept while none of them changed.
            if len(wanted) > 1:
                merged[bucket] = self.bucket_cache.get((*shape, bucket.start, bucket.end), _merged_version(wanted))
            else:
                merged[bucket] = None
        if self.store and any(held is None for held in merged.values()):
            self._load(shape, pieces, merged)
        # Every part of a bucket not found merged: from memory, or rated now.
        found: dict[tuple[datetime, PartItems], Report | None] = {}
        missing: list[tuple[Period, PartItems, Versions]] = []
        for bucket, wanted in pieces.items():
            if merged[bucket] is not None:
                continue
            for part_items, v in wanted:
                if _item_args(part_items, items) is None:
                    found[(bucket.start, part_items)] = None
                    continue
                part = self.bucket_cache.get((*shape, bucket.start, bucket.end, part_items), v)
                if part is None:
                    missing.append((bucket, part_items, v))
                else:
                    found[(bucket.start, part_items)] = part
        kept: set[tuple[datetime, PartItems]] = set()
        if missing:
            depends = {(b.start, i): dep for b, i, dep in spans}
            kept = self._rate(query, shape, missing, found, depends, first, tenants, items)
        rated = {(bucket.start, part_items) for bucket, part_items, _v in missing}
        to_store: list[tuple[str, str, Report]] = []
        out = []
        for bucket, wanted in pieces.items():
            held = merged[bucket]
            if held is None:
                built = [found[(bucket.start, part_items)] for part_items, _v in wanted]
                held = merge_reports([b for b in built if b is not None] or [_empty(query, bucket, columns, self)])
                # Kept if every part is: rated at the versions it is kept at, or found so.
                if all((bucket.start, i) in kept or (bucket.start, i) not in rated for i, _v in wanted):
                    if len(wanted) > 1:
                        self.bucket_cache.put((*shape, bucket.start, bucket.end), _merged_version(wanted), held)
                    if self.store:
                        digest = stored.version_digest(_merged_version(wanted))
                        to_store.append((self._stored_key(shape, bucket), digest, held))
            out.append(held)
        if to_store:
            self._save(to_store)
        return out

    def _stored_key(self, shape: tuple[Any, ...], bucket: Period) -> str:
        parameters = (*shape, bucket.start, bucket.end)
        return stored.part_key(self._fingerprint, parameters)

    def _load(
        self,
        shape: tuple[Any, ...],
        pieces: dict[Period, list[tuple[PartItems, Versions]]],
        merged: dict[Period, Report | None],
    ) -> None:
        """Fill ``merged`` with the buckets stored in the ledger database at the versions wanted."""
        wanted = [bucket for bucket, held in merged.items() if held is None]
        keys = [self._stored_key(shape, bucket) for bucket in wanted]
        with self.ledger.engine.connect() as conn:
            rows = stored.load(conn, keys)
        for key, bucket in zip(keys, wanted, strict=True):
            held = rows.get(key)
            version = _merged_version(pieces[bucket])
            if held is None or held[0] != stored.version_digest(version):
                continue
            try:
                part, api = stored.decode(held[1], self.pricebook, self._display, self.zone)
            except (ValueError, KeyError, TypeError, ArithmeticError, zlib.error) as exc:
                log.warning("stored report bucket %s unreadable (%s): rating it again", key, exc)
                continue
            merged[bucket] = part
            with self._rows_lock:
                for prices, name in ((False, "plain"), (True, "priced")):
                    if name in api:
                        self._rows[(id(part), (prices, ()))] = (part, api[name])
            if len(pieces[bucket]) > 1:
                self.bucket_cache.put((*shape, bucket.start, bucket.end), version, part)

    def _save(self, entries: list[tuple[str, str, Report]]) -> None:
        """Store buckets in the ledger database, off the request's path (one writer thread)."""

        def save() -> None:
            try:
                payloads = [
                    (key, digest, stored.encode(report, _stored_api_rows(report))) for key, digest, report in entries
                ]
                with self.ledger.transaction() as conn:
                    stored.save(conn, payloads)
            except Exception:  # a cache: a failed save costs a later rating, never an answer
                log.exception("storing %d report buckets failed", len(entries))

        with self._saving_lock:
            self._saving.append(self._saver.submit(save))

    def settle(self) -> None:
        """Wait for buckets being stored (tests, and a server shutting down)."""
        with self._saving_lock:
            pending, self._saving = self._saving, []
        for future in pending:
            future.result()

    def _rate(
        self,
        query: CostQuery,
        shape: tuple[Any, ...],
        missing: list[tuple[Period, PartItems, Versions]],
        found: dict[tuple[datetime, PartItems], Report | None],
        depends: dict[tuple[datetime, PartItems], datetime],
        first: datetime,
        tenants: list[str] | None,
        items: list[str] | None,
    ) -> set[tuple[datetime, PartItems]]:
        """Rate the missing parts: one report per kind of part and run of consecutive buckets.

        A part is kept (returned, and put in memory) only if the versions of its days read
        after rating are those read before it: then no fold changed them while it was rated,
        and the report is the one of those versions."""
        runs: dict[PartItems, list[list[tuple[Period, Versions]]]] = {}
        for bucket, part_items, v in sorted(missing, key=lambda m: m[0].start):
            kind = runs.setdefault(part_items, [])
            if kind and kind[-1][-1][0].end == bucket.start:
                kind[-1].append((bucket, v))
            else:
                kind.append([(bucket, v)])
        rated: list[tuple[Period, PartItems, Versions, Report]] = []
        for part_items, kind_runs in runs.items():
            keep, exclude = _item_args(part_items, items) or (None, None)
            for run in kind_runs:
                report = build_report(
                    self.ledger,
                    self.pricebook,
                    self.config,
                    run[0][0].start,
                    run[-1][0].end,
                    by=shape[0],
                    per=query.step,
                    tenants=tenants,
                    items=keep,
                    exclude_items=exclude,
                    refresh=False,
                    zone=self.zone,
                )
                periods = [bucket for bucket, _v in run]
                # One span needs no cutting (and is the whole range when buckets are not split).
                split = [report] if len(run) == 1 else split_report(report, periods)
                for (bucket, v), part in zip(run, split, strict=True):
                    found[(bucket.start, part_items)] = part
                    rated.append((bucket, part_items, v, part))
        days = self._versions(first, query.end)
        kept = set()
        for bucket, part_items, v, part in rated:
            if _within(days, depends[(bucket.start, part_items)], bucket.end) == v:
                self.bucket_cache.put((*shape, bucket.start, bucket.end, part_items), v, part)
                kept.add((bucket.start, part_items))
        return kept

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

    def _buckets(self, query: CostQuery) -> list[Span]:
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
        out: list[Span] = []
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
