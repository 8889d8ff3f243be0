"""Usage rollups: the ledger summed per day and per month, kept current by a ``seq`` cursor.

Reports read these instead of the records, so a month report touches one row per
(tenant, project, namespace, cluster, item, pricing labels) rather than one per record.

**Which labels.** A rollup keeps only the label keys prices can depend on (the state row's
``label_keys``: the pricing dimensions the sources write, plus every key a price book asked
for). Enrichment labels such as ``node`` would otherwise split a namespace's usage into one row
per node and make rollups nearly as big as the ledger. When a report's price book prices by a
key the rollups do not keep, :func:`refresh_rollups` rebuilds them with that key added (once;
the new set is stored), so label prices are always applied to the labels themselves.

**How they stay correct.** ``rating_rollup_state`` holds the ``seq`` of the last ledger row
folded in. :func:`refresh_rollups` folds every later row, in ``seq`` batches, in one
transaction per batch together with the cursor move, so a crash never folds a row twice or
skips it. A row with ``revision > 0`` is a correction: its predecessor ``(id, revision − 1)``
was folded earlier (it has a smaller ``seq``), so the batch *subtracts* the predecessor's usage
from the predecessor's key and adds the new usage to the new key (labels may have changed).
Quantities are summed exactly (PostgreSQL NUMERIC; on SQLite a Python aggregate over the
canonical decimal text, because SQLite's own SUM would go through floats).

**Why no write hook.** Every process that writes the ledger (agents, the server's ingest,
``sim``) would have to carry the hook, and one that did not would silently leave rollups
short. A cursor over the records table is correct whoever wrote them. It needs one care on
PostgreSQL: ``seq`` values are handed out before commit, so a reader could see seq 105 while
103 is still in flight and move past it. :func:`refresh_rollups` therefore first takes a
``SHARE`` lock on ``records`` for an instant — it waits for in-flight writers to finish — and
only folds rows up to the ``max(seq)`` it saw under that lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Numeric,
    Text,
    and_,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.sql import bindparam

from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.ledger.types import ExactDecimal
from kubetally.periods import billing_zone, format_time, local_midnight, local_month_start, zone_name
from kubetally.rating.money import EXACT
from kubetally.rating.tables import DAY, MONTH, ROLLUP_CURSOR, rollup_days, rollup_state, rollups
from kubetally.record import PROVIDER_KINDS, normalize

#: Ledger rows folded per transaction.
DEFAULT_BATCH = 200_000
#: The columns a rollup row is keyed by (besides grain and start).
DIMENSIONS = ("tenant", "project", "namespace", "cluster", "category", "item", "unit", "labels")
_IN_CHUNK = 500
_SQLITE_SUM = "kt_exact_sum"
log = logging.getLogger(__name__)


def labels_json(labels: dict[str, str]) -> str:
    """The ledger's canonical labels text (sorted keys, compact), also used in rollup rows."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class _Projector(dict[str, str]):
    """Labels text → the same labels restricted to the kept keys (memoised: few distinct values)."""

    def __init__(self, keys: frozenset[str]):
        super().__init__()
        # Not ``keys``: that would shadow dict.keys() for anyone treating this as a dict.
        self.kept = keys

    def __missing__(self, text: str) -> str:
        labels = json.loads(text)
        projected = labels_json({k: v for k, v in labels.items() if k in self.kept})
        self[text] = projected
        return projected


