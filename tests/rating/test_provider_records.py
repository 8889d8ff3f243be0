"""The provider's records (``kubernetes.capacity``) are not usage: the usage report leaves them
out, so its totals are the tenants' alone.

One hour on one H100 node: namespace/a holds 3 GPUs (3 GPU-h), the node's capacity is 8 GPU-h
and its idle 8 − 3 = 5 GPU-h, all at the example book's H100 on-demand 3.90 per GPU-hour. The
report shows namespace/a's 3 h = 11.70 and nothing else (capacity and idle would have added a
tenant "" with 13 h = 50.70). A correction of the idle record (5 → 4) changes nothing either.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from kubetally.cli.main import app
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind
from kubetally.record import UsageRecord

HOUR = Period(datetime(2026, 11, 2, 10, tzinfo=UTC), datetime(2026, 11, 2, 11, tzinfo=UTC))


def gpu_hours(kind: str, tenant: str, usage: str) -> UsageRecord:
    return UsageRecord.measure(
        cluster="c1",
        kind=kind,
        category="compute",
        item="gpu_hours",
        name="h100-node",
        namespace="a" if tenant else "",
        tenant=tenant,
        period_kind=PeriodKind.hourly,
        period=HOUR,
        usage=usage,
        unit="h",
        dimensions={"gpu_sku": "nvidia-h100-sxm-80gb", "capacity_type": "on-demand"},
    )


def test_capacity_and_idle_are_not_priced_as_a_tenant(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    args = ["report", "--db", db, "--prices", "example", "--from", "2026-11-02", "--to", "2026-11-03"]
    with Ledger.open(db) as ledger:
        ledger.write([gpu_hours("Pod", "namespace/a", "3"), gpu_hours("NodeCapacity", "", "8")])
        ledger.write([gpu_hours("NodeIdle", "", "5")])
    for idle in ("5", "4"):
        if idle == "4":
            with Ledger.open(db) as ledger:
                ledger.write([gpu_hours("NodeIdle", "", idle)])  # revision 1 of the idle record
        result = CliRunner().invoke(app, [*args, "--format", "json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output[result.output.index("{") :])  # after the example-prices warning
        assert [(r["tenant"], r["usage"], r["cost"]) for r in report["rows"]] == [("namespace/a", "3", "11.700000")]
        assert report["total"]["cost_micros"] == 11_700_000
