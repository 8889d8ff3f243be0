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


def version_digest(versions: Sequence[tuple[datetime, int]]) -> str:
    return _digest([[day.isoformat(), v] for day, v in versions])


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


def encode(report: Report) -> bytes:
    """A report as compressed JSON; times, labels and keys written once and referred to by index."""
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
                charges,
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
    }
    return zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), 1)


def decode(payload: bytes, pricebook: PriceBook, display: DisplayCatalog, zone: tzinfo) -> Report:
    """The report :func:`encode` stored; price matches looked up again in ``pricebook``."""
    body = json.loads(zlib.decompress(payload))
    times = [datetime.fromisoformat(text) for text in body["times"]]
    labels = [tuple((k, v) for k, v in value) for value in body["labels"]]
    by = tuple(body["by"])
    matches: dict[tuple[str, str, int, int], PriceMatch] = {}
    periods: dict[tuple[int, int], Period] = {}
    rows = []
    for start, end, values, list_cost, cost, usage, unpriced_usage, stored in body["rows"]:
        period = periods.get((start, end))
        if period is None:
            period = periods[(start, end)] = Period(times[start], times[end])
        charges = []
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
        ) in stored:
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
            match = None
            if priced:
                lookup = (category, item, l_labels, l_start)
                match = matches.get(lookup)
                if match is None:
                    found = pricebook.match_labels(category, item, line.labels, line.start)
                    if not isinstance(found, PriceMatch):
                        raise ValueError(f"{category}/{item}: stored as priced, no price in the book now")
                    match = matches[lookup] = found
            charges.append(
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
        rows.append(
            ReportRow(
                period,
                dict(zip(by, values, strict=True)),
                list_cost,
                cost,
                {(c, i, u): Decimal(v) for c, i, u, v in usage},
                {(c, i, u): Decimal(v) for c, i, u, v in unpriced_usage},
                charges,
            )
        )
    return Report(
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
