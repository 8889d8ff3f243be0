"""Pipelined delivery: batches are sent while the next ones are built, acknowledgements are
committed in order and per group, and a failure or a SIGKILL in the middle of a group leaves the
cursor at the acknowledged prefix — a rerun sends the rest once more and the backend, which
deduplicates by event id, ends with every event exactly once.

The Lago fake is scripted per batch (which batch a request carries is told by its first
transaction id), so the interleavings below are forced, not hoped for."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from kubetally.config.destinations import LagoConfig
from kubetally.delivery.engine import deliver_once
from kubetally.delivery.events import events_for
from kubetally.delivery.outbox import Outbox, first_event
from kubetally.ledger.store import Ledger
from kubetally.testing.backends.base import Call
from kubetally.testing.backends.lago import LagoBackend

from .helpers import FAST, fleet, ledger_totals, record, sum_by

REPO = Path(__file__).resolve().parents[2]

#: (batch number, call) → None to answer as Lago does, or a response (the batch is not stored)
Script = Callable[[int, Call], "asyncio.Future[Response | None] | Any"]


class ScriptedLago(LagoBackend):
    """The Lago fake with a per-batch hook on ``POST /events/batch``."""

    def __init__(self) -> None:
        super().__init__()
        self.first_ids: dict[str, int] = {}
        self.script: Any = None
        #: batch number → set once Lago stored it
        self.stored: dict[int, asyncio.Event] = {}

    def number_batches(self, ids: list[str], size: int) -> None:
        self.first_ids = {ids[i]: i // size + 1 for i in range(0, len(ids), size)}

    def stored_event(self, number: int) -> asyncio.Event:
        return self.stored.setdefault(number, asyncio.Event())

    async def handle(self, call: Call) -> Response:
        if call.operation_id != "createBatchEvents" or self.script is None:
            return await super().handle(call)
        number = self.first_ids[call.payload["events"][0]["transaction_id"]]
        answer = await self.script(number, call)
        if answer is not None:
            return answer  # type: ignore[no-any-return]
        response = await super().handle(call)
        self.stored_event(number).set()
        return response


@pytest.fixture(scope="module")
def scripted(contracts_available: None) -> Iterator[ScriptedLago]:
    with ScriptedLago() as backend:
        yield backend  # type: ignore[misc]


@pytest.fixture
def lago_scripted(scripted: ScriptedLago) -> ScriptedLago:
    scripted.reset()
    scripted.script = None
    scripted.stored = {}
    return scripted


def _config(be: Any, **extra: Any) -> LagoConfig:
    return LagoConfig(type="lago", url=be.base_url, batch_size=10, retry_initial=timedelta(milliseconds=20), **extra)


def _in_seq_order(ledger: Ledger) -> list[str]:
    """Event ids of the ledger's rows (all first revisions here) in seq order: batch k of size
    n is rows n(k-1)+1 .. nk."""
    from sqlalchemy import select

    from kubetally.ledger import schema

    r = schema.records
    with ledger.engine.connect() as conn:
        return [f"{row.id}-{row.revision}" for row in conn.execute(select(r.c.id, r.c.revision).order_by(r.c.seq))]


def _ids(be: Any) -> Counter[str]:
    """Every event id Lago stored, with how often (its idempotency key makes it once at most;
    counted anyway so a second copy under another key would show)."""
    return Counter(e["transaction_id"] for e in be.events.values())


def test_first_event_from_the_row_is_the_event_of_the_record(ledger: Ledger) -> None:
    """The hot path builds revision 0's event from the row; it must equal the general one."""
    rec = record("acme", "gpu_hours", 3, "100", sku="H100", capacity="spot")
    ledger.write([rec, record("beta", "cpu_core_hours", 0, "0.000277778")])
    outbox = Outbox(ledger, "x")
    assert outbox.acquire()
    page = outbox.read(10)
    for pending in page.rows:
        assert first_event(pending.row) == events_for(pending.record, pending.seq, None)[0]
    assert [str(first_event(p.row).quantity) for p in page.rows] == ["100", "0.000277778"]


