"""One metering session over a ledger: discovery, observations, and writing closed periods.

``collect --kubernetes`` and the agent are the same machine fed differently: collect does one
discovery and one LIST per resource, then closes periods; the agent keeps feeding watch events
and closes periods as they settle. Both keep the lifetime journal, so a ``collect`` after an agent
(or an agent after a restart) continues from what is known, never from zero.

Period closing writes the records and the journal progress (and the watermark) in one
transaction. A period is closed only when ``now - settle`` has passed its end *and* every metered
resource was confirmed (healthy list/watch) up to its end, so a broken watch holds the watermark
instead of writing a period from partial knowledge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection

from kubetally.config.kubernetes import KubernetesConfig
from kubetally.ledger.store import Ledger, Watermark, WriteResult
from kubetally.periods import Period, floor_to, format_time, periods_between
from kubetally.record import UsageRecord
from kubetally.sources.kubernetes import journal, registry
from kubetally.sources.kubernetes.items import ITEMS, SOURCE, UNIT
from kubetally.sources.kubernetes.meter import meter_periods
from kubetally.sources.kubernetes.tenancy import Discovery, TenantResolver
from kubetally.sources.kubernetes.tracker import KINDS, Frozen, Tracker

log = logging.getLogger("kubetally.kubernetes")

#: Records per ``Ledger.write`` call while closing a period.
WRITE_SLICE = 20_000
#: Watermark of the journal horizon: periods before it are final (their segments are pruned).
HORIZON_SOURCE = "kubernetes.journal"
HORIZON_ITEM = "horizon"


@dataclass
class CloseResult:
    """What one period-closing pass did."""

    periods: list[Period] = field(default_factory=list)
    revisited: list[Period] = field(default_factory=list)
    #: Records metered (written, revised or unchanged); they are not kept: see ``close_periods``.
    records_written: int = 0
    written: WriteResult = field(default_factory=WriteResult)
    until: datetime | None = None
    skipped: list[str] = field(default_factory=list)


def _batches(periods: list[Period], size: int) -> Iterator[list[Period]]:
    for i in range(0, len(periods), max(size, 1)):
        yield periods[i : i + max(size, 1)]


class MeteringSession:
    """Tracker + tenant registry + period writer for one cluster and one ledger."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        cluster: str,
        config: KubernetesConfig,
        settle: timedelta,
        max_backfill: timedelta,
        project_label: str = "",
        warn: Callable[[str], None] | None = None,
    ):
        self.ledger = ledger
        self.cluster = cluster
        self.config = config
        self.settle = settle
        self.max_backfill = max_backfill
        self.project_label = project_label
        self.period_kind = config.period_kind
        self.warn = warn or (lambda message: log.warning("%s", message))
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.tracker = Tracker(cluster=cluster, config=config, resolver=TenantResolver([], {}, config), warn=self.warn)
        self._resolver_fingerprint: object = None
        #: Periods metered and committed per transaction (see :meth:`close_periods`).
        self.batch_periods = 1
        #: Called after each committed batch with (periods done, periods in all, records so far).
        self.progress: Callable[[int, int, int], None] | None = None

    # -- start -----------------------------------------------------------------------------

    def begin(self) -> None:
        """Load open segments, known tenants, the watermark and the journal horizon."""
        with self.ledger.transaction() as conn:
            self.tracker.load(conn)
            known = registry.load(conn, self.cluster)
        self._set_resolver(registry.active_tenants(known), None)
        self.tracker.watermark = self.watermark()
        self.tracker.horizon = self.ledger.watermark(HORIZON_SOURCE, self.cluster, HORIZON_ITEM)

    def watermark(self) -> datetime | None:
        """Exclusive end of the last written period (all items move together)."""
        marks = [self.ledger.watermark(SOURCE, self.cluster, item) for item in ITEMS]
        present = [m for m in marks if m is not None]
        return min(present) if present else None

    # -- tenancy ---------------------------------------------------------------------------

    def _set_resolver(self, tenants: Sequence[Any], at: datetime | None) -> None:
        resolver = TenantResolver(tenants, self.namespace_labels, self.config, project_label=self.project_label)
        fingerprint = (
            tuple(sorted((t.id, t.namespace, t.project) for t in tenants)),
            tuple(sorted((ns, tuple(sorted(labels.items()))) for ns, labels in self.namespace_labels.items())),
        )
        if fingerprint == self._resolver_fingerprint:
            return
        self._resolver_fingerprint = fingerprint
        if at is None:
            self.tracker.deriver.resolver = resolver
        else:
            self.tracker.set_resolver(resolver, at)

    @contextmanager
    def journal_transaction(self) -> Iterator[Connection]:
        """A ledger transaction that flushes the tracker; its in-memory bookkeeping follows the
        outcome, so a failed commit is written again on the next flush, never lost."""
        try:
            with self.ledger.transaction() as conn:
                yield conn
        except BaseException:
            self.tracker.flush_failed()
            raise
        self.tracker.flush_committed()

    def apply_discovery(self, discovery: Discovery, at: datetime, *, namespaces_listed: bool = True) -> None:
        """Record a discovery pass (offboarding rules in :mod:`registry`) and re-attribute."""
        for problem in discovery.problems:
            self.warn(problem)
        if namespaces_listed:
            self.namespace_labels = discovery.namespace_labels
        with self.journal_transaction() as conn:
            change = registry.update_registry(conn, self.cluster, discovery, at, self.config.tenancy.offboard_grace)
            known = registry.load(conn, self.cluster)
            self._set_resolver(registry.active_tenants(known), at)
            self.tracker.flush(conn)
        for tenant in change.onboarded:
            log.info("tenant onboarded: %s", tenant, extra={"cluster": self.cluster, "tenant": tenant})
        for tenant in change.returned:
            log.info("tenant back: %s", tenant, extra={"cluster": self.cluster, "tenant": tenant})
        for tenant in change.missing:
            log.info(
                "tenant missing from discovery (offboarded after %s): %s",
                self.config.tenancy.offboard_grace,
                tenant,
                extra={"cluster": self.cluster, "tenant": tenant},
            )
        for tenant in change.offboarded:
            log.warning("tenant offboarded: %s", tenant, extra={"cluster": self.cluster, "tenant": tenant})

    # -- observations ----------------------------------------------------------------------

    def resync(self, kind: str, objects: Iterable[Mapping[str, Any] | Frozen], at: datetime) -> None:
        with self.journal_transaction() as conn:
            self.tracker.resync(kind, objects, at, conn)
            self.tracker.flush(conn)

    def event(self, kind: str, event_type: str, obj: Mapping[str, Any], at: datetime) -> None:
        """A watch event (not flushed: :meth:`flush` once per batch of events)."""
        if event_type == "DELETED":
            self.tracker.delete(kind, obj, at)
        else:
            self.tracker.observe(kind, obj, at)

    def flush(self, *, touch: bool = False) -> None:
        with self.journal_transaction() as conn:
            self.tracker.flush(conn)
            if touch:
                self.tracker.touch(conn)

    # -- closing periods -------------------------------------------------------------------

    def closable_until(self, now: datetime) -> datetime | None:
        """Periods ending at or before this may be written; None while some metered resource
        was never synced (nothing may be written from partial knowledge)."""
        until = now - self.settle
        for kind in KINDS:
            confirmed = self.tracker.confirmed.get(kind)
            if confirmed is None:
                return None
            until = min(until, confirmed)
        return until

    def close_periods(
        self, now: datetime, *, start: datetime | None = None, end: datetime | None = None
    ) -> CloseResult:
        """Write every closed period in ``[start, end)`` (default: from the watermark, bounded by
        ``max_backfill``, up to the last closed period) and re-meter written periods that a late
        observation changed. Records, journal and watermark commit together."""
        result = CloseResult()
        self.tracker.release_deferred(now)
        length = self.period_kind.length
        wm = self.tracker.watermark
        horizon = self.tracker.horizon
        if start is None:
            # The period containing now - max_backfill is the first one resumed (the demo's
            # "the hour before" relies on it; Prometheus starts one period later at most).
            earliest = floor_to(now - self.max_backfill, length)
            lower = max(wm, earliest) if wm is not None else earliest
            if wm is not None and wm < earliest:
                result.skipped.append(
                    f"periods before {format_time(earliest)} are beyond max_backfill "
                    f"({self.max_backfill}); not collected"
                )
        else:
            lower = start
        if horizon is not None and lower < horizon:
            result.skipped.append(
                f"periods before the journal horizon {format_time(horizon)} are final; not re-metered"
            )
            lower = horizon
        until = self.closable_until(now)
        if until is None:
            result.skipped.append("not every metered resource is synced yet; no period written")
            until = lower
        if end is not None and end > until:
            result.skipped.append(
                f"periods after {format_time(floor_to(until, length))} are not closed yet "
                f"(now {format_time(now)}, settle {self.settle})"
            )
        upper = until if end is None else min(end, until)
        periods = list(periods_between(lower, upper, length))
        dirty = self.tracker.dirty_since
        revisit: list[Period] = []
        if dirty is not None and wm is not None:
            chosen = {p.start for p in periods}
            revisit = [
                p
                for p in periods_between(floor_to(dirty, length), wm, length)
                if p.start not in chosen and (horizon is None or p.start >= horizon)
            ]
        chosen_starts = {p.start for p in periods}
        result.periods, result.revisited = periods, revisit
        every = sorted(periods + revisit)
        # The journal first, in its own transaction: the periods below are metered from it.
        with self.journal_transaction() as conn:
            self.tracker.flush(conn)
            self.tracker.touch(conn, segments=bool(every))  # an idle tick: the per-kind rows only
            segments = (
                journal.overlapping(conn, self.cluster, every[0].start, every[-1].end, self.tracker.billed_by_seq())
                if every
                else []
            )
        # Then one bounded batch of periods per transaction, freed before the next: memory follows
        # the cluster (its segments, one batch of records), not the window. The watermark moves
        # with each committed batch, so an interrupted backfill resumes after the last one.
        done = 0
        for batch in _batches(every, self.batch_periods):
            with self.journal_transaction() as conn:
                first, last = batch[0].start, batch[-1].end
                relevant = [s for s in segments if s.start < last and (s.end is None or s.end > first)]
                records = meter_periods(relevant, batch, cluster=self.cluster, period_kind=self.period_kind)
                records += self._withdrawn(records, [p for p in batch if wm is not None and p.start < wm])
                new = [p for p in batch if p.start in chosen_starts]
                new_wm = self.tracker.watermark
                if new:
                    new_wm = max(new[-1].end, new_wm) if new_wm is not None else new[-1].end
                marks = [Watermark(SOURCE, self.cluster, item, new_wm) for item in ITEMS] if new_wm else []
                # Written in slices (one transaction still): the driver's rows for a slice at a
                # time, not for the whole period. Ids are unique within a period, so slicing cannot
                # turn a duplicate into a revision.
                written = WriteResult()
                for i in range(0, len(records), WRITE_SLICE):
                    written += self.ledger.write(records[i : i + WRITE_SLICE], conn=conn)
                written += self.ledger.write([], watermarks=marks, conn=conn)
                horizon_after = self._prune(conn, new_wm) if new_wm is not None else self.tracker.horizon
            # Only once committed: a failed transaction leaves the tracker ready to try again.
            result.written += written
            result.records_written += len(records)
            self.tracker.horizon = horizon_after
            if new_wm is not None:
                self.tracker.watermark = result.until = new_wm
            done += len(batch)
            if self.progress is not None:
                self.progress(done, len(every), result.records_written)
            del records
        if self.tracker.dirty_since == dirty:
            self.tracker.dirty_since = None
        return result

    def _withdrawn(self, records: list[UsageRecord], periods: list[Period]) -> list[UsageRecord]:
        """Records written earlier for re-metered periods that no segment produces any more
        (e.g. a pod later known to have finished before the period): written again with usage 0,
        a revision, so consumers see the correction."""
        if not periods:
            return []
        produced = {r.id for r in records}
        out = []
        kinds = {"Node", "Pod", "PersistentVolumeClaim", "Service", "VirtualCluster"}
        for period in periods:
            for old in self.ledger.records(start=period.start, end=period.end, cluster=self.cluster, item=list(ITEMS)):
                if (
                    old.id not in produced
                    and old.unit == UNIT
                    and old.kind in kinds
                    and old.period == self.period_kind
                    and old.usage != 0
                ):
                    out.append(old.model_copy(update={"usage": Decimal(0), "revision": 0}))
        return out

    def _prune(self, conn: Any, watermark: datetime) -> datetime | None:
        """Forget closed segments older than ``journal_retention`` behind the watermark; returns
        the (new) journal horizon."""
        horizon = watermark - self.config.journal_retention
        if self.tracker.horizon is not None and horizon <= self.tracker.horizon:
            return self.tracker.horizon
        journal.prune(conn, self.cluster, horizon)
        self.ledger.write([], watermarks=[Watermark(HORIZON_SOURCE, self.cluster, HORIZON_ITEM, horizon)], conn=conn)
        return horizon
