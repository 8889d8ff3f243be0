"""The agent runner owns its sources and ONE Deliverer for its whole life (the delivery engine
used to keep adapters in a module-global cache because nothing did), and a failing step never
stops metering."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from kubetally.app.agent import AgentRunner, AgentSettings
from kubetally.app.demo import CLUSTER, demo_config
from kubetally.config.destinations import DestinationsConfig, FileConfig
from kubetally.ledger.store import Ledger
from kubetally.sim import Scenario, SimServer


def settings(events: Path, db: Path) -> AgentSettings:
    return AgentSettings(
        config=demo_config(),
        cluster=CLUSTER,
        db=str(db),
        prometheus_url=None,
        destinations=DestinationsConfig(destinations=[FileConfig(type="file", name="audit", path=str(events))]),
    )


def test_one_deliverer_for_the_runner_lifetime(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    scenario = Scenario.packaged("gpu-cloud")
    with Ledger.open(str(tmp_path / "l.db")) as ledger, SimServer(scenario) as sim:
        with AgentRunner(
            settings(events, tmp_path / "l.db"), ledger, sim.api_client(), clock=lambda: sim.now
        ) as runner:
            assert [step.name for step in runner.steps] == ["delivery"]
            runner.kubernetes.start()
            try:
                start = sim.now
                for minutes in (20, 40, 62):
                    sim.advance(start + timedelta(minutes=minutes))
                    runner.kubernetes.pump(timeout=10, until_rv=sim.resource_version)
                    runner.tick()
                    if minutes == 20:
                        first = runner.deliverer
                        assert first is not None
                    # The same Deliverer (and adapters) every tick.
                    assert runner.deliverer is first
            finally:
                runner.kubernetes.stop()
            records = sum(1 for _ in ledger.records())
        # Closed with the runner.
        assert runner.deliverer is None
    lines = events.read_text().splitlines()
    # Every record the three ticks wrote was delivered exactly once, by the one Deliverer.
    assert records > 0
    assert records == len(lines) == len({json.loads(line)["id"] for line in lines})


def test_a_failing_step_does_not_stop_metering(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The events file's folder does not exist: the delivery step fails every tick, metering goes on.
    events = tmp_path / "missing" / "events.jsonl"
    scenario = Scenario.packaged("gpu-cloud")
    with Ledger.open(str(tmp_path / "l.db")) as ledger, SimServer(scenario) as sim:
        with AgentRunner(
            settings(events, tmp_path / "l.db"), ledger, sim.api_client(), clock=lambda: sim.now
        ) as runner:
            runner.kubernetes.start()
            try:
                sim.advance(sim.now + timedelta(minutes=62))
                runner.kubernetes.pump(timeout=10, until_rv=sim.resource_version)
                result = runner.tick()
            finally:
                runner.kubernetes.stop()
        # One tick after the hour: the scenario's 27 records, as in test_demo.py, all written.
        assert result.written.inserted == 27 == sum(1 for _ in ledger.records())
    assert "step delivery failed" in caplog.text and "does not exist" in caplog.text
