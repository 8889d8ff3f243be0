"""``kubetally collect --prometheus``: every closed period of every item into the ledger.

Which periods (per item, each with its own period length):

* a period ``[T, T+P)`` is *closed* once ``now ≥ T+P+settle_delay`` (the item's own
  ``settle_delay`` or ``collection.settle_delay``), so late scrapes and rule evaluations are in;
* with ``--from``/``--to``: every closed period inside ``[from, to)`` — re-collecting is safe,
  the ledger turns identical records into no-ops and changed ones into revisions;
* without ``--from``: from the item's watermark (source ``prometheus``, cluster, item) on,
  i.e. everything missed while the collector was down, but never further back than
  ``collection.max_backfill`` (default 7 days; older data may be gone from Prometheus, and
  a gap that large needs an operator's decision — it is reported, with the ``--from`` that
  fills it). A first run with no watermark starts ``max_backfill`` ago.

Up to ``prometheus.max_concurrent_queries`` item-periods (default 4) are queried at once, in
threads, so Prometheus evaluates the next queries while this process parses and writes; results
are written strictly in plan order (by period start, then item), so the ledger is the same row
for row whatever the bound.

Each item × period is written in one transaction together with its watermark, so a failure
(Prometheus down, a query error, Ctrl-C, a killed process) leaves every period either complete
or absent, and the next run starts exactly at the first missing one. A watermark only moves
over contiguous periods: collecting an explicit later range after a gap does not hide the gap.

``--follow`` repeats this whenever the next period of any item closes, sleeping in between,
until Ctrl-C (or ``--to``). After the first pass a Prometheus failure is reported and retried
with backoff instead of ending the loop: a long-running collector must ride out a Prometheus
restart. The first pass fails fast, so a wrong URL or a bad query is seen at once.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from kubetally.config import CollectionItem, Config
from kubetally.errors import KubetallyError, SourceError
from kubetally.ledger.store import Ledger, Watermark
from kubetally.periods import Period, floor_to, format_time, periods_between, utc
from kubetally.sources.prometheus.client import PrometheusClient, PrometheusUnreachable, QueryFailed
from kubetally.sources.prometheus.collector import SOURCE, CollectedPeriod, Collector, TenantOf

log = logging.getLogger("kubetally.prometheus")

#: ``progress(done, total, description)``: called before each item-period of a pass and once
#: at its end (``done == total``), so a command line can draw a progress bar.
ProgressHook = Callable[[int, int, str], None]

#: Backoff between failed passes in ``--follow`` mode (seconds), the last one repeating.
RETRY_DELAYS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class ItemProgress:
    """Per-item counters of one run."""

    item: str
    periods: int = 0
    records: int = 0
    inserted: int = 0
    revised: int = 0
    unchanged: int = 0
    watermark: datetime | None = None


@dataclass
class RunSummary:
    """What a run (one-shot or ``--follow``) did, for the printed summary and for tests."""

    items: dict[str, ItemProgress] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    passes: int = 0
    interrupted: bool = False

    def _total(self, attribute: str) -> int:
        return sum(getattr(p, attribute) for p in self.items.values())

    @property
    def periods(self) -> int:
        return self._total("periods")

    @property
    def records(self) -> int:
        return self._total("records")

    @property
    def inserted(self) -> int:
        return self._total("inserted")

    @property
    def revised(self) -> int:
        return self._total("revised")

    @property
    def unchanged(self) -> int:
        return self._total("unchanged")


@dataclass
class _ItemState:
    item: CollectionItem
    settle: timedelta
    cursor: datetime | None  # next period start to collect (None: decided by the first plan)
    watermark: datetime | None
    gap_reported: bool = False


def select_items(config: Config, names: Sequence[str] | None) -> list[CollectionItem]:
    if not names:
        return list(config.items)
    known = {item.item: item for item in config.items}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise KubetallyError(
            f"--item {', '.join(repr(n) for n in unknown)}: no such item (known: {', '.join(sorted(known))})"
        )
    return [known[name] for name in dict.fromkeys(names)]


def first_start(
    *,
    now: datetime,
    watermark: datetime | None,
    max_backfill: timedelta,
    length: timedelta,
    settle: timedelta = timedelta(0),
) -> tuple[datetime, str | None]:
    """Where a resumed item starts, and a warning when ``max_backfill`` cuts off a gap.

    The last period closed at ``now`` (its end + ``settle`` passed) is always inside the bound:
    with ``max_backfill`` at or below one period, ``now - max_backfill`` would otherwise fall
    inside that period on every run, so no whole period ever started after it and an agent
    calling this every tick would never collect anything."""
    last_closed = floor_to(now - settle, length) - length
    bound = min(now - max_backfill, last_closed)
    if watermark is None:
        return bound, None
    if watermark >= bound:
        return watermark, None
    first_kept = next(periods_between(bound, bound + 2 * length, length)).start
    return first_kept, (
        f"periods from {format_time(watermark)} to {format_time(first_kept)} are older than "
        f"collection.max_backfill ({max_backfill}) and were skipped; collect them with "
        f"--from {format_time(watermark)} --to {format_time(first_kept)} while Prometheus still holds them"
    )


def _with_resume_point(exc: SourceError, where: str) -> SourceError:
    """The same kind of error, its message extended by where collection stands."""
    message = f"{exc} — {where}"
    if isinstance(exc, QueryFailed):
        return QueryFailed(message, exc.reason)
    if isinstance(exc, PrometheusUnreachable):
        return PrometheusUnreachable(message)
    return SourceError(message)


@contextmanager
def _quiet_gc(threshold: int = 100_000) -> Iterator[None]:
    """Fewer cycle collections while answers are decoded.

    A 10,000-series range answer is ~130,000 small lists and dicts, all acyclic and freed by
    reference counting; with the default first threshold (700) the cycle collector walks them
    again and again while ``json`` builds them, which tripled the decoding time."""
    previous = gc.get_threshold()
    gc.set_threshold(max(threshold, previous[0]), previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class PrometheusRun:
    """The collection loop; :func:`collect_prometheus` is its plain entry. It returns results
    and reports through callbacks (``warn``, ``notify``, ``progress``); it never draws."""

    def __init__(
        self,
        *,
        config: Config,
        ledger: Ledger,
        client: PrometheusClient,
        cluster: str,
        items: list[CollectionItem],
        tenant_of: TenantOf | None = None,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], None] | None = None,
        warn: Callable[[str], None] | None = None,
        notify: Callable[[str], None] | None = None,
        progress: ProgressHook | None = None,
        summary: RunSummary | None = None,
    ):
        self.config = config
        self.ledger = ledger
        self.client = client
        self.cluster = cluster
        self.warn = warn if warn is not None else log.warning
        self.notify = notify if notify is not None else log.info
        self.progress = progress
        self.clock = clock or (lambda: datetime.now(UTC))
        self.sleep = sleep or time.sleep
        settings = config.settings.collection
        self.max_backfill = settings.max_backfill
        self.concurrency = config.settings.prometheus.max_concurrent_queries
        self.collector = Collector(client, cluster=cluster, project_label=settings.project_label, tenant_of=tenant_of)
        self.summary = summary if summary is not None else RunSummary()
        self.states = [
            _ItemState(
                item=item,
                settle=item.settle_delay if item.settle_delay is not None else settings.settle_delay,
                cursor=None,
                watermark=ledger.watermark(SOURCE, cluster, item.item),
            )
            for item in items
        ]
        for state in self.states:
            self.summary.items[state.item.item] = ItemProgress(state.item.item, watermark=state.watermark)

    # -- planning ------------------------------------------------------------------------------

    def _plan(self, now: datetime, start: datetime | None, end: datetime | None) -> list[tuple[Period, _ItemState]]:
        tasks: list[tuple[Period, _ItemState]] = []
        for state in self.states:
            length = state.item.period.length
            if state.cursor is None:
                if start is not None:
                    state.cursor = start
                else:
                    state.cursor, warning = first_start(
                        now=now,
                        watermark=state.watermark,
                        max_backfill=self.max_backfill,
                        length=length,
                        settle=state.settle,
                    )
                    if warning:
                        # The operator is told about the gap; collection continues after it.
                        state.watermark = state.cursor
                        self._warn(f"item {state.item.item!r}: {warning}")
            upper = now - state.settle
            if end is not None:
                upper = min(upper, end)
            tasks.extend((period, state) for period in periods_between(state.cursor, upper, length))
        order = {id(state): index for index, state in enumerate(self.states)}
        tasks.sort(key=lambda task: (task[0].start, order[id(task[1])]))
        return tasks

    def _next_wake(self, end: datetime | None) -> datetime | None:
        """When the next period of any item becomes collectable (None: nothing left before --to)."""
        wakes = []
        for state in self.states:
            assert state.cursor is not None
            period_start = next(
                periods_between(state.cursor, state.cursor + 2 * state.item.period.length, state.item.period.length)
            ).start
            period_end = period_start + state.item.period.length
            if end is not None and period_end > end:
                continue
            wakes.append(period_end + state.settle)
        return min(wakes, default=None)

    # -- doing ---------------------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        # A diagnostic, not data: to the log (stderr, text or JSON), never into the summary table.
        self.summary.warnings.append(message)
        self.warn(message)

    def _collected(
        self, tasks: list[tuple[Period, _ItemState]]
    ) -> Generator[CollectedPeriod | SourceError, None, None]:
        """Each task's collected period (or its error), in task order.

        Up to ``self.concurrency`` tasks are in flight at once; the next is started only when the
        oldest is handed out, so memory holds at most that many periods' answers. When the
        caller stops early (a failed period, Ctrl-C), tasks not started are cancelled and the
        ones running finish on their own (each query is bounded by ``prometheus.timeout``)."""
        if self.concurrency <= 1:
            for period, state in tasks:
                try:
                    yield self.collector.collect(state.item, period)
                except SourceError as exc:
                    yield exc
            return

        def run(period: Period, state: _ItemState) -> CollectedPeriod | SourceError:
            try:
                return self.collector.collect(state.item, period)
            except SourceError as exc:
                return exc

        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="kubetally-prometheus")
        pending: deque[Future[CollectedPeriod | SourceError]] = deque()
        upcoming = iter(tasks)
        try:
            for period, state in upcoming:
                pending.append(pool.submit(run, period, state))
                if len(pending) >= self.concurrency:
                    break
            while pending:
                result = pending.popleft().result()
                for period, state in upcoming:
                    pending.append(pool.submit(run, period, state))
                    break
                yield result
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _write_one(self, period: Period, state: _ItemState, collected: CollectedPeriod | SourceError) -> None:
        item = state.item
        if isinstance(collected, SourceError):
            raise _with_resume_point(
                collected,
                f"nothing was written for item {item.item!r} period {period}; the next run resumes from "
                f"{format_time(state.watermark or period.start)}",
            ) from None
        for warning in collected.warnings:
            self._warn(warning)
        marks = []
        if state.watermark is None or period.start <= state.watermark:
            marks.append(Watermark(SOURCE, self.cluster, item.item, period.end))
        elif not state.gap_reported:
            state.gap_reported = True
            self._warn(
                f"item {item.item!r}: its watermark stays at {format_time(state.watermark)} because the "
                f"periods before {format_time(period.start)} were not collected; run without --from to fill them"
            )
        result = self.ledger.write(collected.records, watermarks=marks)
        if marks and (state.watermark is None or period.end > state.watermark):
            state.watermark = period.end
        state.cursor = max(state.cursor or period.end, period.end)
        progress = self.summary.items[item.item]
        progress.periods += 1
        progress.records += len(collected.records)
        progress.inserted += result.inserted
        progress.revised += result.revised
        progress.unchanged += result.unchanged
        progress.watermark = state.watermark

    def run_pass(self, start: datetime | None = None, end: datetime | None = None) -> int:
        """Collect every collectable period now; returns how many item-periods were written."""
        tasks = self._plan(utc(self.clock()), start, end)
        self.summary.passes += 1
        if not tasks:
            return 0
        results = self._collected(tasks)
        try:
            with _quiet_gc():
                for done, ((period, state), collected) in enumerate(zip(tasks, results, strict=True)):
                    if self.progress is not None:
                        self.progress(done, len(tasks), f"{state.item.item} {format_time(period.start)}")
                    self._write_one(period, state, collected)
        finally:
            results.close()  # an early stop cancels what has not started
        if self.progress is not None:
            self.progress(len(tasks), len(tasks), "")
        return len(tasks)

    def follow(self, start: datetime | None, end: datetime | None) -> None:
        """Collect, then sleep until the next period closes (plus settle), until Ctrl-C or --to."""
        self.run_pass(start, end)
        failures = 0
        while True:
            wake = self._next_wake(end)
            if wake is None:
                return
            delay = (wake - utc(self.clock())).total_seconds()
            if failures:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]
            if delay > 0:
                self.notify(f"next collection at {format_time(utc(self.clock()) + timedelta(seconds=delay))}")
                self.sleep(delay)
            try:
                written = self.run_pass(None, end)
            except SourceError as exc:
                failures += 1
                self._warn(f"{exc}; retrying in {RETRY_DELAYS[min(failures, len(RETRY_DELAYS)) - 1]:g}s")
                continue
            failures = 0
            if written:
                self.notify(f"{format_time(utc(self.clock()))}: collected {written} item-period(s)")


def collect_prometheus(
    *,
    config: Config,
    ledger: Ledger,
    url: str,
    cluster: str,
    start: datetime | None = None,
    end: datetime | None = None,
    items: Sequence[str] | None = None,
    follow: bool = False,
    tenant_of: TenantOf | None = None,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] | None = None,
    client: PrometheusClient | None = None,
    warn: Callable[[str], None] | None = None,
    notify: Callable[[str], None] | None = None,
    progress: ProgressHook | None = None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Collect every closed period of the configured items from Prometheus into ``ledger``.

    ``tenant_of`` maps a namespace to its tenant (Kubernetes tenancy rules); ``clock``,
    ``sleep`` and ``client`` exist so tests can drive the loop without waiting for real hours.
    Raises :class:`SourceError` (one-shot, or the first ``--follow`` pass) when Prometheus is
    unreachable or rejects a query; every period written before that stays written, and
    ``summary`` (when the caller passes one, filled in as the run goes) says which.
    """
    selected = select_items(config, items)
    settings = config.settings.prometheus
    own_client = client is None
    if client is None:
        client = PrometheusClient.from_settings(url, settings)
    start = utc(start) if start else None
    end = utc(end) if end else None
    runner = PrometheusRun(
        config=config,
        ledger=ledger,
        client=client,
        cluster=cluster,
        items=selected,
        tenant_of=tenant_of,
        clock=clock,
        sleep=sleep,
        warn=warn,
        notify=notify,
        progress=progress,
        summary=summary,
    )
    try:
        if follow:
            try:
                runner.follow(start, end)
            except KeyboardInterrupt:
                runner.summary.interrupted = True
                runner.notify("stopped")
        else:
            runner.run_pass(start, end)
    finally:
        if own_client:
            client.close()
    return runner.summary
