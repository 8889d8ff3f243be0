"""The ledger: durable, idempotent storage of usage records and collection progress.

Writing is the one operation every source shares, so its rules live here and nowhere else:

* same id, same quantity and labels → nothing happens (a re-run is free);
* same id, different quantity or labels → a new *revision* row; the old row stays, marked
  not current, so history is never rewritten and delivery can send a correction;
* records and the watermark that says "these periods are done" commit in one transaction, so a
  crash leaves either the whole period or none of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, create_engine, event, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError

from kubetally.errors import KubetallyError
from kubetally.ledger import schema
from kubetally.ledger.migrate import SchemaTooNew, schema_state, upgrade
from kubetally.ledger.rows import record_from_row
from kubetally.record import UsageRecord, json_string, normalize
from kubetally.redact import redact_url as redact  # database URLs fit for messages

DEFAULT_DB = "kubetally.db"
_IN_CHUNK = 500


class LedgerError(KubetallyError):
    """The ledger database cannot be opened or written."""


def database_url(db: str | None) -> str:
    """Turn a ``--db`` value (SQLite path or ``postgresql://`` URL) into a SQLAlchemy URL."""
    db = db or os.environ.get("KUBETALLY_DB") or DEFAULT_DB
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    if "://" in db:
        return db
    if db == ":memory:":
        return "sqlite://"
    return f"sqlite:///{Path(db).expanduser()}"


@dataclass(frozen=True)
class Watermark:
    """``until`` is the exclusive end of the last collected period of (source, cluster, item)."""

    source: str
    cluster: str
    item: str
    until: datetime


@dataclass
class WriteResult:
    inserted: int = 0
    revised: int = 0
    unchanged: int = 0
    revised_ids: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.inserted + self.revised

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.inserted += other.inserted
        self.revised += other.revised
        self.unchanged += other.unchanged
        self.revised_ids.extend(other.revised_ids)
        return self


_INSERT_COLUMNS = (
    "id",
    "revision",
    "current",
    "kind",
    "category",
    "item",
    "name",
    "namespace",
    "cluster",
    "project",
    "tenant",
    "labels",
    "date",
    "period",
    "start",
    '"end"',
    "usage",
    "unit",
    "recorded_at",
)
_COLUMNS = ", ".join(_INSERT_COLUMNS)
_CURRENT_SQLITE = "SELECT id, revision, current, usage, labels, unit FROM records WHERE id IN ({marks})"
_CURRENT_PG = "SELECT id, revision, current, usage, labels, unit FROM records WHERE id = ANY(%s)"


def naive_utc(value: datetime) -> datetime:
    """A datetime as the ``UTCDateTime`` column type binds it: naive, in UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def sqlite_time(value: datetime) -> str:
    """A datetime as ``UTCDateTime`` stores it on SQLite (SQLAlchemy's SQLite DATETIME storage
    format of the naive UTC time), for rows bound without SQLAlchemy's per-parameter processing."""
    v = naive_utc(value)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"


#: The text columns a record's row takes from its fields, in ``_INSERT_COLUMNS`` order.
_SUBJECT = itemgetter("kind", "category", "item", "name", "namespace", "cluster", "project", "tenant")
#: Distinct label sets whose JSON is kept per write (a batch repeats a few thousand of them).
_LABELS_CACHED = 50_000


class _Binder:
    """Values as the column types store them (see :mod:`kubetally.ledger.types`), each computed
    once per distinct value in a batch: a batch shares a handful of period bounds and a few
    thousand label sets, so rows are plain tuples passed straight to the driver instead of going
    through per-parameter processing."""

    def __init__(self, dialect: str):
        self.sqlite = dialect == "sqlite"
        self.mark = "?" if self.sqlite else "%s"
        self.true: Any = 1 if self.sqlite else True
        self.false_sql = "0" if self.sqlite else "false"
        self._times: dict[datetime, Any] = {}
        self._bounds: dict[tuple[datetime, datetime, datetime], tuple[Any, Any, Any]] = {}
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}

    def time(self, value: datetime) -> Any:
        out = self._times.get(value)
        if out is None:
            out = self._times[value] = sqlite_time(value) if self.sqlite else naive_utc(value)
        return out

    def times(self, date: datetime, period: Any, start: datetime, end: datetime) -> tuple[Any, str, Any, Any]:
        """(date, period, start, end) of a row."""
        key = (date, start, end)
        bounds = self._bounds.get(key)
        if bounds is None:
            bounds = self._bounds[key] = (self.time(date), self.time(start), self.time(end))
        return bounds[0], str(period), bounds[1], bounds[2]

    def labels(self, labels: dict[str, str]) -> str:
        """:func:`_labels_json`, once per distinct label set (keyed by its items in order: the same
        items in another order are another key with the same JSON)."""
        key = tuple(labels.items())
        out = self._labels.get(key)
        if out is None:
            if len(self._labels) >= _LABELS_CACHED:
                self._labels.clear()
            out = self._labels[key] = _labels_json(labels)
        return out

    def usage(self, value: Decimal) -> Any:
        value = normalize(value)
        return format(value, "f") if self.sqlite else value


