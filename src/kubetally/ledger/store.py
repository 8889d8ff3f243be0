"""The ledger: durable, idempotent storage of usage records and collection progress.

Writing is the one operation every source shares, so its rules live here and nowhere else:

* same id, same quantity and labels → nothing happens (a re-run is free);
* same id, different quantity or labels → a new *revision* row; the old row stays, marked
  not current, so history is never rewritten and delivery can send a correction;
* records and the watermark that says "these periods are done" commit in one transaction, so a
  crash leaves either the whole period or none of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, create_engine, event, select, update
from sqlalchemy.exc import ArgumentError, IntegrityError

from kubetally.errors import KubetallyError
from kubetally.ledger import schema
from kubetally.ledger.migrate import SchemaTooNew, schema_state, upgrade
from kubetally.ledger.rows import record_from_row
from kubetally.record import UsageRecord
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


def _labels_json(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


#: Rows become records in one place (see :mod:`kubetally.ledger.rows`).
_row_to_record = record_from_row


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (report, deliver) run while an agent writes; busy_timeout makes a second
    # writer wait instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
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
        result = WriteResult()
        now = datetime.now(UTC)
        # Last one wins inside a batch, as if they had been written one after another.
        by_id: dict[str, UsageRecord] = {}
        for record in records:
            by_id[record.id] = record
        t = schema.records
        ids = list(by_id)
        current: dict[str, Any] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            rows = conn.execute(
                select(t.c.id, t.c.revision, t.c.usage, t.c.labels, t.c.unit).where(
                    and_(t.c.id.in_(chunk), t.c.current.is_(True))
                )
            )
            current.update({row.id: row for row in rows})
        inserts: list[dict[str, Any]] = []
        superseded: list[str] = []
        for rid, record in by_id.items():
            labels = _labels_json(record.labels)
            existing = current.get(rid)
            if existing is None:
                revision = 0
                result.inserted += 1
            elif existing.usage == record.usage and existing.labels == labels and existing.unit == record.unit:
                result.unchanged += 1
                continue
            else:
                revision = existing.revision + 1
                superseded.append(rid)
                result.revised += 1
                result.revised_ids.append(rid)
            inserts.append(
                {
                    "id": rid,
                    "revision": revision,
                    "current": True,
                    "kind": record.kind,
                    "category": record.category,
                    "item": record.item,
                    "name": record.name,
                    "namespace": record.namespace,
                    "cluster": record.cluster,
                    "project": record.project,
                    "tenant": record.tenant,
                    "labels": labels,
                    "date": record.date,
                    "period": str(record.period),
                    "start": record.start,
                    "end": record.end,
                    "usage": record.usage,
                    "unit": record.unit,
                    "recorded_at": now,
                }
            )
        for i in range(0, len(superseded), _IN_CHUNK):
            conn.execute(
                update(t)
                .where(and_(t.c.id.in_(superseded[i : i + _IN_CHUNK]), t.c.current.is_(True)))
                .values(current=False)
            )
        if inserts:
            conn.execute(t.insert(), inserts)
        for mark in watermarks:
            self._set_watermark(conn, mark, now)
        return result

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
