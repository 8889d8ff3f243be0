"""Constants and small helpers shared by the Prometheus tests (importable by name)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubetally as package
from kubetally.periods import Period
from kubetally.record import UsageRecord

SEEDS = Path(__file__).resolve().parent.parent / "data" / "seeds"
SEED_FILES = [SEEDS / "alauda-collection-configmap.yaml", SEEDS / "alauda-display-configmap.yaml"]

H10 = Period(datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 2, 11, tzinfo=UTC))
H11 = Period(H10.end, H10.end + timedelta(hours=1))


class Said(list[str]):
    """Collects what a run reports through its ``warn``/``notify`` callbacks."""

    def __call__(self, message: str) -> None:
        self.append(message)


def printed(said: Said) -> str:
    return "\n".join(said)


def by_name(records: Iterable[UsageRecord]) -> dict[tuple[str, str], UsageRecord]:
    """Records keyed by (name, namespace); fails on a duplicate key."""
    found: dict[tuple[str, str], UsageRecord] = {}
    for record in records:
        key = (record.name, record.namespace)
        assert key not in found, f"two records for {key}"
        found[key] = record
    return found


#: The hour every CLI test collects.
RANGE = ["--from", "2026-03-02T10:00:00Z", "--to", "2026-03-02T11:00:00Z"]


def kubetally(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process, with a wide terminal and no inherited env."""
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        # The package under test (this checkout), whatever the installed one points at.
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(Path.home()),
            "PYTHONPATH": str(Path(package.__file__).parents[1]),
        },
    )
