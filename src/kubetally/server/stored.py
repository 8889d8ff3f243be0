"""Rated report buckets kept in the ledger database (``server_report_buckets``).

A restarted server, or a second replica, would otherwise rate the whole month again on its
first request — tens of thousands of lines in Python. A bucket part (see
:meth:`kubetally.server.costs.CostService._buckets`) is stored as the report ``build_report``
made for it, keyed by a hash of its parameters and of everything its figures depend on besides
usage (the price book, the display config, the billing time zone, the rollups' label keys and
kubetally's version), and valid while the rollup days it was computed from keep their versions
(``rating_rollup_days``, moved by every fold). Nothing in a stored report is trusted beyond
that: it is JSON (no pickle), and a row that does not decode is treated as absent.

What is stored is the report itself, charges included (the dashboard's per-label view and the
merge of a bucket's parts read them); a charge's price match is not stored but looked up again
in the price book — the same book, as its hash is part of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import zlib
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, select

from kubetally import __version__
from kubetally.config.loader import Config
from kubetally.periods import Period, zone_name
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.pricebook import PriceBook, PriceMatch
from kubetally.rating.rate import Charge, UsageLine
from kubetally.reports.buckets import Per
from kubetally.reports.build import Report, ReportRow, UnpricedSummary
from kubetally.server.tables import report_buckets

#: Bump when the payload's layout or the rating code's results change without a new version.
FORMAT = 1
_IN_CHUNK = 500
log = logging.getLogger(__name__)


def _digest(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def fingerprint(pricebook: PriceBook, config: Config | None, zone: tzinfo) -> str:
    """Everything besides usage a stored bucket's figures depend on."""
    display = [d.model_dump(mode="json") for d in config.display] if config is not None else []
    return _digest([FORMAT, __version__, pricebook.config.model_dump(mode="json"), display, zone_name(zone)])


def part_key(fingerprint: str, parameters: Hashable) -> str:
    return _digest([fingerprint, repr(parameters)])


def version_digest(versions: Any) -> str:
    """Of the (day, version) pairs a bucket was computed at (nested in tuples, per part)."""
    return _digest(versions)


def load(conn: Connection, keys: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """Stored (version, payload) by key, for those of ``keys`` present."""
    out: dict[str, tuple[str, bytes]] = {}
    t = report_buckets
    for i in range(0, len(keys), _IN_CHUNK):
        rows = conn.execute(select(t.c.key, t.c.version, t.c.payload).where(t.c.key.in_(keys[i : i + _IN_CHUNK])))
        out.update({row.key: (row.version, bytes(row.payload)) for row in rows})
    return out


def save(conn: Connection, entries: Sequence[tuple[str, str, bytes]]) -> None:
    """Store (key, version, payload) rows, replacing older versions of the same keys."""
    if not entries:
        return
    t = report_buckets
    keys = [key for key, _, _ in entries]
    for i in range(0, len(keys), _IN_CHUNK):
        conn.execute(delete(t).where(t.c.key.in_(keys[i : i + _IN_CHUNK])))
    now = datetime.now(UTC)
    conn.execute(t.insert(), [{"key": k, "version": v, "payload": p, "stored_at": now} for k, v, p in entries])


def encode(report: Report, api_rows: dict[str, list[dict[str, Any]]] | None = None) -> bytes:
    """A report as compressed JSON; times and labels written once and referred to by index,
    each row's charges as a JSON text of their own (decoded only when read, see
    :class:`_StoredRow`). ``api_rows`` are the report's rows as the API shows them (by name of
    the shape), kept beside it so a restarted server does not format them again."""
    times: dict[datetime, int] = {}
    labels: dict[tuple[tuple[str, str], ...], int] = {}

    def at(moment: datetime) -> int:
        index = times.get(moment)
        if index is None:
            index = times[moment] = len(times)
        return index

    def labelled(value: tuple[tuple[str, str], ...]) -> int:
        index = labels.get(value)
        if index is None:
            index = labels[value] = len(labels)
        return index

    rows = []
    for row in report.rows:
        charges = []
        for c in row.charges:
            line = c.line
            charges.append(
                [
                    at(line.start),
                    at(line.end),
                    line.tenant,
                    line.category,
                    line.item,
                    line.unit,
                    labelled(line.labels),
                    str(line.usage),
                    list(line.key),
                    line.context,
                    str(c.usage),
                    str(c.quantity),
                    c.match is not None,
                    c.unpriced_reason,
                    c.tier,
                    str(c.list_unit_price),
                    str(c.unit_price),
                    c.list_cost,
                    c.cost,
                ]
            )
        rows.append(
            [
                at(row.period.start),
                at(row.period.end),
                [row.group[c] for c in report.by],
                row.list_cost,
                row.cost,
                [[*k, str(v)] for k, v in row.usage_by_item.items()],
                [[*k, str(v)] for k, v in row.unpriced_usage.items()],
                json.dumps(charges, separators=(",", ":"), ensure_ascii=False),
            ]
        )
    body = {
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "by": list(report.by),
        "per": str(report.per),
        "currency": report.currency,
        "unit": report.unit,
        "lang": report.lang,
        "times": [moment.isoformat() for moment in times],
        "labels": [[list(pair) for pair in value] for value in labels],
        "rows": rows,
        "unpriced": [[u.category, u.item, u.unit, u.reason, str(u.usage), u.lines] for u in report.unpriced],
        "api": api_rows or {},
    }
    return zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), 1)


