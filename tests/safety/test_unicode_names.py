"""Any name Kubernetes allows (any Unicode, up to 253 characters; namespaces up to 63) round-trips
through the ledger, the report (JSON exact, CSV with formula cells neutralised) and FOCUS CSV, on
SQLite and PostgreSQL; a name the ledger cannot hold is refused by field."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind, parse_time
from kubetally.record import UsageRecord

SRC = Path(__file__).parents[2] / "src"
H = Period(parse_time("2026-11-01T10:00:00Z"), parse_time("2026-11-01T11:00:00Z"))
TENANTS = [
    "ü" * 253,  # the longest name Kubernetes allows, non-ASCII
    "团队-🚀-" + "é" * 50,
    "line\nbreak and\ttab",
    '=HYPERLINK("http://evil.example","x")',
    "+SUM(1,2)",
    "-1+2",
    "@cmd",
]


def rec(tenant: str, i: int) -> UsageRecord:
    return UsageRecord.measure(
        cluster="c1",
        kind="Node",
        category="compute",
        item="gpu_hours",
        name=f"名字-{i}-" + "ß" * 240,
        namespace=tenant[:63],
        tenant=tenant,
        period_kind=PeriodKind.hourly,
        period=H,
        usage=str(i + 1),
        labels={"gpu_sku": "nvidia-h100-sxm-80gb"},
    )


def kt(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_unicode_names_round_trip(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as ledger:
        ledger.write([rec(t, i) for i, t in enumerate(TENANTS)])
        stored = {r.tenant: r for r in ledger.records()}
    assert set(stored) == set(TENANTS)
    assert all(stored[t].name.startswith(f"名字-{i}-") for i, t in enumerate(TENANTS))
    common = ["--db", ledger_url, "--prices", "example", "--from", "2026-11-01", "--to", "2026-12-01"]
    # JSON: names exactly as written; H100 on-demand is 3.90 USD per GPU-hour, usage i+1 hours
    report = json.loads(kt("report", *common, "--format", "json"), parse_float=Decimal)
    costs = {row["tenant"]: row["cost"] for row in report["rows"]}
    assert costs == {t: f"{Decimal('3.90') * (i + 1):.6f}" for i, t in enumerate(TENANTS)}
    # CSV: the same names, formula starters prefixed with ' (no spreadsheet runs them)
    rows = list(csv.DictReader(io.StringIO(kt("report", *common, "--format", "csv"))))
    shown = {row["tenant"] for row in rows}
    expected = {("'" + t if t[0] in "=+-@" else t) for t in TENANTS}
    assert shown == expected
    focus = list(csv.DictReader(io.StringIO(kt("export", "focus", *common))))
    assert {row["SubAccountId"] for row in focus} == expected
    assert sum(Decimal(row["BilledCost"]) for row in focus) == Decimal("3.90") * sum(range(1, len(TENANTS) + 1))


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("tenant", "t" * 254, "254 characters long; the ledger holds at most 253"),
        ("namespace", "n" * 20000, "20000 characters long"),
        ("name", "x" * 513, "at most 512"),
        ("tenant", "a\x00b", "NUL character"),
    ],
)
def test_names_the_ledger_cannot_hold_are_refused_by_field(field: str, value: str, needle: str) -> None:
    fields = {"tenant": "t", "namespace": "n", "name": "x", field: value}
    with pytest.raises(ValidationError, match=needle) as caught:
        UsageRecord.measure(
            cluster="c1",
            kind="Node",
            category="compute",
            item="gpu_hours",
            period_kind=PeriodKind.hourly,
            period=H,
            usage="1",
            **fields,
        )
    assert caught.value.errors()[0]["loc"] == (field,)
