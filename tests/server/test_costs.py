"""The server computes a report bucket by bucket and reuses buckets whose days did not change;
the result must be exactly ``build_report`` over the whole range, tiers and price changes
included. Data: the fixed report scenario of tests/rating (prices with a price change on the
16th, CPU tiers, a tenant discount; divisor 2^30 for VgpuMemoryUsed)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kubetally.config import Config, load_config
from kubetally.ledger.store import Ledger
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rollups import day_versions, rebuild_rollups, refresh_rollups
from kubetally.record import UsageRecord
from kubetally.reports import build_report
from kubetally.reports.buckets import Per
from kubetally.reports.build import Report
from kubetally.server import costs as costs_module
from kubetally.server.costs import DETAIL_BY, CostQuery, CostService, ReportCache, Scope
from kubetally.server.ingest import ingest
from kubetally.server.tables import report_buckets
from rating.conftest import DEC, DISPLAY, NOV, PRICES, hour, record, scenario_records

from .scenario import DATA as SERVER_DATA


@pytest.fixture
def book() -> PriceBook:
    return PriceBook.load(PRICES)


@pytest.fixture
def display() -> Config:
    return load_config([DISPLAY])


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    ledger.write(scenario_records())
    return ledger


def _rows(report: Report) -> list[tuple[object, ...]]:
    return [
        (
            r.period.start,
            r.period.end,
            tuple(sorted(r.group.items())),
            r.list_cost,
            r.cost,
            sorted(r.usage_by_item.items()),
            # In the order one report rates them (the flat and tiered parts are merged back).
            [(c.line, c.usage, c.quantity, c.tier, c.list_cost, c.cost) for c in r.charges],
        )
        for r in report.rows
    ]


@pytest.mark.parametrize("per", ["day", "week", "month"])
@pytest.mark.parametrize(
    "by", [("tenant",), ("cluster", "namespace", "item"), ("tenant", "project", "cluster", "namespace", "item")]
)
def test_bucketed_report_is_the_report(
    filled: Ledger, book: PriceBook, display: Config, per: str, by: tuple[str, ...]
) -> None:
    service = CostService(filled, book, display)
    for start, end in ((NOV, DEC), (NOV.replace(day=10), NOV.replace(day=20))):
        query = CostQuery(start, end, step=Per.parse(per))
        got, _rows_json = service.report(query, Scope(), by)
        want = build_report(filled, book, display, start, end, by=by, per=per)
        assert _rows(got) == _rows(want)
        assert got.total == want.total and got.unpriced == want.unpriced


def _part_keys(service: CostService) -> dict[tuple[object, ...], object]:
    """The in-memory bucket parts: keys (columns, step, tenants, items, start, end, part) — the
    merged buckets' keys have no part marker (one element fewer)."""
    return {k: v for k, v in service.bucket_cache._entries.items() if len(k) == 7}


def test_without_a_cache_the_report_is_the_report(filled: Ledger, book: PriceBook, display: Config) -> None:
    """``server.report_cache: 0``: one report over the whole range, nothing kept anywhere."""
    service = CostService(filled, book, display, ReportCache(0), ReportCache(0), store=False)
    query = CostQuery(NOV, DEC, step=Per.day)
    got, _ = service.report(query, Scope(), ("tenant",))
    assert _rows(got) == _rows(build_report(filled, book, display, NOV, DEC, by="tenant", per="day"))
    with filled.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(report_buckets)).scalar_one() == 0


