"""collect_prometheus into a real ledger (SQLite file and PostgreSQL): periods, watermarks,
resume, backfill bounds, failures that leave nothing half-written, and the --follow loop."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prom_helpers import H10, H11, SEED_FILES, Said, printed

from kubetally.config import Config, load_config
from kubetally.errors import KubetallyError, SourceError
from kubetally.ledger.store import Ledger, Watermark
from kubetally.sources.prometheus.client import PrometheusClient, PrometheusUnreachable, QueryFailed
from kubetally.sources.prometheus.run import RETRY_DELAYS, collect_prometheus, first_start
from kubetally.testing.net import free_port

CLUSTER = "gpu-east"
SEED_ITEMS = ("VgpuCoreUsed", "VgpuMemoryUsed")

SETTINGS = """
collection:
  settle_delay: 2m
  max_backfill: 3h
"""


class Clock:
    """A settable clock; ``sleep`` moves it forward, as time would."""

    def __init__(self, now: datetime, *, stop_after: int | None = None):
        self.now = now
        self.slept: list[float] = []
        self.stop_after = stop_after

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.stop_after is not None and len(self.slept) >= self.stop_after:
            raise KeyboardInterrupt
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def seed_config(write_config: Callable[..., Path], settings: str = SETTINGS) -> Config:
    return load_config([*SEED_FILES, write_config(settings)])


def usage_by_period(ledger: Ledger, item: str = "VgpuCoreUsed") -> dict[datetime, Decimal]:
    totals: dict[datetime, Decimal] = {}
    for record in ledger.records(item=item):
        totals[record.start] = totals.get(record.start, Decimal(0)) + record.usage
    return totals


def marks(ledger: Ledger) -> dict[str, datetime]:
    return {m.item: m.until for m in ledger.watermarks() if m.source == "prometheus" and m.cluster == CLUSTER}


def test_explicit_range_and_rerun_without_duplicates(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config)
    summary = collect_prometheus(
        config=config,
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        start=H10.start,
        end=H11.end,
    )
    # 2 items × 2 hours; H10: 4 core + 3 memory records, H11: 3 + 2 (the 20-minute pod is gone).
    assert (summary.periods, summary.records, summary.inserted) == (4, 12, 12)
    # VgpuCoreUsed per hour, sum aggregation: H10 = 6 + 3 + 3 + 1.5; H11 = 6 + 3 + 1.5.
    assert usage_by_period(ledger) == {H10.start: Decimal("13.5"), H11.start: Decimal("10.5")}
    assert marks(ledger) == {"VgpuCoreUsed": H11.end, "VgpuMemoryUsed": H11.end}
    first_ids = sorted(r.id for r in ledger.records(history=True))

    again = collect_prometheus(
        config=config,
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        start=H10.start,
        end=H11.end,
    )
    assert (again.periods, again.inserted, again.revised, again.unchanged) == (4, 0, 0, 12)
    assert sorted(r.id for r in ledger.records(history=True)) == first_ids  # not one more row


def test_resume_from_the_watermark(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config)
    # 11:01, first run: from now - max_backfill = 08:01, so the hours from 09:00 on. The 09:00 hour
    # is collectable; H10 has closed but its 2-minute settle delay has not passed.
    clock = Clock(datetime(2026, 3, 2, 11, 1, tzinfo=UTC))
    first = collect_prometheus(config=config, ledger=ledger, url=prometheus.url, cluster=CLUSTER, clock=clock)
    assert first.periods == 2  # 09:00 for both items
    assert marks(ledger) == {"VgpuCoreUsed": H10.start, "VgpuMemoryUsed": H10.start}
    # 11:02: H10 is collectable.
    clock.now = datetime(2026, 3, 2, 11, 2, tzinfo=UTC)
    settled = collect_prometheus(config=config, ledger=ledger, url=prometheus.url, cluster=CLUSTER, clock=clock)
    assert settled.periods == 2
    assert marks(ledger) == {"VgpuCoreUsed": H10.end, "VgpuMemoryUsed": H10.end}
    # Down until 13:30; the next run collects H11 and 12:00 (the latter holds 10 minutes of data).
    clock.now = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
    second = collect_prometheus(config=config, ledger=ledger, url=prometheus.url, cluster=CLUSTER, clock=clock)
    assert second.periods == 4
    assert marks(ledger) == {
        "VgpuCoreUsed": H11.end + timedelta(hours=1),
        "VgpuMemoryUsed": H11.end + timedelta(hours=1),
    }
    totals = usage_by_period(ledger)
    assert totals[H10.start] == Decimal("13.5")  # as in the explicit run
    assert totals[H11.start] == Decimal("10.5")
    # 09:00-10:00: data starts at 09:50, so only the 09:55 and 10:00 windows have two samples or
    # more; the three long-running counters (0.5, 0.25, 0.125 core-s/s) give 2 points each:
    # 2 × (0.5 + 0.25 + 0.125) = 1.75.
    assert totals[H10.start - timedelta(hours=1)] == Decimal("1.75")


def test_max_backfill_bounds_a_long_outage(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config)
    ledger.set_watermark(Watermark("prometheus", CLUSTER, "VgpuCoreUsed", datetime(2026, 3, 2, 2, tzinfo=UTC)))
    clock = Clock(datetime(2026, 3, 2, 12, 5, tzinfo=UTC))
    said = Said()
    summary = collect_prometheus(
        config=config,
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        items=["VgpuCoreUsed"],
        warn=said,
        notify=said,
        clock=clock,
    )
    # max_backfill 3h from 12:05 = 09:05 → the hours 10:00 and 11:00 only.
    assert sorted(usage_by_period(ledger)) == [H10.start, H11.start]
    assert marks(ledger) == {"VgpuCoreUsed": H11.end}  # the skipped gap is not retried forever
    assert [w for w in summary.warnings if "max_backfill" in w] == [
        "item 'VgpuCoreUsed': periods from 2026-03-02T02:00:00Z to 2026-03-02T10:00:00Z are older than "
        "collection.max_backfill (3:00:00) and were skipped; collect them with --from 2026-03-02T02:00:00Z "
        "--to 2026-03-02T10:00:00Z while Prometheus still holds them"
    ]
    assert "max_backfill" in printed(said)


def test_first_start() -> None:
    now = datetime(2026, 3, 9, 10, 30, tzinfo=UTC)
    week = timedelta(days=7)
    hour = timedelta(hours=1)
    assert first_start(now=now, watermark=None, max_backfill=week, length=hour) == (now - week, None)
    recent = datetime(2026, 3, 9, 8, tzinfo=UTC)
    assert first_start(now=now, watermark=recent, max_backfill=week, length=hour) == (recent, None)
    start, warning = first_start(now=now, watermark=datetime(2026, 2, 1, tzinfo=UTC), max_backfill=week, length=hour)
    # The first whole hour after now - 7 days (2026-03-02T10:30) is 11:00.
    assert start == datetime(2026, 3, 2, 11, tzinfo=UTC)
    assert warning is not None and "--to 2026-03-02T11:00:00Z" in warning


def test_unreachable_prometheus_writes_nothing(ledger: Ledger, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceError) as caught:
        collect_prometheus(
            config=config,
            ledger=ledger,
            url=url,
            cluster=CLUSTER,
            start=H10.start,
            end=H11.end,
        )
    message = str(caught.value)
    assert message.startswith(f"Prometheus {url}: item 'VgpuCoreUsed' usage.query for {H10}: unreachable (")
    assert message.endswith(
        f"nothing was written for item 'VgpuCoreUsed' period {H10}; the next run resumes from 2026-03-02T10:00:00Z"
    )
    assert list(ledger.records(history=True)) == [] and marks(ledger) == {}


def test_a_failure_midway_keeps_finished_periods_and_resumes_exactly(
    ledger: Ledger,
    prometheus,
    write_config,  # type: ignore[no-untyped-def]
) -> None:
    good = seed_config(write_config)
    broken_item = (
        SEED_FILES[0]
        .read_text()
        .replace("avg_over_time(vgpu_memory_usage_bytes{}[5m])", "avg_over_time(vgpu_memory_usage_bytes{}[5m]")
    )
    broken = load_config([write_config(broken_item, "broken.yaml"), SEED_FILES[1], write_config(SETTINGS)])
    with pytest.raises(SourceError, match=r"item 'VgpuMemoryUsed' usage\.query for .*HTTP 400 bad_data"):
        collect_prometheus(
            config=broken,
            ledger=ledger,
            url=prometheus.url,
            cluster=CLUSTER,
            start=H10.start,
            end=H11.end,
        )
    # Periods run in time order, items in config order: VgpuCoreUsed H10 was written, then
    # VgpuMemoryUsed H10 failed and stopped the run.
    assert marks(ledger) == {"VgpuCoreUsed": H10.end}
    assert {r.item for r in ledger.records()} == {"VgpuCoreUsed"}
    # Fixed config, resumed from the watermarks at 12:05: each item continues where it stopped.
    clock = Clock(datetime(2026, 3, 2, 12, 5, tzinfo=UTC))
    resumed = collect_prometheus(config=good, ledger=ledger, url=prometheus.url, cluster=CLUSTER, clock=clock)
    assert {name: p.periods for name, p in resumed.items.items()} == {
        "VgpuCoreUsed": 1,  # H11
        "VgpuMemoryUsed": 2,  # H10 was never written (max_backfill 3h reaches back to 09:05)
    }
    assert marks(ledger) == {"VgpuCoreUsed": H11.end, "VgpuMemoryUsed": H11.end}
    # VgpuMemoryUsed H10 = 12 × 2 GiB + 4 × 1 GiB + 12 × 0.5 GiB = 36507222016
    assert usage_by_period(ledger, "VgpuMemoryUsed")[H10.start] == Decimal(36507222016)


def test_a_later_range_does_not_hide_a_gap(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config)
    ledger.set_watermark(Watermark("prometheus", CLUSTER, "VgpuCoreUsed", datetime(2026, 3, 2, 8, tzinfo=UTC)))
    summary = collect_prometheus(
        config=config,
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        items=["VgpuCoreUsed"],
        start=H11.start,
        end=H11.end,
    )
    assert summary.periods == 1
    assert marks(ledger) == {"VgpuCoreUsed": datetime(2026, 3, 2, 8, tzinfo=UTC)}  # 08:00-11:00 still missing
    assert "its watermark stays at 2026-03-02T08:00:00Z" in summary.warnings[0]


def test_unknown_item_is_refused(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KubetallyError, match=r"--item 'Nope': no such item \(known: VgpuCoreUsed, VgpuMemoryUsed\)"):
        collect_prometheus(
            config=seed_config(write_config),
            ledger=ledger,
            url=prometheus.url,
            cluster=CLUSTER,
            items=["Nope"],
        )


def test_follow_collects_each_period_as_it_closes(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config)
    clock = Clock(datetime(2026, 3, 2, 11, 5, tzinfo=UTC), stop_after=2)
    said = Said()
    summary = collect_prometheus(
        config=config,
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        start=H10.start,
        follow=True,
        warn=said,
        notify=said,
        clock=clock,
        sleep=clock.sleep,
    )
    # 11:05: H10 collected; sleep until 12:02 (H11 closes at 12:00 + 2m settle) = 57 min; collect H11;
    # sleep until 13:02 = 60 min; then Ctrl-C.
    assert clock.slept == [57 * 60.0, 60 * 60.0]
    assert summary.interrupted
    assert sorted(usage_by_period(ledger)) == [H10.start, H11.start, H11.end]
    assert marks(ledger)["VgpuCoreUsed"] == H11.end + timedelta(hours=1)
    assert "stopped" in printed(said)


def test_follow_stops_at_to(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(datetime(2026, 3, 2, 11, 5, tzinfo=UTC))
    summary = collect_prometheus(
        config=seed_config(write_config),
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        start=H10.start,
        end=H11.end,
        follow=True,
        clock=clock,
        sleep=clock.sleep,
    )
    assert clock.slept == [57 * 60.0] and not summary.interrupted
    assert sorted(usage_by_period(ledger)) == [H10.start, H11.start]


class FlakyClient(PrometheusClient):
    """The real client, made to fail its first ``failures`` calls after ``after`` calls."""

    def __init__(self, url: str, *, after: int, failures: int):
        super().__init__(url, timeout=30)
        self.calls = 0
        self.after = after
        self.failures = failures

    def query_range_raw(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.calls += 1
        if self.after < self.calls <= self.after + self.failures:
            raise PrometheusUnreachable("Prometheus (test): unreachable (injected)")
        return super().query_range_raw(*args, **kwargs)


def test_follow_rides_out_a_prometheus_outage(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    # One query at a time: which calls fail is counted in the order they are made.
    config = seed_config(write_config, SETTINGS + "prometheus:\n  max_concurrent_queries: 1\n")
    # First pass (H10): usage + labels for 2 items + 1 project query = 5 calls; then 2 failures.
    client = FlakyClient(prometheus.url, after=5, failures=2)
    clock = Clock(datetime(2026, 3, 2, 11, 5, tzinfo=UTC))
    with client:
        summary = collect_prometheus(
            config=config,
            ledger=ledger,
            url=prometheus.url,
            cluster=CLUSTER,
            start=H10.start,
            end=H11.end,
            follow=True,
            clock=clock,
            sleep=clock.sleep,
            client=client,
        )
    # Sleep to 12:02, fail, back off 5 s, fail, back off 15 s, then succeed.
    assert clock.slept == [57 * 60.0, RETRY_DELAYS[0], RETRY_DELAYS[1]]
    assert len([w for w in summary.warnings if "injected" in w]) == 2
    assert usage_by_period(ledger) == {H10.start: Decimal("13.5"), H11.start: Decimal("10.5")}


def test_follow_fails_fast_on_the_first_pass(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    broken = SEED_FILES[0].read_text().replace("vgpu_core_labels{}", "vgpu_core_labels{")
    config = load_config([write_config(broken, "broken.yaml"), SEED_FILES[1], write_config(SETTINGS)])
    clock = Clock(datetime(2026, 3, 2, 11, 5, tzinfo=UTC))
    with pytest.raises(QueryFailed, match=r"item 'VgpuCoreUsed' labels\.query"):
        collect_prometheus(
            config=config,
            ledger=ledger,
            url=prometheus.url,
            cluster=CLUSTER,
            start=H10.start,
            follow=True,
            clock=clock,
            sleep=clock.sleep,
        )
    assert clock.slept == []


def test_first_start_with_max_backfill_at_or_below_one_period() -> None:
    hour = timedelta(hours=1)
    now = datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
    # now - 1 h = 10:30 lies inside the last closed hour (10:00–11:00, settled at 11:02): that hour
    # is still collected, or no whole period would ever start after the bound.
    for backfill in (hour, timedelta(minutes=30), timedelta(minutes=1)):
        assert first_start(
            now=now, watermark=None, max_backfill=backfill, length=hour, settle=timedelta(minutes=2)
        ) == (
            datetime(2026, 3, 2, 10, tzinfo=UTC),
            None,
        )
    # At 11:01 the 10:00 hour has not settled (2 min): the 09:00 hour is the last closed one.
    early = datetime(2026, 3, 2, 11, 1, tzinfo=UTC)
    assert first_start(now=early, watermark=None, max_backfill=hour, length=hour, settle=timedelta(minutes=2)) == (
        datetime(2026, 3, 2, 9, tzinfo=UTC),
        None,
    )


def test_an_agent_ticking_with_max_backfill_of_one_period_collects_every_hour(  # type: ignore[no-untyped-def]
    ledger: Ledger, prometheus, write_config
) -> None:
    """The agent calls collect_prometheus every tick with max_backfill 1h: H10 and H11 arrive."""
    config = seed_config(write_config, "collection:\n  settle_delay: 2m\n  max_backfill: 1h\n")
    clock = Clock(datetime(2026, 3, 2, 11, 30, tzinfo=UTC))
    written = []
    for minute in (30, 45, 63, 90):  # 11:30, 11:45, 12:03, 12:30
        clock.now = datetime(2026, 3, 2, 11, 0, tzinfo=UTC) + timedelta(minutes=minute)
        summary = collect_prometheus(config=config, ledger=ledger, url=prometheus.url, cluster=CLUSTER, clock=clock)
        written.append(summary.periods)
    # 11:30: H10 for both items; 11:45: nothing new; 12:03: H11 for both; 12:30: nothing new.
    assert written == [2, 0, 2, 0]
    # The same totals as the explicit run of test_explicit_range_and_rerun_without_duplicates.
    assert usage_by_period(ledger) == {H10.start: Decimal("13.5"), H11.start: Decimal("10.5")}
    assert marks(ledger) == {"VgpuCoreUsed": H11.end, "VgpuMemoryUsed": H11.end}


def _rows(db: str) -> list[tuple[object, ...]]:
    """Every ledger row in write order (``seq``), all columns but the write time."""
    from sqlalchemy import text

    with Ledger.open(db) as opened, opened.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM records ORDER BY seq")).mappings().all()
    return [tuple(v for k, v in row.items() if k != "recorded_at") for row in rows]


def test_concurrent_queries_write_the_same_ledger_as_one_at_a_time(prometheus, write_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ledgers = {}
    for bound in (1, 4):
        config = seed_config(write_config, SETTINGS + f"prometheus:\n  max_concurrent_queries: {bound}\n")
        assert config.settings.prometheus.max_concurrent_queries == bound
        db = str(tmp_path / f"bound-{bound}.db")
        with Ledger.open(db) as ledger:
            summary = collect_prometheus(
                config=config, ledger=ledger, url=prometheus.url, cluster=CLUSTER, start=H10.start, end=H11.end
            )
            # As in test_explicit_range_and_rerun_without_duplicates: 2 items × 2 hours, 7 + 5
            # records; VgpuCoreUsed H10 = 6 + 3 + 3 + 1.5, H11 = 6 + 3 + 1.5.
            assert (summary.periods, summary.records, summary.inserted) == (4, 12, 12)
            assert usage_by_period(ledger) == {H10.start: Decimal("13.5"), H11.start: Decimal("10.5")}
        ledgers[bound] = _rows(db)
    # Same ids, revisions, quantities, labels, and the same seq order (written in plan order).
    assert len(ledgers[4]) == 12
    assert ledgers[4] == ledgers[1]


class FailingMemory(PrometheusClient):
    """The real client, refusing every query of the memory item."""

    def query_range_raw(self, query, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        if "vgpu_memory_usage_bytes" in query:
            raise QueryFailed("Prometheus (test): item 'VgpuMemoryUsed' refused (injected)", "injected")
        return super().query_range_raw(query, *args, **kwargs)


def test_concurrent_failure_writes_only_the_periods_before_it(ledger: Ledger, prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = seed_config(write_config, SETTINGS + "prometheus:\n  max_concurrent_queries: 4\n")
    # Plan order: core H10, memory H10, core H11, memory H11 — all four in flight at once.
    with FailingMemory(prometheus.url, timeout=30) as client, pytest.raises(QueryFailed) as caught:
        collect_prometheus(
            config=config,
            ledger=ledger,
            url=prometheus.url,
            cluster=CLUSTER,
            start=H10.start,
            end=H11.end,
            client=client,
        )
    assert "nothing was written for item 'VgpuMemoryUsed' period" in str(caught.value)
    # Only core H10 (6 + 3 + 3 + 1.5) was written; core H11 was fetched but comes after the failure.
    assert usage_by_period(ledger) == {H10.start: Decimal("13.5")}
    assert list(ledger.records(item="VgpuMemoryUsed")) == []
    assert marks(ledger) == {"VgpuCoreUsed": H10.end}
