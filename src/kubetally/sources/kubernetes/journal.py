"""The lifetime journal in the ledger: reading and writing ``kubernetes_segments``.

Every function takes the caller's :class:`~sqlalchemy.Connection`, so journal changes commit in
the same transaction as the records they produced (a crash leaves both or neither).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, update

from kubetally.ledger.schema import watermarks as w
from kubetally.ledger.store import sqlite_time
from kubetally.sources.kubernetes.lifetimes import Billed, signature_of
from kubetally.sources.kubernetes.meter import Segment
from kubetally.sources.kubernetes.tables import segments as t

_CHUNK = 500
_INSERT_SLICE = 5_000


def _segment(row: Any) -> Segment:
    return Segment(
        uid=row.uid,
        role=row.role,
        billed=Billed.from_json(row.billed),
        start=row.started_at,
        end=row.ended_at,
        id=row.seq,
    )


def open_segments(conn: Connection, cluster: str) -> list[tuple[Segment, datetime]]:
    """Every open segment with its ``last_seen_at``."""
    rows = conn.execute(select(t).where(and_(t.c.cluster == cluster, t.c.ended_at.is_(None))).order_by(t.c.seq))
    return [(_segment(row), row.last_seen_at) for row in rows]


def closed_of_role(conn: Connection, cluster: str, role: str) -> list[Segment]:
    """Every closed segment of one role still in the journal (nodes: a few per node)."""
    rows = conn.execute(
        select(t).where(and_(t.c.cluster == cluster, t.c.role == role, t.c.ended_at.is_not(None))).order_by(t.c.seq)
    )
    return [_segment(row) for row in rows]


def last_closed(conn: Connection, cluster: str, uids: Iterable[str]) -> dict[tuple[str, str], Segment]:
    """The latest closed segment per (uid, role) among ``uids``: tells the tracker an object was
    seen before and where its billed time already ends."""
    out: dict[tuple[str, str], Segment] = {}
    ids = sorted(set(uids))
    for i in range(0, len(ids), _CHUNK):
        rows = conn.execute(
            select(t)
            .where(and_(t.c.cluster == cluster, t.c.uid.in_(ids[i : i + _CHUNK]), t.c.ended_at.is_not(None)))
            .order_by(t.c.ended_at, t.c.seq)
        )
        for row in rows:
            out[(row.uid, row.role)] = _segment(row)
    return out


def insert(conn: Connection, cluster: str, segment: Segment, last_seen: datetime, reason: str | None) -> int:
    result = conn.execute(
        t.insert().values(
            cluster=cluster,
            uid=segment.uid,
            role=segment.role,
            tenant=segment.billed.tenant,
            signature=segment.billed.signature,
            billed=segment.billed.to_json(),
            started_at=segment.start,
            ended_at=segment.end,
            last_seen_at=last_seen,
            end_reason=reason,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


_INSERT_SQLITE = (
    "INSERT INTO kubernetes_segments (cluster, uid, role, tenant, signature, billed, started_at, ended_at, "
    "last_seen_at, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_many(conn: Connection, cluster: str, rows: Sequence[tuple[Segment, datetime, str | None]]) -> list[int]:
    """Insert segments (a few statements of many rows); their new ``seq`` in the same order."""
    if rows and conn.dialect.name == "sqlite":
        seqs = _insert_many_sqlite(conn, cluster, rows)
        if seqs is not None:
            return seqs
    seqs = []
    # In slices: a first sync of a large cluster journals every object at once, and the
    # statement's parameters (each with its billed JSON) would otherwise all be held together.
    for i in range(0, len(rows), _INSERT_SLICE):
        params = []
        for s, seen, reason in rows[i : i + _INSERT_SLICE]:
            text = s.billed.to_json()  # once: the signature is its hash
            params.append(
                {
                    "cluster": cluster,
                    "uid": s.uid,
                    "role": s.role,
                    "tenant": s.billed.tenant,
                    "signature": signature_of(text),
                    "billed": text,
                    "started_at": s.start,
                    "ended_at": s.end,
                    "last_seen_at": seen,
                    "end_reason": reason,
                }
            )
        result = conn.execute(t.insert().returning(t.c.seq, sort_by_parameter_order=True), params)
        seqs.extend(int(row[0]) for row in result)
    return seqs


def _insert_many_sqlite(
    conn: Connection, cluster: str, rows: Sequence[tuple[Segment, datetime, str | None]]
) -> list[int] | None:
    """:func:`insert_many` on SQLite: one ``executemany`` of plain tuples, where SQLAlchemy ran
    one ``INSERT … RETURNING`` per segment to keep their order (100,000 statements for the first
    sync of a 100,000-pod cluster).

    The new ``seq`` values are read back instead of returned: SQLite gives each inserted row a
    rowid above every existing one, and the transaction holds the write lock, so when the rows
    above the previous maximum are exactly as many as inserted and consecutive, they are these
    rows in this order. If not (a rowid at its limit makes SQLite pick them at random), they are
    deleted again and ``None`` sends the caller the row-by-row way."""
    times: dict[datetime, str] = {}

    def time(value: datetime) -> str:
        out = times.get(value)
        if out is None:
            out = times[value] = sqlite_time(value)
        return out

    params = []
    for s, seen, reason in rows:
        billed = s.billed
        text = billed.to_json()  # once: the signature is its hash
        end = None if s.end is None else time(s.end)
        params.append(
            (cluster, s.uid, s.role, billed.tenant, signature_of(text), text, time(s.start), end, time(seen), reason)
        )
    before = conn.exec_driver_sql("SELECT max(seq) FROM kubernetes_segments").scalar() or 0
    conn.exec_driver_sql(_INSERT_SQLITE, params)
    del params
    span: Any = conn.exec_driver_sql(
        "SELECT min(seq), max(seq), count(*) FROM kubernetes_segments WHERE seq > ?", (before,)
    ).one()
    lo, hi, count = span
    if count == len(rows) and hi - lo + 1 == count:
        return list(range(lo, hi + 1))
    conn.exec_driver_sql("DELETE FROM kubernetes_segments WHERE seq > ?", (before,))
    return None


def close(conn: Connection, seq: int, end: datetime, reason: str) -> None:
    conn.execute(update(t).where(t.c.seq == seq).values(ended_at=end, end_reason=reason))


def restart_many(conn: Connection, starts: Sequence[tuple[int, datetime]]) -> None:
    """Move the start of open segments back (their object dated them earlier; see the tracker)."""
    if starts:
        conn.execute(
            update(t).where(t.c.seq == bindparam("b_seq")).values(started_at=bindparam("b_start")),
            [{"b_seq": seq, "b_start": start} for seq, start in starts],
        )


def close_many(conn: Connection, closes: Sequence[tuple[int, datetime, str]]) -> None:
    """End several segments in one executemany."""
    if closes:
        conn.execute(
            update(t)
            .where(t.c.seq == bindparam("b_seq"))
            .values(ended_at=bindparam("b_end"), end_reason=bindparam("b_reason")),
            [{"b_seq": seq, "b_end": end, "b_reason": reason} for seq, end, reason in closes],
        )


#: Watermark source of the per-kind confirmations (next to the journal horizon).
CONFIRMED_SOURCE = "kubernetes.journal"


def confirmed_item(kind: str) -> str:
    return f"confirmed {kind}"


def touch_segments(conn: Connection, cluster: str, roles: Sequence[str], seen: datetime) -> None:
    """Open segments of ``roles`` were confirmed to exist at ``seen`` (their ``last_seen_at``)."""
    conn.execute(
        update(t)
        .where(and_(t.c.cluster == cluster, t.c.ended_at.is_(None), t.c.role.in_(list(roles)), t.c.last_seen_at < seen))
        .values(last_seen_at=seen)
    )


def touch(conn: Connection, cluster: str, kind: str, seen: datetime) -> None:
    """Every open segment of ``kind`` was confirmed to exist at ``seen`` (a healthy list/watch).

    One row per kind (a watermark that only moves forward), so the agent's every tick does not
    rewrite ``last_seen_at`` of every open segment (at 100k pods an UPDATE of 100k+ rows per
    tick); that is done when a period is written (:func:`touch_segments`). An open segment's
    last-seen time is the later of its ``last_seen_at`` and its kind's confirmation
    (:func:`confirmations`): what the per-tick rewrite stored."""
    key = and_(w.c.source == CONFIRMED_SOURCE, w.c.cluster == cluster, w.c.item == confirmed_item(kind))
    existing = conn.execute(select(w.c.until).where(key)).scalar_one_or_none()
    if existing is None:
        conn.execute(
            w.insert().values(
                source=CONFIRMED_SOURCE, cluster=cluster, item=confirmed_item(kind), until=seen, updated_at=seen
            )
        )
    elif existing < seen:
        conn.execute(update(w).where(key).values(until=seen, updated_at=seen))


def confirmations(conn: Connection, cluster: str, kinds: Iterable[str]) -> dict[str, datetime]:
    """kind → when its open segments were last confirmed (see :func:`touch`)."""
    items = {confirmed_item(kind): kind for kind in kinds}
    rows = conn.execute(
        select(w.c.item, w.c.until).where(
            and_(w.c.source == CONFIRMED_SOURCE, w.c.cluster == cluster, w.c.item.in_(list(items)))
        )
    )
    return {items[row.item]: row.until for row in rows}


def overlapping(
    conn: Connection, cluster: str, start: datetime, end: datetime, known: Mapping[int, Billed] | None = None
) -> list[Segment]:
    """Segments that overlap ``[start, end)``.

    ``known`` maps journal ``seq`` to the billed attributes the caller already holds (the
    tracker's rows): those are reused, not parsed again from their JSON. At 100k pods a second,
    parsed copy of every segment's billed attributes was a few hundred MB and most of the read's
    time; only segments the caller no longer holds (older closed stretches) are parsed."""
    known = known or {}
    rows = conn.execute(
        select(t.c.seq, t.c.uid, t.c.role, t.c.started_at, t.c.ended_at)
        .where(and_(t.c.cluster == cluster, t.c.started_at < end, or_(t.c.ended_at.is_(None), t.c.ended_at > start)))
        .order_by(t.c.seq)
    ).all()
    missing = sorted(row.seq for row in rows if row.seq not in known)
    parsed: dict[int, Billed] = {}
    texts: dict[str, Billed] = {}
    for i in range(0, len(missing), _CHUNK):
        for row in conn.execute(select(t.c.seq, t.c.billed).where(t.c.seq.in_(missing[i : i + _CHUNK]))):
            text = str(row.billed)
            billed = texts.get(text)
            if billed is None:
                billed = texts[text] = Billed.from_json(text)
            parsed[int(row.seq)] = billed
    return [
        Segment(row.uid, row.role, known.get(row.seq) or parsed[row.seq], row.started_at, row.ended_at, row.seq)
        for row in rows
    ]


def prune(conn: Connection, cluster: str, before: datetime) -> int:
    """Forget closed segments that ended at or before ``before`` (the journal horizon)."""
    result = conn.execute(
        delete(t).where(and_(t.c.cluster == cluster, t.c.ended_at.is_not(None), t.c.ended_at <= before))
    )
    return int(result.rowcount or 0)


def count(conn: Connection, cluster: str) -> int:
    return int(conn.execute(select(func.count()).select_from(t).where(t.c.cluster == cluster)).scalar_one())