class _Context:
    """What decoding a stored report's charges needs: its times and labels, the price book."""

    def __init__(self, times: list[datetime], labels: list[tuple[tuple[str, str], ...]], pricebook: PriceBook):
        self.times = times
        self.labels = labels
        self.pricebook = pricebook
        self.matches: dict[tuple[str, str, int, int], PriceMatch] = {}
        self.lock = threading.Lock()

    def charges(self, text: str) -> list[Charge]:
        times, labels = self.times, self.labels
        out = []
        for (
            l_start,
            l_end,
            tenant,
            category,
            item,
            unit,
            l_labels,
            l_usage,
            key,
            context,
            c_usage,
            quantity,
            priced,
            reason,
            tier,
            list_price,
            price,
            c_list_cost,
            c_cost,
        ) in json.loads(text):
            line = UsageLine(
                times[l_start],
                times[l_end],
                tenant,
                category,
                item,
                unit,
                labels[l_labels],
                Decimal(l_usage),
                tuple(key),
                context,
            )
            match = self._match(category, item, l_labels, l_start) if priced else None
            out.append(
                Charge(
                    line,
                    Decimal(c_usage),
                    Decimal(quantity),
                    match,
                    reason,
                    tier,
                    Decimal(list_price),
                    Decimal(price),
                    c_list_cost,
                    c_cost,
                )
            )
        return out

    def _match(self, category: str, item: str, labels: int, start: int) -> PriceMatch:
        lookup = (category, item, labels, start)
        with self.lock:
            match = self.matches.get(lookup)
        if match is None:
            found = self.pricebook.match_labels(category, item, self.labels[labels], self.times[start])
            if not isinstance(found, PriceMatch):
                # The key names the price book, so this is a stored row not written by encode().
                raise ValueError(f"{category}/{item}: stored as priced, the price book has no price for it")
            match = found
            with self.lock:
                self.matches[lookup] = match
        return match


class _StoredRow(ReportRow):
    """A report row read from the store. Its charges are decoded when first read: the cost
    routes answer from the rows' sums, and only the per-label views and the detail's unit price
    need the charges, of fewer rows."""

    def __init__(
        self,
        period: Period,
        group: dict[str, str],
        list_cost: int,
        cost: int,
        usage_by_item: dict[tuple[str, str, str], Decimal],
        unpriced_usage: dict[tuple[str, str, str], Decimal],
        pending: str,
        context: _Context,
    ):
        super().__init__(period, group, list_cost, cost, usage_by_item, unpriced_usage, [])
        self._pending: str | None = pending
        self._context = context

    @property
    def charges(self) -> list[Charge]:
        pending = self._pending
        if pending is not None:
            self._charges = self._context.charges(pending)
            self._pending = None
        return self._charges

    @charges.setter
    def charges(self, value: list[Charge]) -> None:
        self._charges = value
        self._pending = None


def decode(
    payload: bytes, pricebook: PriceBook, display: DisplayCatalog, zone: tzinfo
) -> tuple[Report, dict[str, list[dict[str, Any]]]]:
    """The report :func:`encode` stored (price matches looked up again in ``pricebook``) and
    its API rows by shape."""
    body = json.loads(zlib.decompress(payload))
    times = [datetime.fromisoformat(text) for text in body["times"]]
    labels = [tuple((k, v) for k, v in value) for value in body["labels"]]
    context = _Context(times, labels, pricebook)
    by = tuple(body["by"])
    periods: dict[tuple[int, int], Period] = {}
    rows: list[ReportRow] = []
    for start, end, values, list_cost, cost, usage, unpriced_usage, charges in body["rows"]:
        period = periods.get((start, end))
        if period is None:
            period = periods[(start, end)] = Period(times[start], times[end])
        if not isinstance(charges, str):
            raise TypeError("stored charges are not a JSON text")
        rows.append(
            _StoredRow(
                period,
                dict(zip(by, values, strict=True)),
                list_cost,
                cost,
                {(c, i, u): Decimal(v) for c, i, u, v in usage},
                {(c, i, u): Decimal(v) for c, i, u, v in unpriced_usage},
                charges,
                context,
            )
        )
    api: dict[str, list[dict[str, Any]]] = body["api"]
    if not isinstance(api, dict):
        raise TypeError("stored API rows are not an object")
    report = Report(
        start=datetime.fromisoformat(body["start"]),
        end=datetime.fromisoformat(body["end"]),
        by=by,
        per=Per(body["per"]),
        currency=body["currency"],
        rows=rows,
        unpriced=[UnpricedSummary(c, i, u, r, Decimal(v), n) for c, i, u, r, v, n in body["unpriced"]],
        display=display,
        unit=body["unit"],
        lang=body["lang"],
        zone=zone,
    )
    return report, api
