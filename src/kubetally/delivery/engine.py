"""The drain loop: read the outbox, turn rows into events, send them within the backend's
limits, retry what may pass later, isolate what never will, and move the cursor.

One :class:`DestinationRunner` per destination; :class:`Deliverer` runs them side by side (a
slow or broken backend never holds up the others). :func:`deliver_once` is the plain entry
the CLI and the agent call.

Failure handling, the same for every backend (adapters only classify answers):

* :class:`~kubetally.delivery.destinations.base.TransientError` (network, timeout, 408, 409,
  429, 5xx): the same batch again after exponential backoff with jitter, never shorter than the
  server's ``Retry-After``. A one-shot run gives up after ``max_wait`` without progress and
  leaves the rows pending; ``--follow``/agent retries forever.
* :class:`~kubetally.delivery.destinations.base.BatchRejected` (400/413/422): the batch is
  split in halves until the bad events are alone; those go to the dead-letter table with the
  backend's reason, the others are delivered.
* :class:`~kubetally.delivery.destinations.base.FatalError` (401/403, wrong URL): the
  destination stops for this run; nothing is dead-lettered (an expired key must not cost
  revenue).
* events a backend can never take (older than it accepts, negative where it cannot subtract)
  are dead-lettered without a request, with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

from kubetally.config.destinations import DestinationBase, DestinationsConfig
from kubetally.delivery.destinations import build_destination
from kubetally.delivery.destinations.base import (
    BatchRejected,
    Destination,
    FatalError,
    ItemSpec,
    SendResult,
    TransientError,
)
from kubetally.delivery.events import Event, events_for
from kubetally.delivery.outbox import (
    Clock,
    CommitCounts,
    DeadLetter,
    LeaseLost,
    Outbox,
    Page,
    Pending,
    first_event,
    utcnow,
)
from kubetally.delivery.retry import RetryPolicy
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time
from kubetally.record import PROVIDER_KINDS

log = logging.getLogger("kubetally.delivery")

T = TypeVar("T")

#: Examples of dead letters kept per run for the summary (all are in the table).
_EXAMPLES = 20
#: Offboarding scans the ledger for each tenant's last period; do it at most this often.
OFFBOARD_CHECK_EVERY = timedelta(minutes=10)
#: An event this close to a backend's age limit is dead-lettered rather than sent: it would
#: cross the limit while in flight or waiting for a retry.
AGE_MARGIN = timedelta(hours=1)


#: Acknowledged batches are committed together: every this many batches, at most this long
#: after the first of them was acknowledged, before waiting on a slow batch, and at the end.
COMMIT_EVERY = 20
COMMIT_AFTER = timedelta(seconds=0.1)
#: How often a retry's backoff looks whether the pipeline was stopped.
_ABORT_POLL = 0.05


class GiveUp(Exception):
    """A one-shot run waited ``max_wait`` for a backend without any progress."""


class Stopped(Exception):
    """Shutdown was requested; the batch in flight is re-sent by the next run."""


@dataclass
class DestinationSummary:
    """What one drain of one destination did."""

    name: str
    kind: str
    delivered: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[DeadLetter] = field(default_factory=list)
    pending: int = 0
    requests: int = 0
    retries: int = 0
    offboarded: list[str] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.dead_lettered

    @property
    def status(self) -> str:
        """One word (and the reason) for tables and logs."""
        if self.error:
            return self.error
        if self.stopped:
            return "stopped"
        if self.dead_lettered:
            return f"dead letters: {self.dead_lettered}"
        return "ok"

    def merge(self, other: DestinationSummary) -> None:
        """Accumulate another drain into this one (follow mode totals)."""
        self.delivered += other.delivered
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.dead_lettered += other.dead_lettered
        self.reasons.update(other.reasons)
        self.examples = (self.examples + other.examples)[:_EXAMPLES]
        self.pending = other.pending
        self.requests += other.requests
        self.retries += other.retries
        self.offboarded += other.offboarded
        self.error = other.error
        self.stopped = other.stopped
        self.seconds += other.seconds


@dataclass
class DeliverySummary:
    destinations: list[DestinationSummary] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything this run handled reached its backend: no destination failed or was
        stopped by the backend (401/403, gave up) and nothing was dead-lettered. A cron job
        exits non-zero otherwise, so a backend that refuses every event never looks green."""
        return all(d.ok for d in self.destinations)

    @property
    def delivered(self) -> int:
        return sum(d.delivered for d in self.destinations)

    @property
    def dead_lettered(self) -> int:
        return sum(d.dead_lettered for d in self.destinations)

    @property
    def pending(self) -> int:
        return sum(d.pending for d in self.destinations)


