"""Rollups stay equal to the current ledger through inserts, corrections and label changes,
whatever the batch size, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select

from kubetally.ledger.store import Ledger
from kubetally.rating.rate import month_start
from kubetally.rating.rollups import (
    labels_json,
    rebuild_rollups,
    refresh_rollups,
    rollup_cursor,
    rollup_label_keys,
)
from kubetally.rating.tables import rollups

from .conftest import hour, record, scenario_records


def table(ledger: Ledger) -> dict[tuple[object, ...], tuple[Decimal, int]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(rollups))
        return {
            (r.grain, r.start, r.tenant, r.project, r.namespace, r.cluster, r.category, r.item, r.unit, r.labels): (
                r.usage,
                r.records,
            )
            for r in rows
        }


def recomputed(ledger: Ledger) -> dict[tuple[object, ...], tuple[Decimal, int]]:
    """The rollups as they must be: current records summed in Python, labels cut to the kept keys."""
    kept = rollup_label_keys(ledger)
    sums: dict[tuple[object, ...], list[object]] = defaultdict(lambda: [Decimal(0), 0])
    for r in ledger.records():
        labels = labels_json({k: v for k, v in r.labels.items() if k in kept})
        dims = (r.tenant, r.project, r.namespace, r.cluster, r.category, r.item, r.unit, labels)
        for key in (("day", r.date, *dims), ("month", month_start(r.date), *dims)):
            sums[key][0] += r.usage  # type: ignore[operator]
            sums[key][1] += 1  # type: ignore[operator]
    return {k: (v[0], v[1]) for k, v in sums.items()}  # type: ignore[misc]


def test_scenario_rollups(scenario: Ledger) -> None:
    assert refresh_rollups(scenario) == 10  # the ten scenario records
    assert refresh_rollups(scenario) == 0  # nothing new: idempotent
    rows = table(scenario)
    cpu = {k[:2]: v for k, v in rows.items() if k[2] == "acme" and k[7] == "cpu_core_hours"}
    nov = month_start(hour(15, 0).start)
    assert cpu == {
        ("day", hour(15, 0).start): (Decimal(60), 1),
        ("day", hour(16, 0).start): (Decimal(70), 1),
        ("month", nov): (Decimal(130), 2),  # 60 + 70
    }
    assert rows == recomputed(scenario)


def test_correction_moves_usage_and_labels(ledger: Ledger) -> None:
    first = record("acme", "gpu_hours", hour(15, 10), "8", name="gpu", labels={"gpu_sku": "h100"})
    ledger.write(
        [first, record("acme", "gpu_hours", hour(15, 11), "1.000000001", name="gpu", labels={"gpu_sku": "h100"})]
    )
    refresh_rollups(ledger)
    # Same id (labels are enrichment here), new usage and a new label value → revision 1.
    corrected = first.model_copy(update={"usage": Decimal("7.5"), "labels": {"gpu_sku": "a100"}})
    assert ledger.write([corrected]).revised == 1
    assert refresh_rollups(ledger) == 1
    day = {(k[0], k[9]): v for k, v in table(ledger).items()}
    assert day == {
        ("day", '{"gpu_sku":"h100"}'): (Decimal("1.000000001"), 1),  # 8 + 1.000000001 − 8
        ("month", '{"gpu_sku":"h100"}'): (Decimal("1.000000001"), 1),
        ("day", '{"gpu_sku":"a100"}'): (Decimal("7.5"), 1),
        ("month", '{"gpu_sku":"a100"}'): (Decimal("7.5"), 1),
    }
    # Moving the last record away from a key deletes that key.
    second = ledger.revision(first.id, 1)
    assert second is not None
    ledger.write([second.model_copy(update={"usage": Decimal("2"), "labels": {"gpu_sku": "h100"}})])
    refresh_rollups(ledger)
    assert {(k[0], k[9]): v for k, v in table(ledger).items()} == {
        ("day", '{"gpu_sku":"h100"}'): (Decimal("3.000000001"), 2),  # 1.000000001 + 2
        ("month", '{"gpu_sku":"h100"}'): (Decimal("3.000000001"), 2),
    }


def test_random_history_any_batch_size(ledger: Ledger) -> None:
    rng = random.Random(7)
    current: dict[str, object] = {}
    rows_written = 0  # ledger rows: one per new record and one per revision
    for step in range(12):
        batch = []
        for _ in range(rng.randint(1, 8)):
            if current and rng.random() < 0.4:
                old = rng.choice(list(current.values()))
                batch.append(
                    old.model_copy(
                        update={  # type: ignore[attr-defined]
                            "usage": Decimal(rng.randint(0, 10**6)) / 1000,
                            "labels": {"gpu_sku": rng.choice("ab"), "node": rng.choice("xyz")},
                        }
                    )
                )
            else:
                day, at = rng.randint(1, 40), rng.randint(0, 23)
                day_of_month = (day - 1) % 30 + 1
                rec = record(
                    rng.choice(["t1", "t2"]),
                    rng.choice(["i1", "i2"]),
                    hour(day_of_month, at),
                    str(Decimal(rng.randint(1, 10**9)) / 10**9),
                    name=f"r{step}-{len(batch)}",
                    labels={"gpu_sku": rng.choice("ab"), "node": rng.choice("xyz")},
                )
                batch.append(rec)
        written = ledger.write(batch)
        rows_written += written.inserted + written.revised
        for rec in batch:
            current[rec.id] = rec
        if rng.random() < 0.5:
            refresh_rollups(ledger, batch=rng.randint(1, 5))
    refresh_rollups(ledger, batch=3)
    expected = recomputed(ledger)
    assert table(ledger) == expected
    # A rebuild folds every ledger row again, each revision included (the superseded ones
    # cancel out): as many as the writes above stored, 54 for seed 7.
    assert rebuild_rollups(ledger) == rows_written == 54
    assert table(ledger) == expected


def test_rollups_keep_pricing_labels_and_grow_on_demand(ledger: Ledger) -> None:
    ledger.write(
        [
            record(
                "acme", "gpu_hours", hour(15, 10), "2", name="a", labels={"gpu_sku": "h100", "node": "n1", "rack": "r1"}
            ),
            record(
                "acme", "gpu_hours", hour(15, 11), "3", name="b", labels={"gpu_sku": "h100", "node": "n2", "rack": "r2"}
            ),
        ]
    )
    refresh_rollups(ledger)
    # `node` and `rack` are not pricing dimensions: both records land in one row.
    assert {(k[0], k[9]): v for k, v in table(ledger).items()} == {
        ("day", '{"gpu_sku":"h100"}'): (Decimal(5), 2),  # 2 + 3
        ("month", '{"gpu_sku":"h100"}'): (Decimal(5), 2),
    }
    # A price book that prices by rack: the rollups are rebuilt keeping it.
    assert refresh_rollups(ledger, label_keys={"rack"}) == 2
    assert "rack" in rollup_label_keys(ledger) and "gpu_sku" in rollup_label_keys(ledger)
    assert {(k[0], k[9]): v for k, v in table(ledger).items() if k[0] == "day"} == {
        ("day", '{"gpu_sku":"h100","rack":"r1"}'): (Decimal(2), 1),
        ("day", '{"gpu_sku":"h100","rack":"r2"}'): (Decimal(3), 1),
    }
    assert refresh_rollups(ledger, label_keys={"rack"}) == 0  # kept from now on: no second rebuild
    assert table(ledger) == recomputed(ledger)


def test_postgres_refresh_waits_for_writers_in_flight(pg_url: str) -> None:
    """seq is handed out before commit; a refresh must not step past a row still in flight."""
    with Ledger.open(pg_url) as ledger:
        ledger.write(scenario_records()[:2])
        refresh_rollups(ledger)
        inserted = threading.Event()

        def slow_writer() -> None:
            with ledger.transaction() as conn:
                ledger.write([record("acme", "lb_hours", hour(20, 1), "1", category="network")], conn=conn)
                inserted.set()
                time.sleep(0.5)

        writer = threading.Thread(target=slow_writer)
        writer.start()
        assert inserted.wait(10)
        folded = refresh_rollups(ledger)  # blocks on the SHARE lock until the writer commits
        writer.join()
        assert folded == 1
        # Two scenario records (seq 1, 2), then the slow writer's one (seq 3): the cursor is
        # past all three, the writer's row included.
        assert rollup_cursor(ledger) == 3
        assert table(ledger) == recomputed(ledger)
