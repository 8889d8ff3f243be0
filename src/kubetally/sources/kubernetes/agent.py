"""The Kubernetes source of the long-running agent (``kubetally agent``).

Start: load the journal, discover tenants, LIST every metered resource (nodes first) and reconcile
with the journal's open segments — objects that vanished while the agent was down are ended at
their last-seen time, objects still there continue, nothing is doubled. Then one watcher thread
per metered resource keeps the state current (:mod:`watch`), while the main loop:

* applies events in order and flushes them to the journal,
* re-discovers tenants every ``reconcile_interval`` (vBilling ``RECONCILE_INTERVAL``),
* :meth:`KubernetesAgent.tick` writes the periods that have settled.

Scheduling (how often to tick and re-discover, the other per-tick steps such as Prometheus
collection and delivery) belongs to :class:`kubetally.app.agent.AgentRunner`, which owns this
source for the agent's lifetime.

Time comes from an injectable clock (tests pass the simulator's virtual clock); waiting uses the
wall clock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubetally.config import Config
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time
from kubetally.sources.kubernetes.client import METERED, RESOURCES, list_with_retry
from kubetally.sources.kubernetes.lease import Lease, LeaseHeld, new_holder
from kubetally.sources.kubernetes.run import discover_tenants, new_session
from kubetally.sources.kubernetes.session import CloseResult, MeteringSession
from kubetally.sources.kubernetes.tracker import freeze
from kubetally.sources.kubernetes.watch import BOOKMARK, ERROR, HEALTHY, SYNC, Watcher, WatchItem, rv_at_least

log = logging.getLogger("kubetally.agent")

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


class KubernetesAgent:
    """List+watch metering of one cluster into one ledger (see module doc)."""

    def __init__(
        self,
        *,
        config: Config,
        ledger: Ledger,
        cluster: str,
        api_client: Any,
        clock: Clock | None = None,
        holder: str | None = None,
        stop_event: threading.Event | None = None,
    ):
        self.config = config
        self.ledger = ledger
        self.cluster = cluster
        self.api = api_client
        self.clock = clock or wall_clock
        self.session: MeteringSession = new_session(config, ledger, cluster)
        self.settings = self.session.config
        self.queue: queue.Queue[WatchItem] = queue.Queue()
        self.watchers: dict[str, Watcher] = {}
        self.processed_rv: dict[str, str] = {}
        self.stop_event = stop_event or threading.Event()
        self.last_result: CloseResult | None = None
        self.lease = Lease(ledger, cluster, holder or new_holder(), self.settings.writer_lease)
        #: Watch re-lists (SYNC) and watch restarts (ERROR) per resource, for /metrics.
        self.relists: dict[str, int] = dict.fromkeys(METERED, 0)
        self.watch_restarts: dict[str, int] = dict.fromkeys(METERED, 0)
        self.records_written = 0
        self._started = False

    # -- time ------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    @property
    def tenant_of(self) -> Callable[[str], str | None]:
        """namespace → tenant id, for the Prometheus step."""
        return lambda namespace: self.session.tracker.resolver.tenant_for(namespace) or None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Lease, journal, discovery, initial LISTs (synchronous), then the watchers. Waits while
        another process holds the cluster's lease (e.g. the previous agent pod, until it expires)."""
        while True:
            try:
                self.lease.acquire()
                break
            except LeaseHeld as exc:
                log.warning("%s; waiting", exc)
                if self.stop_event.wait(min(30.0, self.settings.writer_lease.total_seconds())):
                    raise
        try:
            self.session.begin()
            at = self.now()
            self.reconcile(at)
            for name in METERED:
                resource = RESOURCES[name]
                listing = list_with_retry(
                    self.api, resource, log=self.session.warn, keep=partial(freeze, resource.kind)
                )
                self.session.resync(resource.kind, listing.items, at)
                if listing.resource_version:
                    self.processed_rv[name] = listing.resource_version
                watcher = Watcher(
                    self.api,
                    resource,
                    self.queue,
                    timeout_seconds=int(self.settings.watch_timeout.total_seconds()),
                    resource_version=listing.resource_version,
                )
                self.watchers[name] = watcher
            for watcher in self.watchers.values():
                watcher.start()
            self._started = True
        except BaseException:
            self.lease.release()
            raise
        log.info(
            "agent started for cluster %s at %s: %d open lifetime(s), watermark %s",
            self.cluster,
            format_time(at),
            len(self.session.tracker.open),
            format_time(self.session.tracker.watermark) if self.session.tracker.watermark else "none",
        )

    def stop(self) -> None:
        """Stop the watchers and flush what was observed (no period is closed early). Healthy
        watchers confirm their objects up to now, so a restart ends what vanished meanwhile at
        the stop, not at some earlier confirmation."""
        try:
            if self._started:
                self.pump()
                now = self.now()
                for name, watcher in self.watchers.items():
                    if watcher.is_alive() and watcher.healthy:
                        self.session.tracker.confirm(RESOURCES[name].kind, now)
                self.session.flush(touch=True)
        finally:
            self.stop_event.set()
            for watcher in self.watchers.values():
                watcher.stop()
            for watcher in self.watchers.values():
                watcher.join(timeout=5)
            if self._started:
                try:
                    self.pump()
                finally:
                    self.lease.release()
            self._started = False

    def abandon(self) -> None:
        """Stop the watchers WITHOUT flushing: leadership was lost, another replica may already
        be writing the journal, and it resumes from the ledger (what was observed here after the
        last flush is observed again by its LIST). Gives the journal lease back if still ours."""
        for watcher in self.watchers.values():
            watcher.stop()
        for watcher in self.watchers.values():
            watcher.join(timeout=5)
        if self._started:
            try:
                self.lease.release()
            except Exception as exc:  # the ledger is down: the lease expires on its own
                log.warning("could not release the journal lease: %s", exc)
        self._started = False

    @property
    def watching(self) -> bool:
        """Started, and every watcher is connected (its initial LIST applied)."""
        return self._started and all(w.is_alive() and w.healthy for w in self.watchers.values())

    def __enter__(self) -> KubernetesAgent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- work ------------------------------------------------------------------------------

    def reconcile(self, at: datetime | None = None) -> None:
        """Re-discover tenants (a failed LIST never offboards anyone)."""
        discover_tenants(self.api, self.session, at or self.now())

    def synced(self, target_rv: str | int) -> bool:
        """Whether every watcher's events up to ``target_rv`` have been applied."""
        return all(rv_at_least(self.processed_rv.get(name), target_rv) for name in METERED)

    def pump(self, *, timeout: float = 0.0, until_rv: str | int | None = None) -> int:
        """Apply queued watch items. Waits up to ``timeout`` seconds for more; with
        ``until_rv``, returns as soon as every watcher has delivered up to that version."""
        deadline = time.monotonic() + timeout
        handled = 0
        pending = False
        try:
            while True:
                if until_rv is not None and self.synced(until_rv) and self.queue.empty():
                    break
                remaining = deadline - time.monotonic()
                try:
                    item = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                pending = self._handle(item) or pending
                handled += 1
        finally:
            if pending:
                self.session.flush()
        return handled

    def _handle(self, item: WatchItem) -> bool:
        """Apply one item; True when the tracker has unflushed changes."""
        at = self.now()
        dirty = False
        if item.type == SYNC:
            self.relists[item.resource] = self.relists.get(item.resource, 0) + 1
            log.info("re-listed %s (%d objects)", item.resource, len(item.items))
            self.session.resync(item.kind, item.items, at)
        elif item.type in ("ADDED", "MODIFIED", "DELETED") and item.obj is not None:
            self.session.event(item.kind, item.type, item.obj, at)
            self.session.tracker.confirm(item.kind, at)
            dirty = True
        elif item.type in (BOOKMARK, HEALTHY):
            self.session.tracker.confirm(item.kind, at)
        elif item.type == ERROR:
            self.watch_restarts[item.resource] = self.watch_restarts.get(item.resource, 0) + 1
            return False
        if item.rv:
            self.processed_rv[item.resource] = item.rv
        return dirty

    def tick(self) -> CloseResult:
        """Write settled periods (after applying what is queued)."""
        self.lease.acquire()  # renew; LeaseHeld if another writer took over (we were stalled)
        self.pump()
        now = self.now()
        for name, watcher in self.watchers.items():
            if watcher.is_alive() and watcher.healthy:
                self.session.tracker.confirm(RESOURCES[name].kind, now)
        result = self.session.close_periods(now)
        self.last_result = result
        self.records_written += result.written.inserted + result.written.revised
        if result.periods or result.revisited:
            log.info(
                "wrote %d period(s) (%d revisited) up to %s: %d new, %d revised record(s)",
                len(result.periods),
                len(result.revisited),
                format_time(result.until) if result.until else "-",
                result.written.inserted,
                result.written.revised,
                extra={"cluster": self.cluster, "period": str(result.periods[-1]) if result.periods else None},
            )
        return result
