"""``kubetally collect`` as an operator runs it: a real process, a real Prometheus, exit codes and
one-line reasons. (``kubetally validate --prometheus`` is in tests/config/test_config_validate.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from prom_helpers import RANGE, SEED_FILES, kubetally

from kubetally.ledger.store import Ledger
from kubetally.testing.net import free_port


def seed_args() -> list[str]:
    return [arg for path in SEED_FILES for arg in ("-c", str(path))]


def records(db: Path, *, history: bool = False) -> list[dict]:  # type: ignore[type-arg]
    """The ledger's records in their JSON wire shape (read in-process: one less interpreter start)."""
    with Ledger.open(str(db)) as ledger:
        return [json.loads(r.to_json(), parse_float=Decimal) for r in ledger.records(history=history)]


def test_collect_the_seed_and_rerun(prometheus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "ledger.db"
    done = kubetally(
        "collect", *seed_args(), "--prometheus", prometheus.url, "--cluster", "gpu-east", "--db", db, *RANGE
    )
    assert done.returncode == 0, done.stderr
    assert "VgpuCoreUsed" in done.stdout and "2026-03-02T11:00:00Z" in done.stdout
    first = records(db)
    # 4 VgpuCoreUsed + 3 VgpuMemoryUsed records for H10 (the lonely device has no memory series)
    assert len(first) == 7
    t4 = next(r for r in first if r["item"] == "VgpuCoreUsed" and r["namespace"] == "yulin-2")
    assert t4 == {
        "id": t4["id"],
        "kind": "Vgpu",
        "category": "VgpuCore",
        "item": "VgpuCoreUsed",
        "name": "GPU-2eec4202-80dc-870f-3ca5-25879d96eca7",
        "namespace": "yulin-2",
        "cluster": "gpu-east",
        "project": "yulin",
        "tenant": "yulin",
        "labels": {"device": "nvidia", "modelName": "Tesla T4"},
        "date": "2026-03-02T00:00:00Z",
        "period": "hourly",
        "start": "2026-03-02T10:00:00Z",
        "end": "2026-03-02T10:59:59Z",
        "usage": 6,  # 12 five-minute rate points of 0.5, summed (the seed's `sum` semantics)
        "unit": "",
        "revision": 0,
    }
    again = kubetally(
        "collect", *seed_args(), "--prometheus", prometheus.url, "--cluster", "gpu-east", "--db", db, *RANGE
    )
    assert again.returncode == 0, again.stderr
    assert records(db) == first
    assert len(records(db, history=True)) == 7  # still one row per record: no duplicate, no revision


def test_unreachable_prometheus_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    url = f"http://127.0.0.1:{free_port()}"
    done = kubetally("collect", *seed_args(), "--prometheus", url, "--cluster", "gpu-east", "--db", db, *RANGE)
    assert done.returncode == 1
    reason = done.stderr.strip().splitlines()[-1]
    assert reason.startswith(f"error: Prometheus {url}: item 'VgpuCoreUsed' usage.query for ")
    assert "unreachable" in reason and "the next run resumes from 2026-03-02T10:00:00Z" in reason
    assert records(db) == []


def test_bad_promql_exits_non_zero(prometheus, tmp_path: Path, write_config: Callable[..., Path]) -> None:  # type: ignore[no-untyped-def]
    broken = write_config(
        SEED_FILES[0]
        .read_text()
        .replace("rate(vgpu_core_usage_seconds_total{}[5m])", "rate(vgpu_core_usage_seconds_total{}[5m]"),
        "bad.yaml",
    )
    db = tmp_path / "ledger.db"
    done = kubetally(
        "collect",
        "-c",
        broken,
        "-c",
        SEED_FILES[1],
        "--prometheus",
        prometheus.url,
        "--cluster",
        "gpu-east",
        "--db",
        db,
        *RANGE,
    )
    assert done.returncode == 1
    assert "item 'VgpuCoreUsed' usage.query" in done.stderr and "bad_data" in done.stderr
    assert records(db) == []
