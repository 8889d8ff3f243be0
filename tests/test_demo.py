"""``kubetally demo`` end to end: simulated cluster → agent → ledger → outbox → priced report.

The numbers come from the packaged ``gpu-cloud`` scenario (src/kubetally/sim/scenarios), metered
for the hour 10:00–11:00 on 2026-11-02, priced with the example price book.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import kubetally
from kubetally.app.demo import run_demo

TEAM_A = "vcluster/vcluster-team-a/team-a"
TEAM_B = "vcluster/vcluster-team-b/team-b"


def test_demo_meters_delivers_and_prices_the_hour(tmp_path: Path) -> None:
    said: list[str] = []
    result = run_demo(tmp_path / "demo", said.append)
    assert "   27 usage records in the ledger" in "\n".join(said)
    rows = {(r.group["tenant"], r.group["item"]): r for r in result.report.rows}

    # team-a GPUs: its dedicated H100 node, 8 GPUs x 3600 s = 8 h, plus the notebook (1 A100 GPU on a
    # shared node) from 10:00:00 until it is deleted at 10:45:12 = 2712 s = 0.753333333 h.
    gpu_a = rows[(TEAM_A, "compute/gpu_hours")]
    assert gpu_a.usage == Decimal("8.753333333")
    # 8 h x $3.90 (H100) = $31.20; 0.753333333 h x $1.80 (A100 80GB) = $1.3559999994 -> $1.356000.
    assert gpu_a.cost == 32_556_000

    # team-b's dedicated node joins at 10:17:23: 3600 - 1043 s = 2557 s = 0.710277778 h at $0.10.
    node_b = rows[(TEAM_B, "compute/node_hours")]
    assert node_b.usage == Decimal("0.710277778")
    assert node_b.cost == 71_028  # 0.0710277778 -> $0.071028

    # The LoadBalancer has its ingress address all hour: 1 LB-hour at $0.025.
    assert (rows[(TEAM_B, "network/lb_hours")].usage, rows[(TEAM_B, "network/lb_hours")].cost) == (1, 25_000)

    assert result.report.total == sum(r.cost for r in result.report.rows)
    lines = result.events_path.read_text().splitlines()
    assert result.records == result.delivery.delivered == len(lines) == 27
    assert result.delivery.dead_lettered == result.delivery.pending == 0
    # One event per record, each with its own deterministic id.
    assert len({json.loads(line)["id"] for line in lines}) == 27


def test_demo_command_prints_the_cost_table(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        # The package under test (this checkout), whatever the installed one points at.
        env={"COLUMNS": "160", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(kubetally.__file__).parents[1])},
    )
    assert proc.returncode == 0, proc.stderr
    assert "27 usage records in the ledger" in proc.stdout
    assert "Outbox delivered 27 events" in proc.stdout
    assert "87.477679" in proc.stdout  # the report total, sum of the priced lines above and the rest
    assert (out / "ledger.db").exists()