class _ExactSum:
    """SQLite aggregate: exact sum of canonical decimal text (SQLite's SUM uses floats)."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: Any) -> None:
        if value is not None:
            self.total = EXACT.add(self.total, Decimal(str(value)))

    def finalize(self) -> str:
        return format(normalize(self.total), "f")


def prepare(conn: Connection) -> None:
    """Make :func:`exact_sum` available on this connection (registers the SQLite aggregate)."""
    if conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        raw.create_aggregate(_SQLITE_SUM, 1, _ExactSum)  # type: ignore[union-attr]


def exact_sum(conn: Connection, column: ColumnElement[Any]) -> ColumnElement[Decimal]:
    """``SUM(column)`` that never rounds: NUMERIC on PostgreSQL, the Python aggregate on SQLite."""
    if conn.dialect.name == "postgresql":
        return func.sum(column, type_=ExactDecimal())
    total: ColumnElement[Decimal] = getattr(func, _SQLITE_SUM)(column, type_=ExactDecimal())
    return total


def rollup_key(grain: str, start: datetime, dims: Sequence[str]) -> str:
    payload = json.dumps([grain, format_time(start), *dims], separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _safe_horizon(ledger: Ledger) -> int:
    """The highest ``seq`` below which every row is committed (see the module docstring)."""
    t = schema.records
    with ledger.transaction() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE records IN SHARE MODE")
        return int(conn.execute(select(func.coalesce(func.max(t.c.seq), 0))).scalar_one())


#: The provider's own records (capacity, idle, down, …) are not anyone's usage: they have their
#: own view (``report --view capacity``) and would otherwise be priced as a tenant "" and summed
#: into every total next to the tenants' usage of the same GPUs.
_PROVIDER = sorted(PROVIDER_KINDS)


def _deltas(
    conn: Connection, low: int, high: int, project: _Projector, zone: tzinfo = UTC
) -> tuple[dict[tuple[Any, ...], list[Any]], int]:
    """Usage and record-count changes per (grain, start, *DIMENSIONS) for rows in (low, high],
    and how many ledger rows that range holds.

    In UTC a record's day is its ``date`` column. In any other zone a record belongs to the
    local day its ``start`` falls in (an hourly record never straddles a local midnight in a
    zone with whole-hour offsets), so rows are summed per ``start`` and placed here."""
    t = schema.records
    new, prev = t.alias("new"), t.alias("prev")
    dims = [t.c[name] for name in DIMENSIONS]
    when, prev_when = (t.c.date, "date") if zone is UTC else (t.c.start, "start")
    added = (
        select(when, *dims, exact_sum(conn, t.c.usage), func.count())
        .where(and_(t.c.seq > low, t.c.seq <= high, t.c.kind.not_in(_PROVIDER)))
        .group_by(when, *dims)
    )
    prev_dims = [prev.c[name] for name in DIMENSIONS]
    superseded = (
        select(prev.c[prev_when], *prev_dims, exact_sum(conn, prev.c.usage), func.count())
        .select_from(new.join(prev, and_(prev.c.id == new.c.id, prev.c.revision == new.c.revision - 1)))
        .where(and_(new.c.seq > low, new.c.seq <= high, new.c.revision > 0, prev.c.kind.not_in(_PROVIDER)))
        .group_by(prev.c[prev_when], *prev_dims)
    )
    deltas: dict[tuple[Any, ...], list[Any]] = {}
    rows_in_range = 0
    for query, sign in ((added, 1), (superseded, -1)):
        for row in conn.execute(query):
            fields: tuple[Any, ...] = tuple(row)
            day: datetime = fields[0]
            values: list[Any] = list(fields[1:-2])
            usage: Decimal = fields[-2]
            count: int = fields[-1]
            values[-1] = project[values[-1]]  # labels are the last dimension
            if sign > 0:
                rows_in_range += count
            day = day.astimezone(UTC) if zone is UTC else local_midnight(day, zone)
            for grain, start in ((DAY, day), (MONTH, local_month_start(day, zone))):
                slot = deltas.setdefault((grain, start, *values), [Decimal(0), 0])
                slot[0] = EXACT.add(slot[0], usage) if sign > 0 else EXACT.subtract(slot[0], usage)
                slot[1] += sign * count
    return deltas, rows_in_range


def _apply(conn: Connection, deltas: dict[tuple[Any, ...], list[Any]]) -> None:
    keyed = {rollup_key(k[0], k[1], k[2:]): (k, v) for k, v in deltas.items() if v[0] != 0 or v[1] != 0}
    existing: dict[str, tuple[Decimal, int]] = {}
    keys = list(keyed)
    for i in range(0, len(keys), _IN_CHUNK):
        rows = conn.execute(
            select(rollups.c.key, rollups.c.usage, rollups.c.records).where(rollups.c.key.in_(keys[i : i + _IN_CHUNK]))
        )
        existing.update({row.key: (row.usage, row.records) for row in rows})
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[str] = []
    for key, (parts, (usage, count)) in keyed.items():
        if key in existing:
            old_usage, old_count = existing[key]
            usage, count = EXACT.add(old_usage, usage), old_count + count
            if count == 0:
                deletes.append(key)
            else:
                updates.append({"k": key, "u": usage, "r": count})
        else:
            if count <= 0:
                raise RuntimeError(f"rollup {parts}: a correction for a key that was never folded in")
            grain, start, *dims = parts
            inserts.append(
                {
                    "key": key,
                    "grain": grain,
                    "start": start,
                    **dict(zip(DIMENSIONS, dims, strict=True)),
                    "usage": usage,
                    "records": count,
                }
            )
    if inserts:
        conn.execute(rollups.insert(), inserts)
    if updates:
        conn.execute(
            update(rollups).where(rollups.c.key == bindparam("k")).values(usage=bindparam("u"), records=bindparam("r")),
            updates,
        )
    for i in range(0, len(deletes), _IN_CHUNK):
        conn.execute(delete(rollups).where(rollups.c.key.in_(deletes[i : i + _IN_CHUNK])))


def _touch_days(conn: Connection, days: set[datetime], cursor: int) -> None:
    """Give every day a fold changed a new version (under the state row's lock, so folds of
    several processes never interleave here)."""
    if not days:
        return
    ordered = sorted(days)
    held: dict[datetime, int] = {}
    for i in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[i : i + _IN_CHUNK]
        found = conn.execute(select(rollup_days.c.start, rollup_days.c.version).where(rollup_days.c.start.in_(chunk)))
        held.update({row.start: int(row.version) for row in found})
    new = [{"start": day, "version": cursor} for day in ordered if day not in held]
    moved = [{"s": day, "v": max(held[day] + 1, cursor)} for day in ordered if day in held]
    if new:
        conn.execute(rollup_days.insert(), new)
    if moved:
        conn.execute(
            update(rollup_days).where(rollup_days.c.start == bindparam("s")).values(version=bindparam("v")), moved
        )


def day_versions(conn: Connection, start: datetime, end: datetime) -> tuple[tuple[datetime, int], ...]:
    """(day, version) of every rollup day starting in ``[start, end)``: equal tuples read at two
    moments mean no fold changed any of those days in between."""
    rows = conn.execute(
        select(rollup_days.c.start, rollup_days.c.version)
        .where(rollup_days.c.start >= start, rollup_days.c.start < end)
        .order_by(rollup_days.c.start)
    )
    return tuple((row.start, int(row.version)) for row in rows)


def _state(conn: Connection) -> tuple[int, frozenset[str], str]:
    """The cursor, kept label keys and zone, with the state row locked for this transaction."""
    row = conn.execute(
        select(rollup_state.c.seq, rollup_state.c.label_keys, rollup_state.c.timezone)
        .where(rollup_state.c.name == ROLLUP_CURSOR)
        .with_for_update()
    ).one()
    return int(row.seq), frozenset(json.loads(row.label_keys)), str(row.timezone)


def _reset(conn: Connection, keys: Iterable[str], zone: str) -> None:
    conn.execute(delete(rollups))
    # Every day changes now (its rows are gone until folded again), and again when folded.
    conn.execute(update(rollup_days).values(version=rollup_days.c.version + 1))
    conn.execute(
        update(rollup_state)
        .where(rollup_state.c.name == ROLLUP_CURSOR)
        .values(seq=0, label_keys=json.dumps(sorted(keys)), timezone=zone, updated_at=datetime.now(UTC))
    )


def rollup_label_keys(ledger: Ledger) -> frozenset[str]:
    with ledger.engine.connect() as conn:
        text: str = conn.execute(
            select(rollup_state.c.label_keys).where(rollup_state.c.name == ROLLUP_CURSOR)
        ).scalar_one()
        return frozenset(json.loads(text))


def refresh_rollups(
    ledger: Ledger, *, label_keys: Iterable[str] = (), batch: int = DEFAULT_BATCH, zone: tzinfo = UTC
) -> int:
    """Fold every committed ledger row not yet in the rollups; returns how many were folded.

    ``label_keys`` are keys the caller will price by; if the rollups do not keep one of them
    they are rebuilt keeping it. ``zone`` is the billing time zone whose local days and months
    the rows start at; rollups kept in another zone are rebuilt in this one. Safe to run from
    several processes at once: the cursor row is locked per batch, and a rebuild is one
    transaction.
    """
    needed = frozenset(label_keys)
    wanted = zone_name(zone)
    with ledger.transaction() as conn:
        _, kept, kept_zone = _state(conn)
        if not needed <= kept:
            log.warning("rebuilding usage rollups to keep label keys %s", ", ".join(sorted(needed - kept)))
            _reset(conn, kept | needed, wanted)
        elif kept_zone != wanted:
            log.warning("rebuilding usage rollups in billing time zone %s (they were in %s)", wanted, kept_zone)
            _reset(conn, kept, wanted)
    horizon = _safe_horizon(ledger)
    folded = 0
    projectors: dict[frozenset[str], _Projector] = {}
    while True:
        with ledger.transaction() as conn:
            prepare(conn)
            cursor, kept, kept_zone = _state(conn)
            if cursor >= horizon:
                return folded
            high = min(cursor + batch, horizon)
            project = projectors.setdefault(kept, _Projector(kept))
            deltas, rows = _deltas(conn, cursor, high, project, billing_zone(kept_zone))
            _apply(conn, deltas)
            _touch_days(conn, {key[1] for key in deltas if key[0] == DAY}, high)
            folded += rows
            conn.execute(
                update(rollup_state)
                .where(rollup_state.c.name == ROLLUP_CURSOR)
                .values(seq=high, updated_at=datetime.now(UTC))
            )
        if high >= horizon:
            return folded


def rebuild_rollups(ledger: Ledger) -> int:
    """Drop every rollup row and fold the whole ledger again (repair; normally never needed)."""
    with ledger.transaction() as conn:
        _, kept, kept_zone = _state(conn)
        _reset(conn, kept, kept_zone)
    return refresh_rollups(ledger, zone=billing_zone(kept_zone))


def rollup_cursor(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(rollup_state.c.seq).where(rollup_state.c.name == ROLLUP_CURSOR)).scalar_one())


def summed_usage(
    conn: Connection,
    grain: str,
    segments: Sequence[tuple[datetime, datetime]],
    columns: Sequence[str],
    filters: dict[str, Sequence[str] | None] | None = None,
    excluded: dict[str, Sequence[str]] | None = None,
) -> list[Any]:
    """Rollup usage of ``grain`` rows summed exactly per segment and ``columns`` (a subset of
    :data:`DIMENSIONS`), optionally only where a column is one of the given values
    (``filters``) or none of them (``excluded``).

    One query for every segment (a ``CASE`` names the segment a row's ``start`` falls in and
    is grouped by): a report of a month per day is one round trip, not thirty. Rows are
    ``(segment index, *columns, usage)`` with ``usage`` a canonical Decimal (no trailing zeros:
    PostgreSQL's ``trim_scale`` does it in the query, the SQLite aggregate returns canonical
    text), so no row is re-normalised in Python."""
    if not segments:
        return []
    prepare(conn)
    cols = [rollups.c[name] for name in columns]
    start = rollups.c.start
    within = [and_(start >= low, start < high) for low, high in segments]
    segment = case(*((w, i) for i, w in enumerate(within))).label("segment")
    sqlite = conn.dialect.name == "sqlite"
    total: ColumnElement[Any] = (
        getattr(func, _SQLITE_SUM)(rollups.c.usage, type_=Text())
        if sqlite
        else func.trim_scale(func.sum(rollups.c.usage), type_=Numeric(asdecimal=True))
    )
    query = select(segment, *cols, total).where(rollups.c.grain == grain, or_(*within))
    for name, values in (filters or {}).items():
        if values is not None:
            query = query.where(rollups.c[name].in_(list(values)))
    for name, values in (excluded or {}).items():
        if values:
            query = query.where(rollups.c[name].not_in(list(values)))
    # Grouped by the output column's name: a repeated CASE would carry fresh bind parameters,
    # which PostgreSQL does not recognise as the selected expression.
    result = conn.execute(query.group_by(literal_column("segment"), *cols)).all()
    if sqlite:
        return [(*row[:-1], Decimal(row[-1])) for row in result]
    return list(result)
