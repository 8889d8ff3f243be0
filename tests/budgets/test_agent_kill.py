"""A real ``kubetally agent`` process SIGKILLed between recording a budget crossing and sending
it: after a restart the alert is delivered and acknowledged exactly once per threshold.

The agent watches the simulated API (issue 9's accuracy scenario, tests/kubernetes/scenarios,
from 2026-11-02 09:00 UTC) with the simulator's clock, writes each hourly period at its end +
2 min (settle delay) and evaluates the budgets in the same tick. Budget ``team-b-gpu``: tenant
team-b, 10 GPU-hours in November, thresholds 50 % (5 GPU-h) and 100 % (10 GPU-h), no forecast
alert. Team-b's GPU-hours per committed hour (test_accuracy.py derives both by hand):

* mi210-01, dedicated, 4 GPUs × 1 h = 4 GPU-h;
* tiny pod, MIG 1g.10gb time-sliced 2 ways = 1/7 / 2 = 1/14 GPU × 1 h = 0.071428571 (9 places);
* per hour 4 + 0.071428571 = 4.071428571 GPU-h.

Committed so far → spent:

* 10:02 writes 09:00–10:00 → 4.071428571 < 5: nothing crossed;
* 11:02 writes 10:00–11:00 → 2 × 4.071428571 = 8.142857142 ≥ 5 → 50 % crossed, at 11:00;
  still < 10;
* 12:02 writes 11:00–12:00 → 3 × 4.071428571 = 12.214285713 ≥ 10 → 100 % crossed, at 12:00.

The budget's period is custom, [09:00, Nov 3 00:00): the agent also backfills 04:00–09:00 on
its first tick (max_backfill 6 h), usage before the budget's period that must not count.

The receiver holds its answer to the first request (the 50 % alert): the agent is SIGKILLed
while waiting for it, i.e. after the crossing was committed with a pending send and before the
send was marked sent. The restarted agent sends it again with the same ``webhook-id`` (the
documented at-least-once: a receiver deduplicates by it), then the 100 % alert at 12:02.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import standardwebhooks
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

import kubetally as package
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.reports.budget_tables import budget_alert_sends
from kubetally.reports.budgets import alert_id, alert_rows
from kubetally.sim import Scenario, SimServer

from .receiver import Receiver, start_receiver
from .test_budgets import SECRET

KUBERNETES_TESTS = Path(__file__).resolve().parents[1] / "kubernetes"
SCENARIO = KUBERNETES_TESTS / "scenarios" / "accuracy.yaml"
#: ``kubetally agent`` whose ``--clock apiserver`` reads the simulator's frozen clock exactly.
MAIN = KUBERNETES_TESTS / "ha_agent_main.py"
TEAM_B = "vcluster/vcluster-team-b/team-b"
#: The budget's custom period starts with the scenario's first full hour; the agent also
#: backfills 04:00–09:00 (max_backfill 6 h), which is before it and must not count.
PERIOD_START = parse_time("2026-11-02T09:00:00Z")
FIFTY = alert_id("team-b-gpu", "actual", Decimal(50), PERIOD_START)
KILL_AT = parse_time("2026-11-02T11:02:00Z")
HUNDRED = alert_id("team-b-gpu", "actual", Decimal(100), PERIOD_START)
HOUR, SETTLE = timedelta(hours=1), timedelta(minutes=2)
T = TypeVar("T")


def _config(path: Path, receiver: Receiver) -> Path:
    path.write_text(
        f"""\
cluster: gpu-east
collection: {{max_backfill: 6h, settle_delay: 2m}}
kubernetes: {{tick_interval: 1s, reconcile_interval: 1s}}
budgets:
  notify:
    - type: webhook
      url: {receiver.url}/hook
      secret_env: BUDGET_SECRET
      timeout: 60s  # longer than the test holds the answer: the kill, not a timeout, ends the send
  items:
    - name: team-b-gpu
      tenant: {TEAM_B}
      quantity: 10
      item: gpu_hours
      thresholds: [50, 100]
      start: {PERIOD_START:%Y-%m-%dT%H:%M:%SZ}
      end: 2026-11-03T00:00:00Z
""",
        encoding="utf-8",
    )
    return path


def _wait(what: str, check: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Agent:
    """``kubetally agent`` in a child process, probed through its metrics listener."""

    def __init__(self, folder: Path, name: str, *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = port = int(sock.getsockname()[1])
        self.log = folder / f"{name}.log"
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "PYTHONPATH": str(Path(package.__file__).parents[1]),
            "BUDGET_SECRET": SECRET,
        }
        command = [sys.executable, str(MAIN), "agent", *args, "--listen", f"127.0.0.1:{port}", "--log-level", "info"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)

    def watched(self) -> float:
        """The resource version the agent applied its watches up to (0 before it answers)."""
        if self.process.poll() is not None:
            raise AssertionError(f"agent exited with {self.process.returncode}:\n{self.log.read_text()}")
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "kubetally_agent_watch_resource_version":
                    return float(sample.value)
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _instants(scenario: Scenario, start: datetime, end: datetime) -> list[datetime]:
    """Every event instant and every period end + settle delay in (start, end]."""
    moments = {e.at for e in scenario.events if start < e.at <= end}
    boundary = start.replace(minute=0, second=0) + HOUR
    while boundary + SETTLE <= end:
        moments.add(boundary + SETTLE)
        boundary += HOUR
    moments.add(end)
    return sorted(m for m in moments if m > start)


def _advance(sim: SimServer, agent: Agent, at: datetime) -> None:
    """Move the simulator's clock and wait until the agent applied every event up to it."""
    sim.advance(at)
    target = sim.resource_version
    _wait(f"the agent to apply the watch up to {target} at {at}", lambda: agent.watched() >= target)