def test_failed_batch_with_a_later_one_acknowledged_leaves_the_cursor_after_the_prefix(
    ledger: Ledger, lago_scripted: ScriptedLago
) -> None:
    """Batches of 10: 1–3 acknowledged; batch 4 is answered 401 only after batch 5 (in flight
    at the same time) was stored; batches after 5 get 401 too. The cursor must stop at the end
    of batch 3 (seq 30) although batch 5 reached Lago; the rerun sends 4.. again, Lago
    recognises batch 5's ten events, and ends with each of the 100 events exactly once."""
    be = lago_scripted
    records = fleet(5, 10)  # 5 tenants × 10 hours × 2 items = 100 records, one event each
    ledger.write(records)
    ids = _in_seq_order(ledger)  # batch k is ids[10(k-1):10k]
    be.number_batches(ids, 10)

    async def script(number: int, call: Call) -> Response | None:
        if number == 4:
            await asyncio.wait_for(be.stored_event(5).wait(), 10)
            return be.error(401, "key revoked", call=call)
        if number > 5:
            return be.error(401, "key revoked", call=call)
        return None

    be.script = script
    first = deliver_once(ledger, [_config(be)], environ={"LAGO_API_KEY": be.api_key}, policy=FAST)
    [result] = first.destinations
    assert result.error is not None and "HTTP 401" in result.error
    state = Outbox(ledger, "lago").state()
    assert state is not None
    # batches 1–3: 3 × 10 events acknowledged and committed; batch 5 stored but not committed
    assert (state.cursor, state.delivered, result.delivered, result.pending) == (30, 30, 30, 70)
    assert set(_ids(be)) == set(ids[:30]) | set(ids[40:50])

    be.script = None
    second = deliver_once(ledger, [_config(be)], environ={"LAGO_API_KEY": be.api_key}, policy=FAST)
    [again] = second.destinations
    # 70 rows re-read; batch 5's 10 events were there already (Lago: value_already_exist)
    assert (again.error, again.delivered, again.duplicates, again.pending) == (None, 60, 10, 0)
    stored = _ids(be)
    assert sorted(stored) == sorted(ids) and set(stored.values()) == {1}
    assert sum_by(
        be.events.values(),
        lambda e: (e["external_subscription_id"].removeprefix("kt-"), e["code"]),
        lambda e: e["properties"]["quantity"],
    ) == ledger_totals(ledger)
    state = Outbox(ledger, "lago").state()
    assert state is not None and (state.cursor, state.delivered, state.duplicates) == (100, 90, 10)
    assert be.violations == []


def test_group_commit_moves_the_cursor_once_per_group(ledger: Ledger, lago_scripted: ScriptedLago) -> None:
    """100 events in batches of 10 with commits every 4 acknowledged batches: the cursor row
    is written 3 times (after batches 4, 8 and at the end), not 10 times."""
    from sqlalchemy import event

    from kubetally.delivery.destinations.lago import LagoDestination
    from kubetally.delivery.engine import Deliverer

    be = lago_scripted
    ledger.write(fleet(5, 10))
    config = _config(be)
    dest = LagoDestination(config, {"LAGO_API_KEY": be.api_key})
    deliverer = Deliverer(ledger, [dest], [config], policy=FAST)
    runner = deliverer.runners[0]
    runner.commit_every = 4
    runner.commit_after = 3600.0
    moves: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE outbox_cursors") and "delivered" in statement:
            moves.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        summary = deliverer.run_once()
    finally:
        event.remove(ledger.engine, "before_cursor_execute", count)
        deliverer.close()
    assert (summary.delivered, summary.pending) == (100, 0)
    assert len(moves) == 3  # ceil(10 batches / 4)
    state = Outbox(ledger, "lago").state()
    assert state is not None and state.cursor == 100


def _deliver(db: str, config: Path, be: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LAGO_API_KEY": be.api_key, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "kubetally.cli.main", "deliver", "--db", db, "-c", str(config), "--max-wait", "20s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_in_the_middle_of_a_group_loses_nothing(
    ledger_url: str, tmp_path: Path, lago_scripted: ScriptedLago
) -> None:
    """``kubetally deliver`` (batches of 5) is SIGKILLed by Lago itself the moment it has
    stored batch 7 — before answering it; later batches are refused unstored. Lago then holds
    batches 1–7 (35 events); the cursor is at some group boundary c ≤ 30 (batch 7 was never
    acknowledged). The rerun re-sends rows c+1.. : exactly the 35 − c events Lago already has
    come back as duplicates, 100 − 35 = 65 are new, and every event is stored once."""
    be = lago_scripted
    records = fleet(5, 10)
    victim: list[int] = []

    async def script(number: int, call: Call) -> Response | None:
        if number > 7 or (number == 7 and be.stored_event(7).is_set()):
            return be.error(503, "going away", call=call)
        if number == 7:
            response = await LagoBackend.handle(be, call)
            be.stored_event(7).set()
            os.kill(victim[0], signal.SIGKILL)
            return response
        return None

    be.script = script
    config = tmp_path / "kubetally.yaml"
    config.write_text(f"destinations:\n  - type: lago\n    url: {be.base_url}\n    batch_size: 5\n")
    with Ledger.open(ledger_url) as ledger:
        ledger.write(records)
        ids = _in_seq_order(ledger)
        be.number_batches(ids, 5)
        proc = _deliver(ledger_url, config, be)
        victim.append(proc.pid)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        before = _ids(be)
        assert set(before) == set(ids[:35])
        state = Outbox(ledger, "lago").state()
        assert state is not None
        c = state.cursor
        assert c <= 30 and c % 5 == 0 and state.delivered == c

        be.script = None
        requests_before = len(be.requests)
        rerun = _deliver(ledger_url, config, be)
        _out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()[-2000:]
        state = Outbox(ledger, "lago").state()
        assert state is not None
        assert (state.cursor, state.delivered, state.duplicates) == (100, 100 - (35 - c), 35 - c)
        resent = [
            e["transaction_id"]
            for r in be.requests[requests_before:]
            if r.path.endswith("/events/batch")
            for e in r.json()["events"]
        ]
        # only rows after the cursor were sent again; the ones Lago had are exactly c+1..35
        assert set(resent) == set(ids[c:])
        assert set(resent) & set(before) == set(ids[c:35])
        stored = _ids(be)
        assert sorted(stored) == sorted(ids) and set(stored.values()) == {1}
        assert Outbox(ledger, "lago").pending() == 0
    assert be.violations == []
