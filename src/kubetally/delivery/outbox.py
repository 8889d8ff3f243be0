"""The outbox of one destination: a cursor over the ledger's rows, with dead letters, gaps,
tenants and a lease, all in the ledger database.

Rules that make delivery exactly-once in effect:

* every ledger row (every revision) gets a ``seq``; the cursor says "rows up to here are done";
* the cursor moves only after the backend acknowledged the rows' events (or they were
  dead-lettered/skipped), and in the same transaction as their dead letters — so a crash
  re-sends at most the batch that was in flight, with the same deterministic event ids;
* a seq that was not visible when the cursor passed it (PostgreSQL commits out of order) is
  remembered as a *gap* and delivered when it shows up;
* a lease on the cursor row keeps a second process from draining the same destination; a lease
  held by a dead process on this host is taken over at once, any other after it expires.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, String, and_, delete, func, insert, or_, select, tuple_, type_coerce, update
from sqlalchemy.exc import IntegrityError

from kubetally.delivery import tables
from kubetally.delivery.events import Action, Event
from kubetally.ledger import schema
from kubetally.ledger.rows import record_from_row
from kubetally.ledger.store import Ledger
from kubetally.periods import PeriodKind
from kubetally.record import UsageRecord, normalize

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OutboxLag:
    """How far one destination's cursor is behind the ledger."""

    destination: str
    cursor: int
    #: Ledger rows after the cursor (what is still to deliver).
    records: int
    dead: int
    #: When the oldest of those rows was recorded (only asked for with ``age``; None when none).
    oldest_pending: datetime | None = None

    def seconds(self, now: datetime) -> float:
        return (now - self.oldest_pending).total_seconds() if self.oldest_pending is not None else 0.0


def outbox_lag(ledger: Ledger, *, age: bool = False) -> list[OutboxLag]:
    """Per destination, in name order. ``age`` costs one more query per destination (a scan of
    the rows after its cursor), so the agent's frequent scrape leaves it out."""
    r, c = schema.records, tables.outbox_cursors
    out = []
    with ledger.engine.connect() as conn:
        newest = int(conn.execute(select(func.coalesce(func.max(r.c.seq), 0))).scalar_one())
        for row in conn.execute(select(c.c.destination, c.c.cursor, c.c.dead).order_by(c.c.destination)):
            oldest = None
            if age:
                oldest = conn.execute(select(func.min(r.c.recorded_at)).where(r.c.seq > row.cursor)).scalar_one()
            cursor = int(row.cursor)
            out.append(OutboxLag(str(row.destination), cursor, max(newest - cursor, 0), int(row.dead), oldest))
    return out


class LeaseLost(RuntimeError):
    """Another process took this destination over (our lease expired while we were stuck)."""


def new_owner() -> str:
    """``host:pid:nonce`` — the pid lets a restarted process on the same host take over a
    lease its killed predecessor left behind without waiting for it to expire."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


#: Public name for other parts that claim work the same way (budget alert sends).
owner_is_dead = _owner_is_dead


#: Rows become records in one place (see :mod:`kubetally.ledger.rows`).
_record = record_from_row


def _raw(column: Any) -> Any:
    """``column`` as the driver returns it: delivery converts only what it uses (below)."""
    return type_coerce(column, String()).label(column.name)


_r = schema.records
#: The columns delivery reads (``seq`` first). The times come raw (text on SQLite, naive
#: datetimes on PostgreSQL) and are converted by :func:`_utc` only where needed: SQLAlchemy's
#: per-value processing of three datetime columns was a fifth of the cost of reading a row.
_READ = (
    _r.c.seq,
    _r.c.id,
    _r.c.revision,
    _r.c.kind,
    _r.c.category,
    _r.c.item,
    _r.c.name,
    _r.c.namespace,
    _r.c.cluster,
    _r.c.project,
    _r.c.tenant,
    _r.c.labels,
    _raw(_r.c.date),
    _r.c.period,
    _raw(_r.c.start),
    _raw(_r.c.end),
    _raw(_r.c.usage),
    _r.c.unit,
)
_LENGTHS = {kind.value: kind.length for kind in PeriodKind}


def _utc(value: datetime | str) -> datetime:
    """A raw ``UTCDateTime`` value (naive UTC; text on SQLite) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def _usage(value: Decimal | str) -> Decimal:
    """A raw ``ExactDecimal`` value as the column type would return it (normalised). SQLite
    holds the normalised number's text already, which :func:`Decimal` reads as is; anything
    else (PostgreSQL's NUMERIC, text written by other means) goes through :func:`normalize`."""
    if isinstance(value, str):
        number = Decimal(value)
        if number and "e" not in value and "E" not in value and not ("." in value and value[-1] == "0"):
            return number
        return normalize(number)
    return normalize(value)


