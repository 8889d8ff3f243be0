"""Streaming collection writes exactly what the one-transaction collector wrote.

The fixtures under ``tests/data/scale`` were captured from the collector as it was before
collection streamed period by period (every period metered and written in one transaction): one
line per ledger row, ``id revision current usage``, plus the watermarks. A streamed run must give
the same rows, byte for byte, on SQLite and PostgreSQL. Capture again (only on purpose) with
``KUBETALLY_CAPTURE_BASELINE=1``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from test_collect import gpu_cloud

from kubetally.config import Config
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time, parse_time
from kubetally.sim import Scenario, SimServer
from kubetally.sim.generate import generate_cluster
from kubetally.sim.scenario import resolve_scenario_path
from kubetally.sources.kubernetes.run import collect_kubernetes
from kubetally.sources.kubernetes.tables import segments

DATA = Path(__file__).resolve().parent.parent / "data" / "scale"
GENERATED_NOW = parse_time("2026-11-04T00:05:00Z")


def dump(ledger: Ledger) -> str:
    """Every ledger row (all revisions) and every watermark, in a stable order."""
    t, w = schema.records, schema.watermarks
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.revision, t.c.current, t.c.usage).order_by(t.c.id, t.c.revision))
        lines = [f"{r.id} {r.revision} {int(r.current)} {r.usage}" for r in rows]
        # Not the journal's per-kind confirmations ("confirmed Pod" …): they say when the objects
        # were last seen alive (for a restart), not what was written, and the baselines predate them.
        marks = conn.execute(
            select(w.c.source, w.c.cluster, w.c.item, w.c.until)
            .where(w.c.item.not_like("confirmed %"))
            .order_by(w.c.source, w.c.item)
        )
        lines += [f"watermark {m.source} {m.cluster} {m.item} {format_time(m.until)}" for m in marks]
    return "\n".join(lines) + "\n"


def contents(ledger: Ledger) -> str:
    """Every column of every ledger row and journal segment in write (``seq``) order, except when
    it was written (``recorded_at``): row count and sha256. The dump above holds ids, revisions
    and quantities; this holds the rest (names, labels, times, units, the journal's billed JSON),
    so a faster record or journal path cannot change a byte of what is stored."""
    t, s = schema.records, segments
    digest = hashlib.sha256()
    count = 0

    def text(value: Any) -> str:
        return format_time(value) if isinstance(value, datetime) else str(value)

    with ledger.engine.connect() as conn:
        columns = [c for c in t.c if c.name not in ("seq", "recorded_at")]
        for row in conn.execute(select(*columns).order_by(t.c.seq)):
            digest.update(("\t".join(text(v) for v in row) + "\n").encode())
            count += 1
        lines = [f"records {count} sha256 {digest.hexdigest()}"]
        digest, count = hashlib.sha256(), 0
        for row in conn.execute(select(*[c for c in s.c if c.name != "seq"]).order_by(s.c.seq)):
            digest.update(("\t".join(text(v) for v in row) + "\n").encode())
            count += 1
        lines.append(f"segments {count} sha256 {digest.hexdigest()}")
    return "\n".join(lines) + "\n"


def summary(text: str) -> str:
    lines = text.splitlines()
    rows = [line.split() for line in lines if not line.startswith("watermark")]
    revisions: dict[str, int] = {}
    for row in rows:
        revisions[row[1]] = revisions.get(row[1], 0) + 1
    total = sum(Decimal(row[3]) for row in rows if row[2] == "1")
    out = [f"rows {len(rows)}", *(f"revision {k} rows {v}" for k, v in sorted(revisions.items()))]
    out += [f"current usage {total}", f"sha256 {hashlib.sha256(text.encode()).hexdigest()}"]
    out += [line for line in lines if line.startswith("watermark")]
    return "\n".join(out) + "\n"


def collect(sim: SimServer, ledger: Ledger, start: str | None = None, end: str | None = None) -> Any:
    return collect_kubernetes(
        config=Config(),
        ledger=ledger,
        cluster="gpu-east",
        api_client=sim.api_client(),
        clock=lambda: sim.now,
        start=parse_time(start) if start else None,
        end=parse_time(end) if end else None,
    )


def cloud(ledger: Ledger) -> None:
    """The hand-checked cloud of test_collect, three hours, then collected again (no change)."""
    with SimServer(Scenario.from_dict({"now": "2026-11-02T11:05:00Z", "objects": gpu_cloud()})) as sim:
        collect(sim, ledger, "2026-11-02T08:00:00Z", "2026-11-02T11:00:00Z")
        collect(sim, ledger, "2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z")


def packaged(ledger: Ledger) -> None:
    """The packaged gpu-cloud scenario: collected mid-way, then resumed after its events."""
    with SimServer(Scenario.load(resolve_scenario_path("gpu-cloud"))) as sim:
        sim.advance("2026-11-02T10:30:00Z")
        collect(sim, ledger, "2026-11-02T06:00:00Z", "2026-11-02T10:00:00Z")
        sim.advance("2026-11-02T12:05:00Z")
        collect(sim, ledger)  # resumes from the watermark
        collect(sim, ledger, "2026-11-02T09:00:00Z", "2026-11-02T12:00:00Z")  # re-metered


def generated(ledger: Ledger) -> None:
    """300 generated pods with churn, MIG pool and dedicated nodes, 48 hours."""
    scenario = Scenario.from_dict(generate_cluster(300, now=GENERATED_NOW, hours=48))
    end = GENERATED_NOW.replace(minute=0)
    with SimServer(scenario) as sim:
        collect(sim, ledger, format_time(end - timedelta(hours=48)), format_time(end))


def revised(ledger: Ledger) -> None:
    """Corrections through the write path: the generated 48 hours, then every 3rd record with a
    new quantity, every 5th with a new label (duplicates inside one batch: the last one wins),
    then every 6th corrected once more; revisions chain 0 → 1 → 2."""
    generated(ledger)
    records = list(ledger.records())
    batch = []
    for i, r in enumerate(records):
        if i % 3 == 0:
            batch.append(r.model_copy(update={"usage": r.usage + 1}))
        if i % 5 == 0:
            batch.append(r.model_copy(update={"labels": {**r.labels, "note": "late"}}))
        if i % 7 == 0:
            batch.append(r)  # unchanged
    ledger.write(batch)
    ledger.write([r.model_copy(update={"usage": r.usage + 2}) for i, r in enumerate(records) if i % 6 == 0])


LARGE = ("generated", "revised")
SCENARIOS: dict[str, Callable[[Ledger], None]] = {
    "cloud": cloud,
    "packaged": packaged,
    "generated": generated,
    "revised": revised,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_streamed_ledger_matches_the_baseline(name: str, ledger: Ledger) -> None:
    SCENARIOS[name](ledger)
    got = dump(ledger)
    if name in LARGE:  # thousands of rows: kept as row count + digest (the dump's sha256)
        got = summary(got)
    path = DATA / f"baseline-{name}.txt"
    stored = DATA / f"contents-{name}.txt"
    if os.environ.get("KUBETALLY_CAPTURE_BASELINE") == "1" and ledger.dialect == "sqlite":
        path.write_text(got)
        stored.write_text(contents(ledger))
    assert got == path.read_text()
    assert contents(ledger) == stored.read_text()


def test_progress_is_reported_after_each_committed_period(tmp_path: Path) -> None:
    """The progress hook (the command line draws it as a bar on a terminal) hears of each period
    once it is committed, with the records metered so far; at each call the watermark already
    stands at the end of the periods reported done."""
    calls: list[tuple[int, int, str, str]] = []
    scenario = {"now": "2026-11-02T11:05:00Z", "objects": gpu_cloud()}
    with SimServer(Scenario.from_dict(scenario)) as sim, Ledger.open(str(tmp_path / "l.db")) as ledger:

        def hook(done: int, total: int, description: str) -> None:
            mark = ledger.watermark("kubernetes", "gpu-east", "gpu_hours")
            calls.append((done, total, description, format_time(mark) if mark else "-"))

        collect_kubernetes(
            config=Config(),
            ledger=ledger,
            cluster="gpu-east",
            api_client=sim.api_client(),
            clock=lambda: sim.now,
            start=parse_time("2026-11-02T08:00:00Z"),
            end=parse_time("2026-11-02T11:00:00Z"),
            progress=hook,
        )
        per_period = [
            len(
                list(
                    ledger.records(
                        start=parse_time(f"2026-11-02T{h:02d}:00:00Z"), end=parse_time(f"2026-11-02T{h + 1:02d}:00:00Z")
                    )
                )
            )
            for h in (8, 9, 10)
        ]
    # Records so far = the rows of the periods committed so far (every record is new here).
    so_far = [sum(per_period[:n]) for n in (1, 2, 3)]
    assert calls == [
        (1, 3, f"kubernetes: periods, {so_far[0]:,} records", "2026-11-02T09:00:00Z"),
        (2, 3, f"kubernetes: periods, {so_far[1]:,} records", "2026-11-02T10:00:00Z"),
        (3, 3, f"kubernetes: periods, {so_far[2]:,} records", "2026-11-02T11:00:00Z"),
    ]
    assert so_far[2] == 30  # the 30 rows of baseline-cloud (the same cluster and hours)