def _short_reason(reason: str) -> str:
    return reason if len(reason) <= 300 else reason[:300] + "…"


@dataclass
class _Acked:
    """What the backend said about one batch: accepted (with the ones it already had) and the
    events isolated as refused."""

    accepted: list[Event] = field(default_factory=list)
    duplicates: set[str] = field(default_factory=set)
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class _Batch:
    """A chunk of rows ready to send: its events, the dead letters found before sending, the
    rows with nothing for this destination, and the send in progress."""

    rows: list[Pending]
    events: list[Event]
    dead: list[DeadLetter]
    skipped: int
    future: Future[_Acked] | None = None


class _Pipeline:
    """Batches in submission order; up to ``in_flight`` are sent at once on sender threads while
    this thread reads and builds up to two more.

    Exactly-once in effect needs the cursor never to pass a row whose events the backend has
    not acknowledged. So acknowledgements are taken in order only: a batch answered early waits
    for every batch before it, and the cursor moves in one commit per *group* of consecutive
    acknowledged batches (every ``commit_every`` batches, ``commit_after`` after the first, before
    waiting on a slow batch, and at the end). When a batch fails for good (a fatal answer, giving
    up, a stop, a lost lease) or building one fails, the batches after it stop retrying, those in
    flight are awaited, the acknowledged prefix is committed and the rest is left pending: a rerun
    sends it again with the same event ids, which the backend deduplicates.
    """

    def __init__(self, runner: DestinationRunner):
        self.runner = runner
        self.pool: ThreadPoolExecutor | None = None
        self.queue: deque[_Batch] = deque()
        self.group: list[tuple[_Batch, _Acked]] = []
        self.group_since = 0.0
        #: seqs of every row read after the cursor and not committed (gap detection)
        self.seen: list[int] = []
        self.ahead = runner.in_flight + 2

    @property
    def busy(self) -> bool:
        """Rows were read that are not committed yet."""
        return bool(self.queue or self.group)

    def saw(self, seqs: Sequence[int]) -> None:
        self.seen.extend(seqs)

    def submit(self, batch: _Batch) -> None:
        if batch.events:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(
                    max_workers=self.runner.in_flight, thread_name_prefix=f"send-{self.runner.dest.name}"
                )
            batch.future = self.pool.submit(self.runner._transmit, batch)
        self.queue.append(batch)
        self._collect(keep=self.ahead)

    def flush(self) -> None:
        """Wait for every batch and commit them (raises the first failure)."""
        self._collect(keep=0)
        if self.group:
            self._commit()

    def _collect(self, keep: int) -> None:
        """Move acknowledged batches from the head of the queue to the group, in order, waiting
        while more than ``keep`` batches are outstanding."""
        after = self.runner.commit_after
        while self.queue:
            head = self.queue[0]
            future = head.future
            if future is not None and not future.done():
                if len(self.queue) <= keep:
                    break
                if self.group:  # do not sit on acknowledged batches behind a slow one
                    wait([future], timeout=max(0.0, self.group_since + after - time.monotonic()))
                    if not future.done():
                        self._commit()
            acked = future.result() if future is not None else _Acked()  # a failed batch raises here
            self.queue.popleft()
            if not self.group:
                self.group_since = time.monotonic()
            self.group.append((head, acked))
            if len(self.group) >= self.runner.commit_every:
                self._commit()
        if self.group and time.monotonic() - self.group_since >= after:
            self._commit()

    def commit_acknowledged(self) -> None:
        """Commit what is acknowledged before this thread waits (a set-up call is retried)."""
        self._collect(keep=len(self.queue))
        if self.group:
            self._commit()

    def _commit(self) -> None:
        self.runner._commit(self.group, self.seen)
        self.group = []
        cursor = self.runner.outbox.cursor
        self.seen = self.seen[bisect_right(self.seen, cursor) :]

    def abort(self) -> None:
        """Something failed: stop the batches behind it, keep the acknowledged prefix."""
        self.runner._abort.set()
        for batch in self.queue:
            if batch.future is not None:
                batch.future.cancel()
        wait([b.future for b in self.queue if b.future is not None])
        while self.queue:
            head = self.queue[0]
            future = head.future
            if future is not None and (future.cancelled() or future.exception() is not None):
                break
            self.group.append((head, future.result() if future is not None else _Acked()))
            self.queue.popleft()
        self.queue.clear()
        if self.group:
            try:
                self._commit()
            except Exception as exc:  # the failure being raised says more (often the same cause)
                log.warning("%s: could not commit acknowledged batches: %s", self.runner.dest.name, exc)
                self.group = []

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class DestinationRunner:
    """Drains one destination's outbox; keeps adapter caches between drains (follow mode)."""

    def __init__(
        self,
        ledger: Ledger,
        destination: Destination,
        config: DestinationBase | None = None,
        *,
        items: Sequence[ItemSpec] = (),
        policy: RetryPolicy | None = None,
        page_size: int = 1000,
        max_wait: timedelta | None = timedelta(minutes=5),
        lease_ttl: timedelta = timedelta(minutes=2),
        gap_timeout: timedelta = timedelta(minutes=10),
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
        commit_every: int = COMMIT_EVERY,
        commit_after: timedelta = COMMIT_AFTER,
    ):
        self.ledger = ledger
        self.dest = destination
        self.config = config
        self.items = list(items)
        if policy is None and config is not None:
            policy = RetryPolicy(initial=config.retry_initial, maximum=config.retry_max)
        self.policy = policy or RetryPolicy()
        self.page_size = max(page_size, destination.max_batch)
        self.max_wait = max_wait
        self.clock = clock
        self.stop = stop or threading.Event()
        self.outbox = Outbox(ledger, destination.name, lease_ttl=lease_ttl, gap_timeout=gap_timeout, clock=clock)
        destination.bind(self.outbox)
        self._bootstrapped = False
        self._next_offboard_check = 0.0
        self._heartbeat_every = max(0.05, lease_ttl.total_seconds() / 3)
        self._summary = DestinationSummary(destination.name, destination.kind)
        #: batches sent at the same time (the adapter says what it can take) and built ahead
        self.in_flight = max(1, int(getattr(destination, "max_in_flight", 1)))
        self.commit_every = commit_every
        self.commit_after = commit_after.total_seconds()
        #: set when a batch failed: batches after it stop retrying (their rows stay pending)
        self._abort = threading.Event()
        #: the summary's counters are bumped from the sender threads too
        self._lock = threading.Lock()

    # -- the loop -------------------------------------------------------------------------------

    def drain(self) -> DestinationSummary:
        """Deliver everything pending now; returns what happened."""
        started = time.monotonic()
        s = self._summary = DestinationSummary(self.dest.name, self.dest.kind)
        self._abort.clear()
        if not self.outbox.acquire():
            state = self.outbox.state()
            owner = state.lease_owner if state else "?"
            until = format_time(state.lease_until) if state and state.lease_until else "?"
            s.error = f"busy: another process ({owner}) is delivering to {self.dest.name} (lease until {until})"
            s.pending = self.outbox.pending()
            return s
        try:
            if not self._bootstrapped:
                self._retrying("bootstrap", lambda: self.dest.bootstrap(self.items))
                self._bootstrapped = True
            self._pipelined()
            if not self.stop.is_set():
                self._offboard()
            else:
                s.stopped = True
        except Stopped:
            s.stopped = True
        except (FatalError, GiveUp, LeaseLost) as exc:
            s.error = str(exc)
            log.error("%s: %s", self.dest.name, exc)
        except Exception as exc:  # a bug or a ledger error: report it, keep the other destinations going
            s.error = f"{self.dest.name}: unexpected error: {type(exc).__name__}: {exc}"
            log.exception("%s: unexpected error", self.dest.name)
        finally:
            try:
                self.outbox.release()
            finally:
                s.pending = self.outbox.pending()
                s.seconds = time.monotonic() - started
        return s

    # -- planning -------------------------------------------------------------------------------

    def _selected(self, pending: Pending) -> bool:
        cfg = self.config
        record = pending.view
        if record.kind in PROVIDER_KINDS and not (cfg is not None and cfg.provider_records):
            return False  # the provider's capacity and idle are not a tenant's usage
        if cfg is None:
            return True
        if cfg.items is not None and record.item not in cfg.items:
            return False
        return not (cfg.since is not None and pending.start < cfg.since)

    def _events(self, pending: Pending) -> tuple[list[Event], list[DeadLetter]]:
        """The events of one row, minus those this backend can never accept (dead letters)."""
        try:
            if pending.row is not None and pending.view.revision == 0:
                events = [first_event(pending.row)]  # the common case, without building a record
            else:
                events = events_for(pending.record, pending.seq, pending.previous, label_keys=self.dest.label_keys)
        except ValueError as exc:
            # Only possible when an earlier revision vanished from the ledger.
            full = events_for(pending.record.model_copy(update={"revision": 0}), pending.seq, None)[0]
            return [], [
                DeadLetter(
                    replace(full, id=f"{full.record_id}-{pending.record.revision}", revision=pending.record.revision),
                    str(exc),
                )
            ]
        if pending.only is not None:
            events = [e for e in events if e.id in pending.only]
        keep, dead = [], []
        unassigned = self.config.unassigned_tenant if self.config else None
        for event in events:
            if not event.tenant and getattr(self.dest, "requires_tenant", True):
                if unassigned:
                    event = replace(event, tenant=unassigned)
                else:
                    dead.append(
                        DeadLetter(
                            event,
                            "record has no tenant to bill (set unassigned_tenant "
                            "on the destination to bill such usage)",
                        )
                    )
                    continue
            reason = self._never_accepted(event)
            if reason:
                dead.append(DeadLetter(event, reason))
            else:
                keep.append(event)
        return keep, dead

    def _never_accepted(self, event: Event) -> str | None:
        max_age = self.dest.max_age
        if max_age is not None and self.clock() - event.timestamp > max_age - AGE_MARGIN:
            days = max_age.total_seconds() / 86400
            return (
                f"too old: period start {format_time(event.timestamp)} is more than {days:g} days ago; "
                f"{self.dest.kind} does not accept older events"
            )
        config = getattr(self.dest, "config", None)
        mapped = getattr(self.dest, "mapped_customer", None)
        if getattr(config, "unmapped", "convention") == "hold" and mapped is not None and mapped(event.tenant) is None:
            return (
                f"held: tenant {event.tenant!r} has no customer (not in customers: of {self.dest.name}, and no "
                "kubernetes.tenancy.customer_key label or annotation on its object); map it, then requeue"
            )
        return self.dest.check(event)

    def _plan(self, page: Page) -> Iterable[list[tuple[Pending, list[Event], list[DeadLetter]]]]:
        """Rows with their events, cut into chunks of at most ``max_batch`` events; a row's
        events never straddle two chunks, so the cursor can move after each chunk."""
        chunk: list[tuple[Pending, list[Event], list[DeadLetter]]] = []
        size = 0
        for pending in page.rows:
            if not self._selected(pending):
                chunk.append((pending, [], []))
                continue
            events, dead = self._events(pending)
            if chunk and size + len(events) > self.dest.max_batch:
                yield chunk
                chunk, size = [], 0
            chunk.append((pending, events, dead))
            size += len(events)
        if chunk:
            yield chunk

    # -- the pipeline ----------------------------------------------------------------------------

    def _pipelined(self) -> None:
        """Read and build batches while earlier ones are in flight; commit acknowledged ones
        in order, a group at a time (see :class:`_Pipeline`)."""
        pipe = _Pipeline(self)
        try:
            while not self.stop.is_set():
                page = self.outbox.read(self.page_size, fresh_only=pipe.busy)
                if not page.rows:
                    if pipe.busy:
                        pipe.flush()  # then re-queued and late rows may be read too
                        continue
                    break
                pipe.saw(page.fresh_seqs)
                for chunk in self._plan(page):
                    pipe.submit(self._build(chunk, pipe.commit_acknowledged))
            pipe.flush()
        except BaseException:
            pipe.abort()
            raise
        finally:
            pipe.close()

    def _build(
        self, chunk: list[tuple[Pending, list[Event], list[DeadLetter]]], before_wait: Callable[[], None] | None = None
    ) -> _Batch:
        """A chunk's events after the backend's set-up (``prepare``, on this thread: it changes
        the adapter's state, which sending only reads)."""
        dead: list[DeadLetter] = []
        to_send: list[Event] = []
        skipped = 0
        for _pending, events, letters in chunk:
            dead.extend(letters)
            to_send.extend(events)
            if not events and not letters:
                skipped += 1
        if to_send:
            refusals = self._retrying("prepare", lambda: self.dest.prepare(to_send), before_wait)
            refused: Mapping[str, str] = refusals or {}
            if refused:
                dead.extend(DeadLetter(e, refused[e.id]) for e in to_send if e.id in refused)
                to_send = [e for e in to_send if e.id not in refused]
        return _Batch([p for p, _, _ in chunk], to_send, dead, skipped)

    def _transmit(self, batch: _Batch) -> _Acked:
        """Send one batch (on a sender thread) until the backend acknowledged every event or
        each refused one is isolated; raises when it cannot (the pipeline then stops)."""
        acked = _Acked()
        for start in range(0, len(batch.events), self.dest.max_batch):
            self._send(batch.events[start : start + self.dest.max_batch], acked.accepted, acked.duplicates, acked.dead)
        return acked

    def _commit(self, group: list[tuple[_Batch, _Acked]], seen: Sequence[int]) -> None:
        """One transaction for a run of acknowledged batches: the cursor moves past all of
        them, with their dead letters, counts and new tenants."""
        s = self._summary
        counts = CommitCounts()
        rows: list[Pending] = []
        dead: list[DeadLetter] = []
        tenants: set[str] = set()
        for batch, acked in group:
            rows.extend(batch.rows)
            dead.extend(batch.dead)
            dead.extend(acked.dead)
            counts.skipped += batch.skipped
            duplicates = len(acked.duplicates)
            counts.duplicates += duplicates
            counts.delivered += len(acked.accepted) - duplicates
            tenants.update(e.tenant for e in acked.accepted)
        counts.dead = len(dead)
        dead_ids = {letter.event.id for letter in dead}
        redelivered = {i for p in rows if p.only for i in p.only} - dead_ids
        self.outbox.commit(rows, seen, dead=dead, counts=counts, tenants=tenants, redelivered=redelivered)
        with self._lock:
            s.delivered += counts.delivered
            s.duplicates += counts.duplicates
            s.skipped += counts.skipped
            s.dead_lettered += counts.dead
        for letter in dead:
            s.reasons[_short_reason(letter.reason)] += 1
            if len(s.examples) < _EXAMPLES:
                s.examples.append(letter)

    def _send(self, events: list[Event], accepted: list[Event], duplicates: set[str], dead: list[DeadLetter]) -> None:
        """Send one batch; on a rejection isolate the bad events by splitting it."""
        try:
            result: SendResult = self._retrying("send", lambda: self._request(events))
        except BatchRejected as exc:
            named = {e.id for e in events} & set(exc.per_event)
            if named:
                dead.extend(DeadLetter(e, exc.per_event[e.id], exc.status) for e in events if e.id in named)
                rest = [e for e in events if e.id not in named]
                if rest:
                    self._send(rest, accepted, duplicates, dead)
                return
            if len(events) == 1:
                dead.append(DeadLetter(events[0], exc.reason, exc.status))
                return
            mid = len(events) // 2
            self._send(events[:mid], accepted, duplicates, dead)
            self._send(events[mid:], accepted, duplicates, dead)
            return
        accepted.extend(events)
        duplicates.update(result.duplicates & {e.id for e in events})

    def _request(self, events: list[Event]) -> SendResult:
        with self._lock:
            self._summary.requests += 1
        return self.dest.send(events)

    # -- retries ------------------------------------------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T], before_wait: Callable[[], None] | None = None) -> T:
        """Run ``call`` until it does not raise TransientError (backoff + jitter + hints).
        ``before_wait`` runs before each backoff (the pipeline commits what is acknowledged)."""
        failures = 0
        first_failure = 0.0
        while True:
            if self.stop.is_set() or self._abort.is_set():
                raise Stopped()
            try:
                return call()
            except TransientError as exc:
                failures += 1
                with self._lock:
                    self._summary.retries += 1
                now = time.monotonic()
                if failures == 1:
                    first_failure = now
                if self.max_wait is not None and now - first_failure >= self.max_wait.total_seconds():
                    raise GiveUp(
                        f"{self.dest.name}: gave up after {failures} attempts over "
                        f"{now - first_failure:.0f}s ({what}): {exc.reason}"
                    ) from None
                delay = self.policy.delay(failures, exc.retry_after)
                if self.max_wait is not None:
                    delay = min(delay, max(0.0, self.max_wait.total_seconds() - (now - first_failure)) + 0.01)
                log.warning("%s: %s failed (%s); retry %d in %.2fs", self.dest.name, what, exc.reason, failures, delay)
                if before_wait is not None:
                    before_wait()
                self._wait(delay)

    def _wait(self, seconds: float) -> None:
        """Sleep before a retry, keeping the lease alive; wakes up for a stop (of the process,
        or of this drain's pipeline after another batch failed)."""
        now = time.monotonic()
        deadline = now + seconds
        beat = now + self._heartbeat_every
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return
            if self.stop.wait(min(remaining, beat - now, _ABORT_POLL)) or self._abort.is_set():
                raise Stopped()
            if time.monotonic() >= beat:
                self.outbox.heartbeat()
                beat = time.monotonic() + self._heartbeat_every

    # -- offboarding -------------------------------------------------------------------------------

    def _offboard(self) -> None:
        grace = self.dest.offboard_grace
        if grace is None or time.monotonic() < self._next_offboard_check:
            return
        self._next_offboard_check = time.monotonic() + OFFBOARD_CHECK_EVERY.total_seconds()
        for tenant, last_end in self.outbox.idle_tenants(grace):
            self._retrying("offboard", lambda tenant=tenant: self.dest.offboard(tenant))  # type: ignore[misc]
            self.outbox.set_tenant_state(tenant, "offboarded")
            self._summary.offboarded.append(tenant)
            log.info("%s: offboarded tenant %s (no usage since %s)", self.dest.name, tenant, format_time(last_end))


