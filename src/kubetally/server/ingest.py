"""Ingest of records sent by agents: idempotent by the agent's (record id, revision).

An agent's outbox sends every revision of every record, in its ledger order, at least once. The
server must end up with exactly the agent's current usage whatever arrives twice or late:

* a (record id, revision) the server has applied already → nothing happens (a replay);
* a revision *older* than the one applied → ignored, never applied over the newer one (an
  out-of-order or replayed batch);
* a newer revision → written through :meth:`Ledger.write`, the one write path of kubetally, so
  the server's ledger keeps its own revision history, rollups and delivery work on it unchanged.

``server_ingest`` remembers the agent's revision per record id (the server's ledger numbers its
own revisions: an agent revision may never arrive, e.g. when it was dead-lettered). Everything
of one batch — records, ingest state, cluster totals — commits in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError

from kubetally.ledger.store import Ledger
from kubetally.record import UsageRecord
from kubetally.server.tables import clusters, ingest_state

_IN_CHUNK = 500
#: Records per request the server accepts.
MAX_RECORDS = 1000


def record_key(record: UsageRecord) -> str:
    """How the server and the agent name one revision of one record (``<id>-<revision>``)."""
    return f"{record.id}-{record.revision}"


@dataclass
class IngestResult:
    #: newer revisions written (the ledger may still find them unchanged: same usage and labels)
    applied: list[str] = field(default_factory=list)
    #: (id, revision) applied before: a replay
    duplicates: list[str] = field(default_factory=list)
    #: older than the revision applied: ignored
    stale: list[str] = field(default_factory=list)
    #: per cluster: records applied
    by_cluster: dict[str, int] = field(default_factory=dict)


def foreign_records(records: Sequence[UsageRecord], cluster: str | None) -> dict[str, str]:
    """Records an agent bound to ``cluster`` may not send (key → reason); none for ``None``."""
    if cluster is None:
        return {}
    return {
        record_key(r): f"record {r.id} is for cluster {r.cluster!r}; this agent token may only report {cluster!r}"
        for r in records
        if r.cluster != cluster
    }


def ingest(ledger: Ledger, records: Sequence[UsageRecord], *, now: datetime | None = None) -> IngestResult:
    """Apply a batch of agent records (see the module docstring). Safe to run concurrently."""
    for attempt in range(3):
        try:
            with ledger.transaction() as conn:
                return _ingest(ledger, conn, records, now or datetime.now(UTC))
        except IntegrityError:
            # Two requests carried the same new record at once (PostgreSQL); re-read and retry.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _ingest(ledger: Ledger, conn: Connection, records: Sequence[UsageRecord], now: datetime) -> IngestResult:
    result = IngestResult()
    # Within a batch the highest revision of a record wins; the others are older by definition.
    newest: dict[str, UsageRecord] = {}
    for record in records:
        held = newest.get(record.id)
        if held is None or record.revision > held.revision:
            if held is not None:
                result.stale.append(record_key(held))
            newest[record.id] = record
        elif record.revision == held.revision:
            result.duplicates.append(record_key(record))
        else:
            result.stale.append(record_key(record))
    ids = sorted(newest)
    applied_rev: dict[str, int] = {}
    s = ingest_state
    for i in range(0, len(ids), _IN_CHUNK):
        query = select(s.c.record_id, s.c.revision).where(s.c.record_id.in_(ids[i : i + _IN_CHUNK]))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        applied_rev.update({row.record_id: row.revision for row in conn.execute(query)})
    to_write: list[UsageRecord] = []
    for rid in ids:
        record = newest[rid]
        before = applied_rev.get(rid)
        if before is None or record.revision > before:
            to_write.append(record)
        elif record.revision == before:
            result.duplicates.append(record_key(record))
        else:
            result.stale.append(record_key(record))
    if not to_write:
        return result
    ledger.write(to_write, conn=conn)
    inserts = [
        {"record_id": r.id, "cluster": r.cluster, "revision": r.revision, "updated_at": now}
        for r in to_write
        if r.id not in applied_rev
    ]
    if inserts:
        conn.execute(s.insert(), inserts)
    updates = [{"rid": r.id, "rev": r.revision} for r in to_write if r.id in applied_rev]
    if updates:
        conn.execute(
            update(s).where(s.c.record_id == bindparam("rid")).values(revision=bindparam("rev"), updated_at=now),
            updates,
        )
    for r in to_write:
        result.applied.append(record_key(r))
        result.by_cluster[r.cluster] = result.by_cluster.get(r.cluster, 0) + 1
    for name, count in sorted(result.by_cluster.items()):
        _count_cluster(conn, name, count, now)
    return result


def _count_cluster(conn: Connection, name: str, count: int, now: datetime) -> None:
    c = clusters
    held = conn.execute(select(c.c.records).where(c.c.cluster == name)).scalar_one_or_none()
    if held is None:
        conn.execute(c.insert().values(cluster=name, records=count, last_ingest_at=now))
    else:
        conn.execute(update(c).where(c.c.cluster == name).values(records=c.c.records + count, last_ingest_at=now))