def _labels_json(labels: dict[str, str]) -> str:
    """``json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, written
    pair by pair with the JSON of repeated keys and values cached (once per record)."""
    if not labels:
        return "{}"
    return "{" + ",".join([f"{json_string(k)}:{json_string(v)}" for k, v in sorted(labels.items())]) + "}"


#: Rows become records in one place (see :mod:`kubetally.ledger.rows`).
_row_to_record = record_from_row


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (report, deliver) run while an agent writes; busy_timeout makes a second
    # writer wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 64 MiB of page cache (default 2 MiB): record ids are random, so every insert touches a
    # random leaf of the id index; with the default cache a growing ledger re-reads them.
    cursor.execute("PRAGMA cache_size=-65536")
    # Checkpoint every ~40 MB of WAL (default ~4 MB, i.e. at almost every period a collector
    # commits): a fifth less CPU per written record. Durability is that of WAL with
    # synchronous=NORMAL either way: a commit survives the process crashing; after a power loss
    # the last commits may be rolled back, each whole (records, journal and watermark together),
    # so the ledger is consistent and the next run re-collects from the rolled-back watermark.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # pysqlite runs in autocommit mode here (isolation_level=None), so transactions are ours to
    # begin. Writers take the write lock up front so read-then-write in `write` cannot
    # interleave with another process; readers stay deferred and never block.
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Ledger:
    """The usage ledger on SQLite or PostgreSQL. Open with :meth:`open`; close when done."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, db: str | None = None, *, migrate: bool = True) -> Ledger:
        """Open the ledger at ``db`` (``--db``, else ``$KUBETALLY_DB``, else ./kubetally.db).

        ``migrate=True`` is for the commands that own a ledger (collect, agent, server,
        ``kubetally migrate``): a missing ledger is created and an older schema upgraded.
        ``migrate=False`` is for everything else: a missing ledger, an empty database or a schema
        older or newer than this kubetally is refused with the command that fixes it, and nothing
        is created or changed — a typo'd ``--db`` must not print an empty, plausible bill.
        """
        spelled = db or os.environ.get("KUBETALLY_DB") or DEFAULT_DB
        url = database_url(db)
        shown = redact(spelled)
        fix = f"`kubetally migrate --db {shown}`"
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            if url != "sqlite://":
                path = Path(url.removeprefix("sqlite:///"))
                if path.parent and not path.parent.exists():
                    raise LedgerError(f"ledger {path}: directory {path.parent} does not exist")
                if not migrate and not path.exists():
                    raise LedgerError(
                        f"ledger {path} does not exist (a typo?); create it with {fix} or `kubetally collect`"
                    )
                if path.exists() and path.is_dir():
                    raise LedgerError(f"ledger {path}: is a directory, not a SQLite file")
            kwargs["connect_args"] = {"isolation_level": None, "check_same_thread": False}
        try:
            engine = create_engine(url, **kwargs)
        except (ArgumentError, ImportError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerError(
                f"--db {shown}: not a usable ledger URL ({reason}); use a SQLite path or postgresql://USER@HOST:PORT/DB"
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        ledger = cls(engine)
        try:
            with ledger.transaction() as conn:
                if migrate:
                    upgrade(conn)
                else:
                    state = schema_state(conn)
        except SchemaTooNew as exc:
            engine.dispose()
            raise LedgerError(f"ledger {shown}: {exc}; use that kubetally (or newer) with this ledger") from None
        except Exception as exc:  # reported with the (redacted) URL, then re-raised
            engine.dispose()
            # The driver's own message, first line only: one-line reasons on the command line.
            text = str(getattr(exc, "orig", None) or exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise LedgerError(f"ledger {redact(url)}: cannot open: {reason}") from exc
        if not migrate:
            problem = None
            if state.empty:
                problem = "is not a kubetally ledger (no schema)"
            elif state.newer:
                engine.dispose()
                raise LedgerError(
                    f"ledger {shown}: schema revision {', '.join(sorted(state.unknown))} is newer than this "
                    "kubetally understands; use the kubetally that migrated it (or newer)"
                )
            elif state.older:
                problem = "has an older schema than this kubetally"
            if problem:
                engine.dispose()
                raise LedgerError(f"ledger {shown} {problem}; run {fix} first")
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction (on SQLite: ``BEGIN IMMEDIATE``)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    # -- writing ---------------------------------------------------------------------------

    def write(
        self,
        records: Iterable[UsageRecord],
        *,
        watermarks: Sequence[Watermark] = (),
        conn: Connection | None = None,
    ) -> WriteResult:
        """Idempotently write records (and advance watermarks) in one transaction."""
        if conn is not None:
            return self._write(conn, list(records), watermarks)
        for attempt in range(3):
            try:
                with self.transaction() as c:
                    return self._write(c, list(records), watermarks)
            except IntegrityError:
                # Another writer inserted the same (id, revision) between our read and write
                # (PostgreSQL only; SQLite holds the write lock). Re-read and try again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _write(self, conn: Connection, records: list[UsageRecord], watermarks: Sequence[Watermark]) -> WriteResult:
        now = datetime.now(UTC)
        # Last one wins inside a batch, as if they had been written one after another.
        by_id = {record.id: record for record in records}
        current = self._current_rows(conn, list(by_id))
        bind = _Binder(self.dialect)
        rows: list[tuple[Any, ...]] = []
        superseded: list[tuple[str, int]] = []
        revised_ids: list[str] = []
        unchanged = 0
        recorded_at = bind.time(now)
        true = bind.true
        labels_json = bind.labels
        times = bind.times
        usage_of = bind.usage
        for rid, record in by_id.items():
            values = record.__dict__  # a record's fields, read without attribute lookups
            labels = labels_json(values["labels"])
            usage = values["usage"]
            revision = 0
            if current:
                existing = current.get(rid)
                if existing is not None:
                    if existing[1] == usage and existing[2] == labels and existing[3] == values["unit"]:
                        unchanged += 1
                        continue
                    revision = existing[0] + 1
                    superseded.append((rid, existing[0]))
                    revised_ids.append(rid)
            date, period, start, end = times(values["date"], values["period"], values["start"], values["end"])
            rows.append(
                (
                    rid,
                    revision,
                    true,
                    *_SUBJECT(values),
                    labels,
                    date,
                    period,
                    start,
                    end,
                    usage_of(usage),
                    values["unit"],
                    recorded_at,
                )
            )
        if superseded:
            # One row each, by (id, revision): the unique index, whatever the statistics say.
            conn.exec_driver_sql(
                f"UPDATE records SET current = {bind.false_sql} WHERE id = {bind.mark} AND revision = {bind.mark}",
                superseded,
            )
        if rows:
            self._insert_rows(conn, rows, bind)
        for mark in watermarks:
            self._set_watermark(conn, mark, now)
        revised = len(revised_ids)
        return WriteResult(inserted=len(rows) - revised, revised=revised, unchanged=unchanged, revised_ids=revised_ids)

    def _current_rows(self, conn: Connection, ids: list[str]) -> dict[str, tuple[int, Any, str, str]]:
        """(revision, usage, labels, unit) of the current row of each id that has one.

        Looked up by id alone (every revision, the current one picked here) so that both databases
        use the unique (id, revision) index: with ``AND current`` in the query SQLite picked the
        (current, start) index and scanned every current row of the ledger per chunk."""
        out: dict[str, tuple[int, Any, str, str]] = {}
        if not ids:
            return out
        with self._by_id_index(conn):
            for query, params in self._lookups(ids):
                row: Any
                for row in conn.exec_driver_sql(query, params).fetchall():
                    rid, revision, is_current, usage, labels, unit = row
                    if is_current:
                        # SQLite keeps the canonical text, PostgreSQL a NUMERIC: compared as Decimals.
                        out[rid] = (revision, usage if isinstance(usage, Decimal) else Decimal(usage), labels, unit)
        return out

    def _lookups(self, ids: list[str]) -> Iterator[tuple[str, Any]]:
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            if self.dialect == "postgresql":
                yield _CURRENT_PG, (chunk,)
            else:
                yield _CURRENT_SQLITE.format(marks=",".join("?" * len(chunk))), tuple(chunk)

    @contextmanager
    def _by_id_index(self, conn: Connection) -> Iterator[None]:
        """On PostgreSQL, no sequential scan for the lookups: during a fast-growing run the
        statistics say the table is tiny, and the planner scans the whole ledger per chunk. Set
        for this transaction only and put back afterwards."""
        if self.dialect != "postgresql":
            yield
            return
        previous: str = conn.exec_driver_sql("SELECT current_setting('enable_seqscan')").scalar_one()
        conn.exec_driver_sql("SELECT set_config('enable_seqscan', 'off', true)")
        try:
            yield
        finally:
            conn.exec_driver_sql("SELECT set_config('enable_seqscan', %s, true)", (previous,))

    def lookup_plan(self, ids: list[str]) -> list[str]:
        """The database's query plan of the revision check for ``ids`` (the same statements and
        settings as :meth:`write`): the plan tests prove it uses the unique id index."""
        explain = "EXPLAIN " if self.dialect == "postgresql" else "EXPLAIN QUERY PLAN "
        lines: list[str] = []
        with self.engine.connect() as conn, conn.begin(), self._by_id_index(conn):
            for query, params in self._lookups(ids):
                lines += [str(row[-1]) for row in conn.exec_driver_sql(explain + query, params)]
        return lines

    def _insert_rows(self, conn: Connection, rows: list[tuple[Any, ...]], bind: _Binder) -> None:
        if self.dialect == "postgresql":
            # COPY: the fastest way into PostgreSQL, in the caller's transaction.
            import psycopg

            raw = conn.connection.driver_connection
            statement = f"COPY records ({_COLUMNS}) FROM STDIN"
            try:
                with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                    for row in rows:
                        copy.write_row(row)
            except psycopg.errors.IntegrityError as exc:
                # A concurrent writer took an (id, revision): the same error `write` retries on.
                raise IntegrityError(statement, None, exc) from exc
            return
        marks = ",".join([bind.mark] * len(_INSERT_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO records ({_COLUMNS}) VALUES ({marks})", rows)

    def _set_watermark(self, conn: Connection, mark: Watermark, now: datetime) -> None:
        w = schema.watermarks
        key = and_(w.c.source == mark.source, w.c.cluster == mark.cluster, w.c.item == mark.item)
        existing = conn.execute(select(w.c.until).where(key)).scalar_one_or_none()
        if existing is None:
            conn.execute(
                w.insert().values(
                    source=mark.source, cluster=mark.cluster, item=mark.item, until=mark.until, updated_at=now
                )
            )
        elif existing < mark.until:
            # Watermarks only move forward: a backfill of old periods never rewinds progress.
            conn.execute(update(w).where(key).values(until=mark.until, updated_at=now))

    def set_watermark(self, mark: Watermark) -> None:
        self.write([], watermarks=[mark])

    # -- reading ---------------------------------------------------------------------------

    def watermark(self, source: str, cluster: str, item: str) -> datetime | None:
        w = schema.watermarks
        with self.engine.connect() as conn:
            return conn.execute(
                select(w.c.until).where(and_(w.c.source == source, w.c.cluster == cluster, w.c.item == item))
            ).scalar_one_or_none()

    def watermarks(self) -> list[Watermark]:
        w = schema.watermarks
        with self.engine.connect() as conn:
            rows = conn.execute(select(w).order_by(w.c.source, w.c.cluster, w.c.item))
            return [Watermark(r.source, r.cluster, r.item, r.until) for r in rows]

    def records(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        item: str | Sequence[str] | None = None,
        namespace: str | None = None,
        tenant: str | None = None,
        cluster: str | None = None,
        history: bool = False,
    ) -> Iterator[UsageRecord]:
        """Records whose period starts in ``[start, end)``; current revisions unless ``history``."""
        t = schema.records
        query = select(t)
        if not history:
            query = query.where(t.c.current.is_(True))
        if start is not None:
            query = query.where(t.c.start >= start)
        if end is not None:
            query = query.where(t.c.start < end)
        if item is not None:
            items = [item] if isinstance(item, str) else list(item)
            query = query.where(t.c.item.in_(items))
        if namespace is not None:
            query = query.where(t.c.namespace == namespace)
        if tenant is not None:
            query = query.where(t.c.tenant == tenant)
        if cluster is not None:
            query = query.where(t.c.cluster == cluster)
        query = query.order_by(t.c.start, t.c.item, t.c.tenant, t.c.name, t.c.id, t.c.revision)
        with self.engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=2000)):
                yield _row_to_record(row)

    def changes(self, after_seq: int, limit: int = 1000) -> list[tuple[int, UsageRecord]]:
        """Every row written after ``after_seq`` (all revisions), in write order, for cursors."""
        t = schema.records
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.seq > after_seq).order_by(t.c.seq).limit(limit))
            return [(row.seq, _row_to_record(row)) for row in rows]

    def revision(self, record_id: str, revision: int) -> UsageRecord | None:
        t = schema.records
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(and_(t.c.id == record_id, t.c.revision == revision))).one_or_none()
            return None if row is None else _row_to_record(row)