#: Label JSON text → labels: a ledger has few distinct label sets, decoding each once saves
#: a ``json.loads`` per row (every event gets its own copy).
_LABELS: dict[str, dict[str, str]] = {}
_LABELS_MAX = 10_000


def _labels(text: str) -> dict[str, str]:
    found = _LABELS.get(text)
    if found is None:
        if len(_LABELS) >= _LABELS_MAX:
            _LABELS.clear()
        found = _LABELS[text] = json.loads(text)
    return dict(found)


def _row_record(row: Any) -> UsageRecord:
    fields = row._asdict()
    for name in ("date", "start", "end"):
        fields[name] = _utc(fields[name])
    fields["usage"] = _usage(fields["usage"])
    return _record(SimpleNamespace(**fields))


def first_event(row: Any) -> Event:
    """The event of a first revision (``revision == 0``) straight from its row (``_READ``
    columns): the same :class:`Event` as ``events_for(record, seq, None)[0]`` without building
    the record. The ledger's column type returns normalised Decimals, so the quantity needs no
    further normalising."""
    (seq, rid, revision, kind, category, item, name, namespace, cluster, project, tenant, labels, _date, period,
     start, _end, usage, unit) = row  # fmt: skip
    start = _utc(start)
    usage = _usage(usage)
    return Event.trusted(
        f"{rid}-{revision}",
        seq,
        rid,
        revision,
        Action.usage,
        usage,
        usage,
        start,
        start + _LENGTHS[period],
        period,
        kind,
        category,
        item,
        name,
        namespace,
        cluster,
        project,
        tenant,
        unit,
        _labels(labels),
    )


class Pending:
    """A ledger row to deliver, with the revision before it (for corrections).

    Built from a result row, the :class:`~kubetally.record.UsageRecord` is made only when asked
    for: a first revision's event comes straight from the row (``row``), which is most of the
    cost of reading the outbox saved."""

    __slots__ = ("_record", "late", "only", "previous", "row", "seq")

    def __init__(
        self,
        seq: int,
        record: UsageRecord | None = None,
        previous: UsageRecord | None = None,
        *,
        late: bool = False,
        only: frozenset[str] | None = None,
        row: Any = None,
    ):
        if record is None and row is None:
            raise ValueError("Pending needs a record or a row")
        self.seq = seq
        #: the ledger row (columns of ``_READ``), when read by the outbox
        self.row = row
        self._record = record
        self.previous = previous
        #: from a gap (an out-of-order commit) rather than after the cursor
        self.late = late
        #: a re-queued dead letter: only these event ids are sent again
        self.only = only

    @property
    def record(self) -> UsageRecord:
        if self._record is None:
            self._record = _row_record(self.row)
        return self._record

    @property
    def view(self) -> Any:
        """The row or the record: both have ``id``, ``revision``, ``kind``, ``item``, ``tenant``
        (times: :attr:`start`)."""
        return self.row if self._record is None else self._record

    @property
    def start(self) -> datetime:
        return _utc(self.row.start) if self._record is None else self._record.start

    def __repr__(self) -> str:
        return f"Pending(seq={self.seq}, id={self.view.id}, revision={self.view.revision})"


@dataclass
class DeadLetter:
    event: Event
    reason: str
    status: int | None = None


@dataclass
class Gap:
    lo: int
    hi: int
    seen_at: datetime


@dataclass
class CommitCounts:
    delivered: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead: int = 0


@dataclass
class DeadLetterRow:
    destination: str
    event_id: str
    seq: int
    record_id: str
    revision: int
    tenant: str
    item: str
    quantity: Decimal
    timestamp: datetime
    status: int | None
    reason: str
    state: str
    attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass
class CursorState:
    destination: str
    cursor: int
    lease_owner: str | None
    lease_until: datetime | None
    delivered: int
    duplicates: int
    skipped: int
    dead: int
    updated_at: datetime


@dataclass
class Page:
    rows: list[Pending] = field(default_factory=list)
    #: the seqs of the rows read after the cursor (gap detection needs all of them)
    fresh_seqs: list[int] = field(default_factory=list)