def test_a_write_recomputes_only_what_depends_on_its_day(filled: Ledger, book: PriceBook, display: Config) -> None:
    service = CostService(filled, book, display)
    query = CostQuery(NOV, DEC, step=Per.day)
    service.report(query, Scope(), ("tenant",))
    # 30 day buckets computed, each in two parts: its flat-priced items, and its tiered ones
    # (CPU, whose tier counts the month so far).
    before = _part_keys(service)
    assert len(before) == 30 * 2
    # acme uses 100 more core-hours on the 16th: the CPU tier (0.04 up to 100, then 0.03) moves,
    # so the tiered part of the 16th and of every later day of November is recomputed, and the
    # flat part of the 16th only; the rest is reused.
    filled.write([record("acme", "cpu_core_hours", hour(16, 11), "100", name="train-1")])
    got, _ = service.report(query, Scope(), ("tenant",))
    after = service.bucket_cache._entries
    reused = [k for k in before if after.get(k) is not None and after[k] is before[k]]
    assert sorted(k[4].day for k in reused if k[-1][0]) == list(range(1, 16))  # type: ignore[attr-defined,index]
    assert sorted(k[4].day for k in reused if not k[-1][0]) == [d for d in range(1, 31) if d != 16]  # type: ignore[attr-defined,index]
    want = build_report(filled, book, display, NOV, DEC, by="tenant", per="day")
    assert _rows(got) == _rows(want)
    # acme's 16th: 70 + 100 = 170 core-h on top of 60 on the 15th: 40 at 0.04 and 130 at 0.03 = 5.50,
    # less 10 % = 4.95 — plus its GPU (8 h × 3.50 × 0.9 = 25.20) = 30.15.
    sixteenth = [r for r in got.rows if r.period.start == NOV.replace(day=16) and r.group["tenant"] == "acme"]
    assert sixteenth[0].cost == 30_150_000
    assert sixteenth[0].usage_by_item[("compute", "cpu_core_hours", "h")] == Decimal(170)


def _matches(report: Report) -> list[object]:
    return [c.match for r in report.rows for c in r.charges]


