"""The outbox: cursor, out-of-order commits (gaps), dead letters, re-queue and the lease —
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete, insert, select

from kubetally.config.destinations import FileConfig
from kubetally.delivery import tables
from kubetally.delivery.engine import Deliverer, deliver_once
from kubetally.delivery.events import events_for
from kubetally.delivery.outbox import DeadLetter, Outbox, all_destinations
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time

from .helpers import fleet, record


def _file(tmp_path: Path, name: str = "file") -> FileConfig:
    return FileConfig(type="file", name=name, path=str(tmp_path / f"{name}.jsonl"))


def _lines(tmp_path: Path, name: str = "file") -> list[dict]:
    path = tmp_path / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cursor_moves_over_every_revision_once(ledger: Ledger, tmp_path: Path) -> None:
    first = record("acme", "gpu_hours", 0, "2", sku="H100")
    ledger.write([first, record("beta", "gpu_hours", 0, "1")])
    summary = deliver_once(ledger, [_file(tmp_path)])
    assert [(d.delivered, d.pending, d.error) for d in summary.destinations] == [(2, 0, None)]
    ledger.write([first.model_copy(update={"usage": Decimal("2.5")})])
    again = deliver_once(ledger, [_file(tmp_path)])
    assert again.destinations[0].delivered == 1
    events = _lines(tmp_path)
    assert [e["id"] for e in events] == [f"{first.id}-0", events[1]["id"], f"{first.id}-1"]
    assert events[2]["quantity"] == 0.5 and events[2]["action"] == "delta"
    state = {s.destination: s for s in all_destinations(ledger)}["file"]
    assert (state.cursor, state.delivered, state.lease_owner) == (3, 3, None)
    assert deliver_once(ledger, [_file(tmp_path)]).destinations[0].delivered == 0


def test_each_destination_has_its_own_cursor(ledger: Ledger, tmp_path: Path) -> None:
    ledger.write(fleet(2, 3))
    deliver_once(ledger, [_file(tmp_path, "a")])
    ledger.write([record("gamma", "gpu_hours", 0, "4")])
    summary = deliver_once(ledger, [_file(tmp_path, "a"), _file(tmp_path, "b")])
    assert {d.name: d.delivered for d in summary.destinations} == {"a": 1, "b": 13}
    assert len(_lines(tmp_path, "a")) == len(_lines(tmp_path, "b")) == 13


def test_hole_in_seqs_is_delivered_when_it_fills_and_forgotten_when_stale(ledger: Ledger, tmp_path: Path) -> None:
    recs = [record("acme", "gpu_hours", h, str(h + 1)) for h in range(5)]
    ledger.write(recs)
    r = schema.records
    with ledger.transaction() as conn:
        hidden = conn.execute(select(r).where(r.c.seq == 2)).one()._mapping
        conn.execute(delete(r).where(r.c.seq == 2))  # seq 2 "not committed yet"
        conn.execute(delete(r).where(r.c.seq == 4))  # seq 4: a rollback that never comes back
    ledger.write([record("acme", "gpu_hours", 9, "9")])  # seq 6
    clock = [parse_time("2026-11-02T00:00:00Z")]
    deliverer = Deliverer(ledger, *_built(tmp_path), gap_timeout=timedelta(minutes=10), clock=lambda: clock[0])
    assert deliverer.run_once().destinations[0].delivered == 4
    gaps = _gaps(ledger)
    assert gaps == [(2, 2), (4, 4)]
    with ledger.transaction() as conn:
        conn.execute(insert(r).values(**hidden))  # the late commit shows up
    assert deliverer.run_once().destinations[0].delivered == 1
    assert _gaps(ledger) == [(4, 4)]
    clock[0] += timedelta(minutes=11)
    summary = deliverer.run_once()
    assert (summary.destinations[0].delivered, summary.destinations[0].pending) == (0, 0)
    assert _gaps(ledger) == []
    assert sorted(e["quantity"] for e in _lines(tmp_path)) == [1, 2, 3, 5, 9]
    deliverer.close()


def test_out_of_order_commit_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """A real concurrent writer: seq N commits after seq N+1 was delivered."""
    with Ledger.open(pg_url) as ledger:
        ledger.write([record("acme", "gpu_hours", 0, "1")])
        slow = record("slow", "gpu_hours", 0, "7")
        with ledger.transaction() as conn:
            ledger.write([slow], conn=conn)  # takes seq 2, invisible until commit
            done = threading.Event()
            fast = threading.Thread(target=lambda: (ledger.write([record("fast", "gpu_hours", 0, "3")]), done.set()))
            fast.start()
            fast.join(10)
            assert done.is_set()
            first = deliver_once(ledger, [_file(tmp_path)])
            assert first.destinations[0].delivered == 2
            assert _gaps(ledger) == [(2, 2)]
        second = deliver_once(ledger, [_file(tmp_path)])
        assert second.destinations[0].delivered == 1
        assert [e["tenant"] for e in _lines(tmp_path)] == ["acme", "fast", "slow"]
        assert _gaps(ledger) == []


def test_dead_letters_are_kept_listed_and_requeued(ledger: Ledger, tmp_path: Path) -> None:
    rec = record("acme", "gpu_hours", 0, "5")
    ledger.write([rec])
    outbox = Outbox(ledger, "file")
    assert outbox.acquire()
    page = outbox.read(10)
    [event] = events_for(page.rows[0].record, page.rows[0].seq, None)
    outbox.commit(page.rows, page, dead=[DeadLetter(event, "backend said no", 422)])
    outbox.release()
    [letter] = outbox.dead_letters()
    assert (
        letter.event_id,
        letter.tenant,
        letter.quantity,
        letter.status,
        letter.reason,
        letter.state,
        letter.attempts,
    ) == (event.id, "acme", Decimal(5), 422, "backend said no", "dead", 1)
    assert outbox.pending() == 0
    assert outbox.requeue(["no-such-event"]) == 0
    assert outbox.requeue() == 1
    assert outbox.pending() == 1
    summary = deliver_once(ledger, [_file(tmp_path)])
    assert (summary.destinations[0].delivered, summary.destinations[0].pending) == (1, 0)
    assert outbox.dead_letters() == []
    assert [e["id"] for e in _lines(tmp_path)] == [event.id]


def test_lease_keeps_a_second_process_out(ledger: Ledger, tmp_path: Path) -> None:
    holder = Outbox(ledger, "file", owner="otherhost:1:abc", lease_ttl=timedelta(minutes=5))
    assert holder.acquire()
    ledger.write([record("acme", "gpu_hours", 0, "5")])
    summary = deliver_once(ledger, [_file(tmp_path)])
    [d] = summary.destinations
    assert d.error is not None and d.error.startswith("busy: another process (otherhost:1:abc)")
    assert (d.delivered, d.pending) == (0, 1)
    holder.release()
    assert deliver_once(ledger, [_file(tmp_path)]).destinations[0].delivered == 1


def test_lease_of_a_dead_process_on_this_host_is_taken_over(ledger: Ledger, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{socket.gethostname()}:{int(gone.stdout)}:dead"
    assert Outbox(ledger, "file", owner=dead_owner, lease_ttl=timedelta(hours=1)).acquire()
    ledger.write([record("acme", "gpu_hours", 0, "5")])
    assert deliver_once(ledger, [_file(tmp_path)]).destinations[0].delivered == 1


def _built(tmp_path: Path) -> tuple[list, list]:
    from kubetally.delivery.engine import build_all

    built, configs, _ = build_all([_file(tmp_path)])
    return built, configs


def _gaps(ledger: Ledger) -> list[tuple[int, int]]:
    g = tables.outbox_gaps
    with ledger.engine.connect() as conn:
        return [(row.lo, row.hi) for row in conn.execute(select(g.c.lo, g.c.hi).order_by(g.c.lo))]