class Deliverer:
    """All destinations of one process. ``run_once`` drains them in parallel threads."""

    def __init__(
        self,
        ledger: Ledger,
        destinations: Sequence[Destination],
        configs: Sequence[DestinationBase | None] | None = None,
        *,
        items: Sequence[ItemSpec] = (),
        policy: RetryPolicy | None = None,
        page_size: int = 1000,
        max_wait: timedelta | None = timedelta(minutes=5),
        lease_ttl: timedelta = timedelta(minutes=2),
        gap_timeout: timedelta = timedelta(minutes=10),
        clock: Clock = utcnow,
        stop: threading.Event | None = None,
    ):
        self.stop = stop or threading.Event()
        configs = list(configs) if configs is not None else [None] * len(destinations)
        self.runners = [
            DestinationRunner(
                ledger,
                dest,
                cfg,
                items=items,
                policy=policy,
                page_size=page_size,
                max_wait=max_wait,
                lease_ttl=lease_ttl,
                gap_timeout=gap_timeout,
                clock=clock,
                stop=self.stop,
            )
            for dest, cfg in zip(destinations, configs, strict=True)
        ]

    def run_once(self) -> DeliverySummary:
        if len(self.runners) == 1:
            return DeliverySummary([self.runners[0].drain()])
        with ThreadPoolExecutor(max_workers=len(self.runners), thread_name_prefix="deliver") as pool:
            results = list(pool.map(lambda runner: runner.drain(), self.runners))
        return DeliverySummary(results)

    def run_forever(
        self,
        interval: timedelta = timedelta(seconds=30),
        on_summary: Callable[[DeliverySummary], None] | None = None,
    ) -> DeliverySummary:
        """Drain, wait ``interval`` (or less while work remains), repeat until ``stop``."""
        totals = {r.dest.name: DestinationSummary(r.dest.name, r.dest.kind) for r in self.runners}
        while not self.stop.is_set():
            summary = self.run_once()
            for one in summary.destinations:
                totals[one.name].merge(one)
            if on_summary is not None:
                on_summary(summary)
            busy = any(d.pending and d.error is None for d in summary.destinations)
            self.stop.wait(0.0 if busy else interval.total_seconds())
        return DeliverySummary(list(totals.values()))

    def close(self) -> None:
        for runner in self.runners:
            runner.dest.close()