def _sends(db: str) -> list[tuple[str, str, int]]:
    s = budget_alert_sends
    with Ledger.open(db, migrate=False) as ledger, ledger.engine.connect() as conn:
        rows = conn.execute(select(s.c.alert_id, s.c.state, s.c.attempts).order_by(s.c.alert_id)).all()
    return [(a, state, attempts) for a, state, attempts in rows]


def test_sigkilled_agent_sends_each_budget_alert_exactly_once_after_restart(tmp_path: Path) -> None:
    receiver = start_receiver(hold_first=True)
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db):
        pass  # create the schema once, before any agent
    config = _config(tmp_path / "kubetally.yaml", receiver)
    agents: list[Agent] = []
    try:
        scenario = Scenario.load(SCENARIO)
        with SimServer(scenario) as sim:
            kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
            args = ("-c", str(config), "--kubeconfig", str(kubeconfig), "--db", db, "--clock", "apiserver")
            first = Agent(tmp_path, "first", *args)
            agents.append(first)
            for at in _instants(scenario, scenario.now, KILL_AT)[:-1]:
                _advance(sim, first, at)
            assert not receiver.got_one.is_set(), "an alert before 10:00–11:00 was committed"
            # 11:02: 10:00–11:00 is committed and the 50 % alert is on the wire, its answer held.
            sim.advance(KILL_AT)
            assert receiver.got_one.wait(20), "no alert arrived"
            os.kill(first.process.pid, signal.SIGKILL)
            assert first.process.wait(10) == -signal.SIGKILL
            assert receiver.hold_first is not None
            receiver.hold_first.set()
            # The crossing is in the ledger, its send pending (never marked), nothing acknowledged.
            assert _sends(db) == [(FIFTY, "pending", 0)]
            assert receiver.acknowledged == []

            second = Agent(tmp_path, "second", *args)
            agents.append(second)
            _wait("the restarted agent to send the pending alert", lambda: len(receiver.acknowledged) == 1)
            for at in _instants(scenario, KILL_AT, parse_time("2026-11-02T12:02:00Z")):
                _advance(sim, second, at)
            _wait("the 100 % alert", lambda: len(receiver.acknowledged) == 2)
            # One more tick's worth of time: nothing else is sent.
            _advance(sim, second, parse_time("2026-11-02T12:05:00Z"))
            time.sleep(1.5)
            second.stop()

        # Received: the held 50 % request, its resend (same webhook-id), then 100 %.
        assert [r.headers["webhook-id"] for r in receiver.received] == [FIFTY, FIFTY, HUNDRED]
        # Acknowledged exactly once per (budget, threshold): one distinct alert id per threshold.
        assert [r.headers["webhook-id"] for r in receiver.acknowledged] == [FIFTY, HUNDRED]
        verifier = standardwebhooks.Webhook(SECRET)
        for request in receiver.received:
            payload = verifier.verify(request.body, request.headers)
            assert payload["id"] == request.headers["webhook-id"]
        # Each send marked sent once: one acknowledged attempt each (the killed one never counted).
        assert _sends(db) == sorted([(FIFTY, "sent", 1), (HUNDRED, "sent", 1)])
        with Ledger.open(db, migrate=False) as ledger:
            alerts = alert_rows(ledger)
            hourly: dict[str, Decimal] = {}
            for record in ledger.records(start=PERIOD_START, tenant=TEAM_B, item="gpu_hours"):
                hour = f"{record.start:%H:%M}"
                hourly[hour] = hourly.get(hour, Decimal(0)) + record.usage
        # The committed records the crossings rest on: 4 + 0.071428571 per hour (the docstring).
        assert hourly == {hour: Decimal("4.071428571") for hour in ("09:00", "10:00", "11:00")}
        # Crossed at the end of the first committed period whose records cross (see the docstring).
        assert sorted((a["id"], a["threshold"], a["crossedAt"]) for a in alerts) == sorted(
            [(FIFTY, "50", "2026-11-02T11:00:00Z"), (HUNDRED, "100", "2026-11-02T12:00:00Z")]
        )
        assert {(a["budget"], a["kind"]) for a in alerts} == {("team-b-gpu", "actual")}
        # Shown in display units (6 places): 8.142857142 → 8.142857, 12.214285713 → 12.214286.
        assert {a["threshold"]: (a["value"], a["limit"]) for a in alerts} == {
            "50": ("8.142857", "10"),
            "100": ("12.214286", "10"),
        }
        # What was acknowledged is the recorded alert, byte for byte as JSON.
        assert sorted((r.json for r in receiver.acknowledged), key=lambda a: a["id"]) == sorted(
            alerts, key=lambda a: a["id"]
        )
    finally:
        for agent in agents:
            agent.stop()
        receiver.close()