def _subtract(gaps: list[Gap], seqs: Iterable[int]) -> list[Gap]:
    """Remove delivered seqs from gap ranges, splitting ranges around them."""
    out = list(gaps)
    for seq in sorted(set(seqs)):
        nxt: list[Gap] = []
        for gap in out:
            if gap.lo <= seq <= gap.hi:
                if gap.lo < seq:
                    nxt.append(Gap(gap.lo, seq - 1, gap.seen_at))
                if seq < gap.hi:
                    nxt.append(Gap(seq + 1, gap.hi, gap.seen_at))
            else:
                nxt.append(gap)
        out = nxt
    return out


def _holes(after: int, upto: int, present: Sequence[int], seen_at: datetime) -> list[Gap]:
    """Ranges of seqs in ``(after, upto]`` that are not in ``present`` (sorted)."""
    holes = []
    expect = after + 1
    for seq in present:
        if seq > upto:
            break
        if seq <= after:
            continue
        if seq > expect:
            holes.append(Gap(expect, seq - 1, seen_at))
        expect = seq + 1
    if expect <= upto:
        holes.append(Gap(expect, upto, seen_at))
    return holes


class Outbox:
    """Cursor, gaps, dead letters and tenants of one destination."""

    def __init__(
        self,
        ledger: Ledger,
        destination: str,
        *,
        owner: str | None = None,
        lease_ttl: timedelta = timedelta(minutes=2),
        gap_timeout: timedelta = timedelta(minutes=10),
        clock: Clock = utcnow,
    ):
        self.ledger = ledger
        self.destination = destination
        self.owner = owner or new_owner()
        self.lease_ttl = lease_ttl
        self.gap_timeout = gap_timeout
        self.clock = clock
        self._cursor = 0
        #: the last fresh seq handed out by :meth:`read` (ahead of the cursor while pipelining)
        self._read_upto = 0
        self._gaps: list[Gap] = []
        #: tenants known to be recorded as active (saves an upsert per tenant per batch)
        self._active: set[str] = set()

    # -- lease -------------------------------------------------------------------------------

    def state(self) -> CursorState | None:
        c = tables.outbox_cursors
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(c).where(c.c.destination == self.destination)).one_or_none()
        return None if row is None else CursorState(**row._mapping)

    def acquire(self) -> bool:
        """Take the lease (and load cursor and gaps). False when a live process holds it."""
        now = self.clock()
        c = tables.outbox_cursors
        for _ in range(2):
            try:
                with self.ledger.transaction() as conn:
                    row = conn.execute(select(c).where(c.c.destination == self.destination)).one_or_none()
                    if row is None:
                        conn.execute(
                            insert(c).values(
                                destination=self.destination,
                                cursor=0,
                                lease_owner=self.owner,
                                lease_until=now + self.lease_ttl,
                                delivered=0,
                                duplicates=0,
                                skipped=0,
                                dead=0,
                                updated_at=now,
                            )
                        )
                    elif (
                        row.lease_owner in (None, self.owner)
                        or row.lease_until is None
                        or row.lease_until < now
                        or _owner_is_dead(row.lease_owner)
                    ):
                        conn.execute(
                            update(c)
                            .where(c.c.destination == self.destination)
                            .values(lease_owner=self.owner, lease_until=now + self.lease_ttl)
                        )
                    else:
                        return False
                    self._load(conn)
                    return True
            except IntegrityError:
                continue  # another process inserted the row first; look again
        return False

    def _load(self, conn: Connection) -> None:
        c, g = tables.outbox_cursors, tables.outbox_gaps
        self._cursor = conn.execute(select(c.c.cursor).where(c.c.destination == self.destination)).scalar_one()
        self._read_upto = self._cursor
        rows = conn.execute(select(g).where(g.c.destination == self.destination).order_by(g.c.lo))
        self._gaps = [Gap(r.lo, r.hi, r.seen_at) for r in rows]
        t = tables.outbox_tenants
        self._active = {
            row.tenant
            for row in conn.execute(
                select(t.c.tenant).where(and_(t.c.destination == self.destination, t.c.state == "active"))
            )
        }

    def heartbeat(self) -> None:
        """Extend the lease while a long retry keeps us from committing."""
        c = tables.outbox_cursors
        with self.ledger.transaction() as conn:
            done = conn.execute(
                update(c)
                .where(and_(c.c.destination == self.destination, c.c.lease_owner == self.owner))
                .values(lease_until=self.clock() + self.lease_ttl)
            ).rowcount
        if not done:
            raise LeaseLost(f"destination {self.destination}: lease taken over by another process")

    def release(self) -> None:
        c = tables.outbox_cursors
        with self.ledger.transaction() as conn:
            conn.execute(
                update(c)
                .where(and_(c.c.destination == self.destination, c.c.lease_owner == self.owner))
                .values(lease_owner=None, lease_until=None)
            )

    # -- reading -----------------------------------------------------------------------------

    @property
    def cursor(self) -> int:
        return self._cursor

    def read(self, limit: int, *, fresh_only: bool = False) -> Page:
        """The next rows to deliver: re-queued dead letters, rows that filled a gap, then rows
        after the cursor — at most ``limit`` in all.

        Reads go ahead of the cursor: the next page starts after the last row handed out, so a
        pipelined caller can read while earlier rows are still unacknowledged. ``fresh_only``
        leaves re-queued and late rows for later: the caller passes it while rows it has read
        are not committed yet, since those kinds are only marked done by a commit and would
        otherwise be read (and sent) twice."""
        page = Page()
        if not fresh_only:
            self._read_upto = self._cursor
            page.rows.extend(self._requeued(limit))
            if len(page.rows) < limit:
                page.rows.extend(self._late_rows(limit - len(page.rows)))
        if len(page.rows) < limit:
            r = schema.records
            after = max(self._cursor, self._read_upto)
            with self.ledger.engine.connect() as conn:
                fresh = conn.execute(
                    select(*_READ).where(r.c.seq > after).order_by(r.c.seq).limit(limit - len(page.rows))
                ).all()
            page.rows.extend([Pending(row[0], row=row) for row in fresh])
            page.fresh_seqs = [row[0] for row in fresh]
            if fresh:
                self._read_upto = page.fresh_seqs[-1]
        self._attach_previous(page.rows)
        return page

    def _late_rows(self, limit: int) -> list[Pending]:
        if not self._gaps:
            return []
        r = schema.records
        cond = or_(*(r.c.seq.between(g.lo, g.hi) for g in self._gaps))
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(r).where(cond).order_by(r.c.seq).limit(limit)).all()
        found = [Pending(row.seq, _record(row), late=True) for row in rows]
        if len(rows) < limit:
            # Every visible late row was found. A hole older than any write transaction can
            # last, with nothing in it, was a rollback: forget it.
            cutoff = self.clock() - self.gap_timeout
            seqs = [p.seq for p in found]
            keep = [gap for gap in self._gaps if gap.seen_at >= cutoff or any(gap.lo <= s <= gap.hi for s in seqs)]
            if len(keep) != len(self._gaps):
                self._gaps = keep
                self._save_gaps()
        return found

    def _requeued(self, limit: int) -> list[Pending]:
        d, r = tables.dead_letters, schema.records
        with self.ledger.engine.connect() as conn:
            letters = conn.execute(
                select(d.c.seq, d.c.event_id)
                .where(and_(d.c.destination == self.destination, d.c.state == "requeued"))
                .order_by(d.c.seq)
            ).all()
            if not letters:
                return []
            by_seq: dict[int, set[str]] = {}
            for letter in letters:
                if letter.seq in by_seq or len(by_seq) < limit:
                    by_seq.setdefault(letter.seq, set()).add(letter.event_id)
            rows = conn.execute(select(r).where(r.c.seq.in_(list(by_seq))).order_by(r.c.seq)).all()
        return [Pending(row.seq, _record(row), only=frozenset(by_seq[row.seq])) for row in rows]

    def _attach_previous(self, rows: list[Pending]) -> None:
        wanted = [(p.view.id, p.view.revision - 1) for p in rows if p.view.revision > 0]
        if not wanted:
            return
        r = schema.records
        found: dict[tuple[str, int], UsageRecord] = {}
        with self.ledger.engine.connect() as conn:
            for i in range(0, len(wanted), 400):
                chunk = wanted[i : i + 400]
                for row in conn.execute(select(r).where(tuple_(r.c.id, r.c.revision).in_(chunk))):
                    found[(row.id, row.revision)] = _record(row)
        for p in rows:
            if p.view.revision > 0:
                p.previous = found.get((p.view.id, p.view.revision - 1))

    # -- committing --------------------------------------------------------------------------

    def commit(
        self,
        done: Sequence[Pending],
        seen: Page | Sequence[int],
        *,
        dead: Sequence[DeadLetter] = (),
        counts: CommitCounts | None = None,
        tenants: Iterable[str] = (),
        redelivered: Iterable[str] = (),
    ) -> None:
        """Mark ``done`` rows delivered, store their dead letters, move the cursor — atomically.

        ``done`` must be every row read up to the new cursor that is not committed yet (one or
        more acknowledged batches, in order); ``seen`` is the page they came from, or the seqs of
        every row read after the cursor (sorted), so that a seq that was not visible when read
        becomes a gap. ``redelivered`` are event ids of re-queued dead letters that now went
        through.
        """
        fresh_seqs = seen.fresh_seqs if isinstance(seen, Page) else seen
        counts = counts or CommitCounts()
        now = self.clock()
        fresh = [p.seq for p in done if not p.late and p.only is None]
        late = [p.seq for p in done if p.late]
        new_cursor = max([self._cursor, *fresh])
        gaps = _subtract(self._gaps, late)
        if new_cursor > self._cursor:
            gaps += _holes(self._cursor, new_cursor, fresh_seqs, now)
        c, d = tables.outbox_cursors, tables.dead_letters
        with self.ledger.transaction() as conn:
            moved = conn.execute(
                update(c)
                .where(and_(c.c.destination == self.destination, c.c.lease_owner == self.owner))
                .values(
                    cursor=new_cursor,
                    lease_until=now + self.lease_ttl,
                    delivered=c.c.delivered + counts.delivered,
                    duplicates=c.c.duplicates + counts.duplicates,
                    skipped=c.c.skipped + counts.skipped,
                    dead=c.c.dead + counts.dead,
                    updated_at=now,
                )
            ).rowcount
            if not moved:
                raise LeaseLost(f"destination {self.destination}: lease taken over by another process")
            redone = list(redelivered)
            if redone:
                conn.execute(delete(d).where(and_(d.c.destination == self.destination, d.c.event_id.in_(redone))))
            for letter in dead:
                self._store_dead(conn, letter, now)
            self._write_gaps(conn, gaps)
            new_tenants = sorted(set(tenants) - self._active)
            for tenant in new_tenants:
                self._set_tenant(conn, tenant, "active", now)
        self._cursor = new_cursor
        self._gaps = gaps
        self._active.update(new_tenants)

    def _store_dead(self, conn: Connection, letter: DeadLetter, now: datetime) -> None:
        d = tables.dead_letters
        key = and_(d.c.destination == self.destination, d.c.event_id == letter.event.id)
        attempts = conn.execute(select(d.c.attempts).where(key)).scalar_one_or_none()
        conn.execute(delete(d).where(key))
        e = letter.event
        conn.execute(
            insert(d).values(
                destination=self.destination,
                event_id=e.id,
                seq=e.seq,
                record_id=e.record_id,
                revision=e.revision,
                tenant=e.tenant,
                item=e.item,
                quantity=e.quantity,
                timestamp=e.timestamp,
                status=letter.status,
                reason=letter.reason[:4000],
                state="dead",
                attempts=(attempts or 0) + 1,
                created_at=now,
                updated_at=now,
            )
        )

    def _write_gaps(self, conn: Connection, gaps: list[Gap]) -> None:
        g = tables.outbox_gaps
        if gaps == self._gaps:
            return
        conn.execute(delete(g).where(g.c.destination == self.destination))
        if gaps:
            conn.execute(
                insert(g),
                [{"destination": self.destination, "lo": gap.lo, "hi": gap.hi, "seen_at": gap.seen_at} for gap in gaps],
            )

    def _save_gaps(self) -> None:
        g = tables.outbox_gaps
        with self.ledger.transaction() as conn:
            conn.execute(delete(g).where(g.c.destination == self.destination))
            if self._gaps:
                conn.execute(
                    insert(g),
                    [
                        {"destination": self.destination, "lo": gap.lo, "hi": gap.hi, "seen_at": gap.seen_at}
                        for gap in self._gaps
                    ],
                )

    # -- status ------------------------------------------------------------------------------

    def pending(self) -> int:
        """Ledger rows not yet handled (after the cursor, in gaps, or re-queued)."""
        r, d = schema.records, tables.dead_letters
        c = tables.outbox_cursors
        with self.ledger.engine.connect() as conn:
            cursor = conn.execute(select(c.c.cursor).where(c.c.destination == self.destination)).scalar()
            count = conn.execute(select(func.count()).select_from(r).where(r.c.seq > (cursor or 0))).scalar_one()
            g = tables.outbox_gaps
            gaps = conn.execute(select(g.c.lo, g.c.hi).where(g.c.destination == self.destination)).all()
            if gaps:
                cond = or_(*(r.c.seq.between(gap.lo, gap.hi) for gap in gaps))
                count += conn.execute(select(func.count()).select_from(r).where(cond)).scalar_one()
            count += conn.execute(
                select(func.count(func.distinct(d.c.seq))).where(
                    and_(d.c.destination == self.destination, d.c.state == "requeued")
                )
            ).scalar_one()
        return int(count)

    # -- reconciliation ----------------------------------------------------------------------

    def history(self, start: datetime, end: datetime) -> tuple[list[Pending], Callable[[int], bool]]:
        """Every revision of the records whose period starts in ``[start, end)``, with the
        revision before it, and a test "is this seq done" (at or below the cursor, in no gap).

        Read without the lease: reconciliation looks, it never moves the cursor."""
        r, c, g = schema.records, tables.outbox_cursors, tables.outbox_gaps
        with self.ledger.engine.connect() as conn:
            cursor = conn.execute(select(c.c.cursor).where(c.c.destination == self.destination)).scalar()
            gaps = [(row.lo, row.hi) for row in conn.execute(select(g).where(g.c.destination == self.destination))]
            rows = conn.execute(select(r).where(and_(r.c.start >= start, r.c.start < end)).order_by(r.c.seq)).all()
        pending = [Pending(row.seq, _record(row)) for row in rows]
        by_revision = {(p.record.id, p.record.revision): p.record for p in pending}
        for p in pending:
            if p.record.revision > 0:
                p.previous = by_revision.get((p.record.id, p.record.revision - 1))
        done_upto = int(cursor or 0)

        def done(seq: int) -> bool:
            return seq <= done_upto and not any(lo <= seq <= hi for lo, hi in gaps)

        return pending, done

    def oldest_pending(self) -> datetime | None:
        """When the oldest row this destination has not handled yet was written to the ledger;
        ``now - oldest_pending()`` is the delivery lag an alert should watch (``None``: caught up)."""
        r, d = schema.records, tables.dead_letters
        c, g = tables.outbox_cursors, tables.outbox_gaps
        with self.ledger.engine.connect() as conn:
            cursor = conn.execute(select(c.c.cursor).where(c.c.destination == self.destination)).scalar()
            conds = [r.c.seq > (cursor or 0)]
            gaps = conn.execute(select(g.c.lo, g.c.hi).where(g.c.destination == self.destination)).all()
            conds += [r.c.seq.between(gap.lo, gap.hi) for gap in gaps]
            requeued = select(d.c.seq).where(and_(d.c.destination == self.destination, d.c.state == "requeued"))
            conds.append(r.c.seq.in_(requeued))
            return conn.execute(select(func.min(r.c.recorded_at)).where(or_(*conds))).scalar()

    def status(self, now: datetime) -> dict[str, Any]:
        """What a script or an alert needs about this destination, as plain JSON-able values."""
        state = self.state()
        dead = len(self.dead_letters("dead"))
        oldest = self.oldest_pending()
        return {
            "destination": self.destination,
            "cursor": state.cursor if state else 0,
            "delivered": state.delivered if state else 0,
            "duplicates": state.duplicates if state else 0,
            "skipped": state.skipped if state else 0,
            "dead_letters": dead,
            "pending": self.pending(),
            "lag_seconds": None if oldest is None else max(0, int((now - oldest).total_seconds())),
            "oldest_pending": None if oldest is None else oldest.isoformat().replace("+00:00", "Z"),
            "last_update": state.updated_at.isoformat().replace("+00:00", "Z") if state else None,
        }

    # -- dead letters ------------------------------------------------------------------------

    def dead_letters(self, state: str | None = None) -> list[DeadLetterRow]:
        d = tables.dead_letters
        query = select(d).where(d.c.destination == self.destination)
        if state:
            query = query.where(d.c.state == state)
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(query.order_by(d.c.seq, d.c.event_id)).all()
        return [DeadLetterRow(**{k: v for k, v in row._mapping.items() if k != "pk"}) for row in rows]

    def requeue(self, event_ids: Sequence[str] | None = None) -> int:
        """Send dead letters again on the next drain (all, or the given event ids)."""
        d = tables.dead_letters
        cond = and_(d.c.destination == self.destination, d.c.state == "dead")
        if event_ids is not None:
            cond = and_(cond, d.c.event_id.in_(list(event_ids)))
        with self.ledger.transaction() as conn:
            return int(conn.execute(update(d).where(cond).values(state="requeued", updated_at=self.clock())).rowcount)

    # -- tenants -----------------------------------------------------------------------------

    def _set_tenant(self, conn: Connection, tenant: str, state: str, now: datetime) -> None:
        t = tables.outbox_tenants
        key = and_(t.c.destination == self.destination, t.c.tenant == tenant)
        current = conn.execute(select(t.c.state).where(key)).scalar_one_or_none()
        if current is None:
            conn.execute(insert(t).values(destination=self.destination, tenant=tenant, state=state, updated_at=now))
        elif current != state:
            conn.execute(update(t).where(key).values(state=state, updated_at=now))

    def set_tenant_state(self, tenant: str, state: str) -> None:
        with self.ledger.transaction() as conn:
            self._set_tenant(conn, tenant, state, self.clock())
        if state == "active":
            self._active.add(tenant)
        else:
            self._active.discard(tenant)

    def tenant_states(self) -> dict[str, str]:
        t = tables.outbox_tenants
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(t.c.tenant, t.c.state).where(t.c.destination == self.destination))
            return {row.tenant: row.state for row in rows}

    def idle_tenants(self, grace: timedelta) -> list[tuple[str, datetime]]:
        """Active tenants with no usage for longer than ``grace``, as ``(tenant, last end)``.

        "Now" is the newest period end the ledger holds for the tenant's cluster, not the wall
        clock: when collection stalls, or a simulation fills past periods, nobody is offboarded
        just because no new records arrived. A tenant in several clusters must be idle in all.
        """
        t, r = tables.outbox_tenants, schema.records
        with self.ledger.engine.connect() as conn:
            active = sorted(
                row.tenant
                for row in conn.execute(
                    select(t.c.tenant).where(and_(t.c.destination == self.destination, t.c.state == "active"))
                )
            )
            if not active:
                return []
            newest = {
                row.cluster: row.last_end
                for row in conn.execute(select(r.c.cluster, func.max(r.c.end).label("last_end")).group_by(r.c.cluster))
            }
            rows = conn.execute(
                select(r.c.tenant, r.c.cluster, func.max(r.c.end).label("last_end"))
                .where(r.c.tenant.in_(active))
                .group_by(r.c.tenant, r.c.cluster)
            ).all()
        idle: dict[str, datetime] = {}
        busy: set[str] = set()
        for row in rows:
            if newest[row.cluster] - row.last_end > grace:
                idle[row.tenant] = max(idle.get(row.tenant, row.last_end), row.last_end)
            else:
                busy.add(row.tenant)
        # `end` is a period's last second; report the exclusive end
        return sorted((tenant, last + timedelta(seconds=1)) for tenant, last in idle.items() if tenant not in busy)

    # -- setup objects (ObjectStore) ---------------------------------------------------------

    def get_object(self, kind: str, key: str) -> str | None:
        o = tables.outbox_objects
        with self.ledger.engine.connect() as conn:
            return conn.execute(
                select(o.c.remote_id).where(and_(o.c.destination == self.destination, o.c.kind == kind, o.c.key == key))
            ).scalar_one_or_none()

    def put_object(self, kind: str, key: str, remote_id: str, detail: Mapping[str, Any] | None = None) -> None:
        o = tables.outbox_objects
        cond = and_(o.c.destination == self.destination, o.c.kind == kind, o.c.key == key)
        with self.ledger.transaction() as conn:
            conn.execute(delete(o).where(cond))
            conn.execute(
                insert(o).values(
                    destination=self.destination,
                    kind=kind,
                    key=key,
                    remote_id=remote_id,
                    detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
                    updated_at=self.clock(),
                )
            )


def all_destinations(ledger: Ledger) -> list[CursorState]:
    """Every destination that has an outbox in this ledger (for status listings)."""
    c = tables.outbox_cursors
    with ledger.engine.connect() as conn:
        return [CursorState(**row._mapping) for row in conn.execute(select(c).order_by(c.c.destination))]
