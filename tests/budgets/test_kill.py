"""``kubetally budgets --evaluate`` SIGKILLed after recording a crossing but before the target
acknowledged it: the next run sends it, and every alert reaches the receiver exactly once.

Usage: acme runs 1 H100 (3.90 USD/GPU-h) for the 24 hours of 2026-11-01 → spent 24 × 3.90 =
93.60 of a 100.00 budget: 50 % and 80 % are crossed, 100 % is not. Forecast: 93.60 + 24 GPU-h ×
(720 − 24) / 24 × 3.90 = 93.60 + 2714.40 = 2808.00 ≥ 100 % → one forecast alert. 3 alerts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import standardwebhooks
from sqlalchemy import select

from kubetally.ledger.store import Ledger
from kubetally.reports.budget_tables import budget_alert_sends
from kubetally.reports.budgets import alert_id
from kubetally.testing.server import cli, cli_env

from .receiver import start_receiver
from .test_budgets import NOV, PRICES, SECRET, gpu

EXPECTED = sorted(
    alert_id("acme-day", kind, Decimal(t), NOV) for kind, t in (("actual", 50), ("actual", 80), ("forecast", 100))
)


def _config(path: Path, url: str) -> Path:
    path.write_text(
        f"""
budgets:
  notify:
    - type: webhook
      url: {url}/hook
      secret_env: BUDGET_SECRET
  items:
    - name: acme-day
      tenant: acme
      amount: "100.00"
      forecast_threshold: 100
""",
        encoding="utf-8",
    )
    return path


def test_sigkill_between_crossing_and_sending_sends_exactly_once(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db) as ledger:
        ledger.write([gpu(h, "1") for h in range(24)])
    receiver = start_receiver(hold_first=True)
    try:
        config = _config(tmp_path / "kubetally.yaml", receiver.url)
        args = ["budgets", "--evaluate", "--db", db, "-c", str(config), "--prices", str(PRICES), "--format", "json"]
        env = {"BUDGET_SECRET": SECRET}
        child = subprocess.Popen(
            [sys.executable, "-m", "kubetally.cli.main", *args],
            env=cli_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # The first alert is on the wire and its answer is held: the crossings are committed.
            assert receiver.got_one.wait(60), "no alert arrived"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
        assert receiver.hold_first is not None
        receiver.hold_first.set()
        with Ledger.open(db, migrate=False) as ledger, ledger.engine.connect() as conn:
            states = sorted(conn.execute(select(budget_alert_sends.c.alert_id, budget_alert_sends.c.state)).all())
        assert [(a, s) for a, s in states] == [(a, "pending") for a in EXPECTED]
        assert receiver.acknowledged == []

        again = cli(*args, env=env)
        assert again.returncode == 0, again.stderr
        answer = json.loads(again.stdout)
        assert (answer["newAlerts"], answer["sent"], answer["failed"]) == (0, 3, 0)
        (status,) = answer["budgets"]
        assert (status["spent"], status["forecast"], status["method"]) == (
            "93.60",
            "2808.00",
            "forecast: run rate of last 24 h, not a bill",
        )
        assert sorted(c["alertId"] for c in status["crossed"]) == EXPECTED
        assert {c["crossedAt"] for c in status["crossed"]} == {"2026-11-02T00:00:00Z"}

        third = cli(*args, env=env)
        assert third.returncode == 0, third.stderr
        assert json.loads(third.stdout)["sent"] == 0
        # Acknowledged exactly once each; the one request whose answer was lost had the same id.
        assert sorted(r.headers["webhook-id"] for r in receiver.acknowledged) == EXPECTED
        assert len(receiver.received) == 4
        verifier = standardwebhooks.Webhook(SECRET)
        for request in receiver.acknowledged:
            assert verifier.verify(request.body, request.headers)["id"] == request.headers["webhook-id"]

        table = cli(
            "budgets",
            "--db",
            db,
            "-c",
            str(config),
            "--prices",
            str(PRICES),
            "--at",
            "2026-11-02T00:00:00Z",
            env={"COLUMNS": "200"},
        )
        assert table.returncode == 0, table.stderr
        assert "acme-day" in table.stdout and "93.60 (93.6 %)" in table.stdout
        assert "forecast: run rate of last 24 h, not a bill" in table.stdout
    finally:
        receiver.close()
