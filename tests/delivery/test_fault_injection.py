"""Crash safety: ``kubetally deliver`` is SIGKILLed at random points, again and again, while
the backend answers 429/500, hangs past the timeout, goes down, rejects some events and says
"already exists" — and the ledger keeps growing and being revised. At the end the backend
holds every event exactly once (by its idempotency key), the rejected events are exactly the
dead letters, and the totals per tenant and item equal the ledger's to the last digit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger

from .helpers import fleet, ledger_totals, sum_by

REPO = Path(__file__).resolve().parents[2]


def _deliver(db: str, config: Path, lago: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LAGO_API_KEY": lago.api_key, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "kubetally.cli.main", "deliver", "--db", db, "-c", str(config), "--max-wait", "60s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _inject(lago: Any, rng: random.Random) -> str:
    fault = rng.choice(["429", "500", "hang", "down", "mixed"])
    if fault in ("429", "mixed"):
        lago.fail_next(429, times=rng.randint(1, 2), retry_after=1)
    if fault in ("500", "mixed"):
        lago.fail_next(rng.choice([500, 502, 503]), times=rng.randint(1, 3))
    if fault in ("hang", "mixed"):
        lago.hang_next(1.3)  # the client times out after 1 s; Lago stores the batch anyway
    if fault == "down":
        lago.go_down()
        threading.Timer(rng.uniform(0.5, 2.0), lago.come_up).start()
    return fault


def _revise(ledger: Ledger, rng: random.Random) -> None:
    """Re-measure a few periods: up, down, and one that moves to another GPU SKU."""
    current = [r for r in ledger.records() if r.item == "gpu_hours"]
    for rec in rng.sample(current, 6):
        factor = Decimal(rng.choice(["0.5", "1.25", "0.001", "2"]))
        labels = dict(rec.labels)
        if rng.random() < 0.3:
            labels["gpu_sku"] = "B200"
        ledger.write(
            [rec.model_copy(update={"usage": (rec.usage * factor).quantize(Decimal("0.000000001")), "labels": labels})]
        )


def _kill_at_random_point(proc: subprocess.Popen[bytes], lago: Any, rng: random.Random) -> tuple[bool, bool]:
    """SIGKILL after a random number of requests reached the backend (progress-based, so the
    points do not depend on how fast this machine is), a few milliseconds into the next one —
    or, now and then, during start-up. Returns (killed, requests were made)."""
    start = len(lago.requests)
    if rng.random() < 0.15:
        time.sleep(rng.uniform(0.2, 1.0))
    else:
        target = start + rng.randint(1, 40)
        deadline = time.monotonic() + 30
        while proc.poll() is None and len(lago.requests) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return killed, len(lago.requests) > start


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_at_random_points_loses_nothing_and_sends_nothing_twice(
    backend: str, tmp_path: Path, lago: Any, request: pytest.FixtureRequest
) -> None:
    rng = random.Random(20261101)
    db = str(tmp_path / "ledger.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    config = tmp_path / "kubetally.yaml"
    config.write_text(
        "destinations:\n"
        f"  - type: lago\n    url: {lago.base_url}\n    timeout: 1s\n    batch_size: 10\n"
        "    retry_initial: 0.05\n    retry_max: 0.5\n"
    )
    records = fleet(8, 30)  # 480 records
    rejected = {f"{records[i].id}-0" for i in (7, 123, 250, 401)}
    lago.reject_events(lambda e: e["transaction_id"] in rejected)
    faults: Counter[str] = Counter()
    kills = mid_delivery = 0
    with Ledger.open(db) as ledger:
        ledger.write(records[:200])
        chunks = [records[200:280], records[280:360], records[360:420], records[420:]]
        rounds = 7 if backend == "sqlite" else 4  # PostgreSQL: fewer rounds, same checks
        for round_ in range(rounds):
            faults[_inject(lago, rng)] += 1
            before = len(lago.events)
            proc = _deliver(db, config, lago)
            killed, moved = _kill_at_random_point(proc, lago, rng)
            kills += killed
            mid_delivery += killed and moved and len(lago.events) > before
            if chunks:
                ledger.write(chunks.pop(0))
            if round_ % 2:
                _revise(ledger, rng)
        lago.come_up()
        dead_before = len(Outbox(ledger, "lago").dead_letters())
        final = _deliver(db, config, lago)
        _, err = final.communicate(timeout=120)
        # A run that dead-letters anything exits 1 (issue 16); one that only delivers exits 0.
        dead_in_final = len(Outbox(ledger, "lago").dead_letters()) - dead_before
        assert final.returncode == (1 if dead_in_final else 0), err.decode()[-3000:]
        assert mid_delivery >= rounds // 2, (
            f"only {mid_delivery} of {kills} kills hit a delivery in progress ({faults})"
        )

        dead = Outbox(ledger, "lago").dead_letters()
        assert {d.event_id for d in dead} == rejected
        assert all("value_is_invalid" in d.reason for d in dead)
        stored = lago.events.values()
        ids = [e["transaction_id"] for e in stored]
        assert len(ids) == len(set(ids))  # counting by event id: nothing twice
        assert rejected.isdisjoint(ids)
        expected = ledger_totals(ledger)
        for letter in dead:
            expected[(letter.tenant, letter.item)] -= letter.quantity
        got = sum_by(
            stored,
            lambda e: (e["external_subscription_id"].removeprefix("kt-"), e["code"]),
            lambda e: e["properties"]["quantity"],
        )
        assert got == {k: v for k, v in expected.items() if v != 0}
        assert Outbox(ledger, "lago").pending() == 0
    assert lago.violations == []