@pytest.mark.parametrize("by", [("tenant",), DETAIL_BY])
def test_a_restarted_server_reads_the_stored_buckets(
    filled: Ledger, book: PriceBook, display: Config, by: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bucket parts rated by one server are kept in ``server_report_buckets``: a new server
    process (or another replica) on the same ledger answers from them without rating anything,
    with the figures, charges and price matches ``build_report`` makes; a part whose days
    changed since it was stored is rated again, the others are still read."""
    query = CostQuery(NOV, DEC, step=Per.day)
    first = CostService(filled, book, display)
    _report, plain = first.report(query, Scope(), by)
    _report, priced = first.report(query, Scope(), by, prices=True)
    first.settle()  # buckets are stored off the request's path
    want = build_report(filled, book, display, NOV, DEC, by=by, per="day")

    rated: list[tuple[object, object]] = []
    real = costs_module.build_report

    def counting(*args: object, **kwargs: object) -> Report:
        rated.append((args[3], args[4]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(costs_module, "build_report", counting)
    restarted = CostService(filled, book, display)
    got, rows = restarted.report(query, Scope(), by)
    assert rated == []
    # The API rows are stored with the bucket; they are the ones the first server made.
    assert rows == plain and restarted.report(query, Scope(), by, prices=True)[1] == priced
    assert _rows(got) == _rows(want) and got.unpriced == want.unpriced
    assert _matches(got) == _matches(want)

    # A correction on the 16th in the ledger (written by anyone): the days from the 16th on
    # depend on it (their CPU tier counts the month so far); a third server rates them again —
    # their flat items and their tiered items, one report each — and reads Nov 1–15 from the store.
    filled.write([record("acme", "cpu_core_hours", hour(16, 11), "100", name="train-1")])
    third = CostService(filled, book, display)
    got, _ = third.report(query, Scope(), by)
    assert rated == [(NOV.replace(day=16), DEC), (NOV.replace(day=16), DEC)]
    want = build_report(filled, book, display, NOV, DEC, by=by, per="day")
    assert _rows(got) == _rows(want) and _matches(got) == _matches(want)
    # And what it rated is stored: a fourth server rates nothing.
    third.settle()
    rated.clear()
    got, _ = CostService(filled, book, display).report(query, Scope(), by)
    assert rated == [] and _rows(got) == _rows(want) and _matches(got) == _matches(want)


def test_stored_buckets_are_per_price_book(filled: Ledger, book: PriceBook, display: Config) -> None:
    """A server with another price book (or display config) never reads the first one's buckets."""
    query = CostQuery(NOV, DEC, step=Per.month)
    service = CostService(filled, book, display)
    first, _ = service.report(query, Scope(), ("tenant",))
    service.settle()
    other = PriceBook.load(SERVER_DATA / "tiered-prices.yaml")
    got, _ = CostService(filled, other, display).report(query, Scope(), ("tenant",))
    want = build_report(filled, other, display, NOV, DEC, by="tenant", per="month")
    assert _rows(got) == _rows(want)
    assert got.total == want.total != first.total


def test_day_versions_move_at_every_fold_and_never_repeat(filled: Ledger) -> None:
    """The versions the stored buckets are keyed by: a fold that changes a day moves its
    version; a rebuild of the rollups from seq 0 moves every day's version again (so a bucket
    stored before the rebuild is never taken for one after it)."""
    refresh_rollups(filled)
    with filled.engine.connect() as conn:
        first = dict(day_versions(conn, NOV, DEC))
    assert sorted(d.day for d in first) == [15, 16]  # the scenario's records are of Nov 15 and 16
    filled.write([record("acme", "cpu_core_hours", hour(16, 11), "100", name="train-1")])
    refresh_rollups(filled)
    with filled.engine.connect() as conn:
        second = dict(day_versions(conn, NOV, DEC))
    assert {d.day for d in first if first[d] != second[d]} == {16}
    assert second[NOV.replace(day=16)] > first[NOV.replace(day=16)]
    rebuild_rollups(filled)
    with filled.engine.connect() as conn:
        third = dict(day_versions(conn, NOV, DEC))
    assert all(third[d] > second[d] for d in second)


def _cpu(cluster: str, tenant: str, day: int, hours: int, per_hour: str) -> list[UsageRecord]:
    return [
        record(tenant, "cpu_core_hours", hour(day, h), per_hour, cluster=cluster, name=f"{tenant}-job")
        for h in range(hours)
    ]


def test_tiers_count_a_tenant_over_every_cluster(ledger: Ledger, tmp_path: Path) -> None:
    """The server prices a tenant present in two clusters on its combined usage — exactly what
    one report over both clusters' records prints — not as two separate tenants."""
    book = PriceBook.load(SERVER_DATA / "tiered-prices.yaml")
    east = _cpu("east", "team-a", 2, 10, "8")  # 10 h × 8 = 80 core-h on Nov 2
    west = [*_cpu("west", "team-a", 3, 5, "10"), *_cpu("west", "team-b", 3, 3, "10")]  # 50 and 30 on Nov 3
    ingest(ledger, east)  # as the two agents deliver them
    ingest(ledger, west)
    service = CostService(ledger, book)

    def costs(kind: str, step: str) -> list[tuple[str, str, int]]:
        _report, rows = service.total(CostQuery(NOV, DEC, step=Per.parse(step), kind=kind), Scope())
        return [(r["start"][:10], r[kind], r["costMicros"]) for r in rows]

    # team-a's month: 80 + 50 = 130 core-h → 100 × 0.04 + 30 × 0.03 = 4.00 + 0.90 = 4.90
    # (priced per cluster it would be 130 × 0.04 = 5.20); team-b: 30 × 0.04 = 1.20.
    assert costs("tenant", "month") == [("2026-11-01", "team-a", 4_900_000), ("2026-11-01", "team-b", 1_200_000)]
    # Per day: Nov 2 east's 80 × 0.04 = 3.20; Nov 3 west's 50 = 20 × 0.04 + 30 × 0.03 = 0.80 + 0.90 = 1.70.
    assert costs("tenant", "day") == [
        ("2026-11-02", "team-a", 3_200_000),
        ("2026-11-03", "team-a", 1_700_000),
        ("2026-11-03", "team-b", 1_200_000),
    ]
    # Per cluster: east 3.20; west 1.70 + 1.20 = 2.90 (sum 6.10 = 4.90 + 1.20).
    assert costs("cluster", "month") == [("2026-11-01", "east", 3_200_000), ("2026-11-01", "west", 2_900_000)]
    # A tenant token sees the same combined pricing for itself.
    _report, mine = service.total(CostQuery(NOV, DEC), Scope("team-a"))
    assert [r["costMicros"] for r in mine] == [4_900_000]

    # One report over the same records in one ledger (a single agent seeing both clusters) prints
    # the same rows, grouped every way the API groups them.
    with Ledger.open(str(tmp_path / "single.db")) as single:
        single.write([*east, *west])
        for by in (("tenant",), ("cluster",), ("cluster", "namespace", "item"), DETAIL_BY):
            for per in ("day", "month"):
                want = build_report(single, book, None, NOV, DEC, by=by, per=per)
                got, _rows_json = service.report(CostQuery(NOV, DEC, step=Per.parse(per)), Scope(), by)
                assert _rows(got) == _rows(want), (by, per)
                assert got.total == want.total == 6_100_000