def item_specs(config: Any) -> list[ItemSpec]:
    """Billing items of a loaded :class:`~kubetally.config.Config` (None: no items), so metrics
    exist in the backend before the first record of an item arrives."""
    if config is None:
        return []
    specs = []
    for item in config.items:
        entry = config.display_for(item.item)
        name = entry.method.displayname.text("en") if entry else ""
        specs.append(ItemSpec(item=item.item, category=item.category, unit=item.unit, display_name=name))
    return specs


def build_all(
    destinations: DestinationsConfig | Sequence[DestinationBase] | Sequence[Destination],
    environ: Mapping[str, str] | None = None,
) -> tuple[list[Destination], list[DestinationBase | None], bool]:
    """Adapters for configs (built here, so the caller must close them) or as given."""
    if isinstance(destinations, DestinationsConfig):
        configs: list[DestinationBase] = destinations.enabled()
    else:
        items: list[DestinationBase | Destination] = list(destinations)
        if items and not isinstance(items[0], DestinationBase):
            given = [d for d in items if not isinstance(d, DestinationBase)]
            return given, [getattr(d, "config", None) for d in given], False
        configs = [c for c in items if isinstance(c, DestinationBase) and c.enabled]
    built: list[Destination] = []
    try:
        for cfg in configs:
            built.append(build_destination(cfg, environ))
    except Exception:
        for dest in built:
            dest.close()
        raise
    return built, list(configs), True


def deliver_once(
    ledger: Ledger,
    destinations: DestinationsConfig | Sequence[DestinationBase] | Sequence[Destination],
    *,
    items: Sequence[ItemSpec] = (),
    policy: RetryPolicy | None = None,
    page_size: int = 1000,
    max_wait: timedelta | None = timedelta(minutes=5),
    clock: Clock = utcnow,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> DeliverySummary:
    """Drain every destination's outbox once, with adapters built for this call and closed
    after it. A loop keeps one :class:`Deliverer` instead (the agent runner does), so backend
    set-up (plan, metrics, one request per tenant) is not redone every cycle.
    """
    built, built_configs, owned = build_all(destinations, environ)
    deliverer = Deliverer(
        ledger,
        built,
        built_configs,
        items=items,
        policy=policy,
        page_size=page_size,
        max_wait=max_wait,
        clock=clock,
        stop=stop,
    )
    try:
        return deliverer.run_once()
    finally:
        if owned:
            deliverer.close()
