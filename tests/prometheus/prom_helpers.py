"""Constants and small helpers shared by the Prometheus tests (importable by name)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from kubetally.periods import Period
from kubetally.record import UsageRecord

SEEDS = Path(__file__).resolve().parent.parent / "data" / "seeds"
SEED_FILES = [SEEDS / "alauda-collection-configmap.yaml", SEEDS / "alauda-display-configmap.yaml"]

H10 = Period(datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 3, 2, 11, tzinfo=UTC))
H11 = Period(H10.end, H10.end + timedelta(hours=1))


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


def printed(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def by_name(records: Iterable[UsageRecord]) -> dict[tuple[str, str], UsageRecord]:
    """Records keyed by (name, namespace); fails on a duplicate key."""
    found: dict[tuple[str, str], UsageRecord] = {}
    for record in records:
        key = (record.name, record.namespace)
        assert key not in found, f"two records for {key}"
        found[key] = record
    return found
