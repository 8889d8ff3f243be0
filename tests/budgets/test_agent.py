"""The agent evaluates budgets after each committed period: against the simulated GPU cloud, a
cluster budget of 1 GPU-hour (any GPU use crosses it at once) alerts exactly once, at the end of
the first committed hour that holds GPU usage, and the alert reaches the webhook once.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, func, select

from kubetally.app.agent import AgentRunner, AgentSettings
from kubetally.app.demo import CLUSTER, demo_config
from kubetally.config.budgets import BudgetsConfig
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.reports.budgets import alert_rows
from kubetally.sim import Scenario, SimServer

from .receiver import start_receiver
from .test_budgets import SECRET


def test_agent_alerts_once_at_the_first_committed_crossing(tmp_path: Path) -> None:
    receiver = start_receiver()
    budgets = BudgetsConfig.model_validate(
        {
            "notify": [{"type": "webhook", "url": f"{receiver.url}/hook", "secret_env": "BUDGET_SECRET"}],
            "items": [{"name": "gpu-cap", "cluster": CLUSTER, "quantity": 1, "item": "gpu_hours", "thresholds": [100]}],
        }
    )
    settings = AgentSettings(
        config=demo_config().with_settings(budgets=budgets),
        cluster=CLUSTER,
        db=str(tmp_path / "l.db"),
        prometheus_url=None,
        destinations=None,
        environ={"BUDGET_SECRET": SECRET},
    )
    try:
        with Ledger.open(str(tmp_path / "l.db")) as ledger, SimServer(Scenario.packaged("gpu-cloud")) as sim:
            with AgentRunner(settings, ledger, sim.api_client(), clock=lambda: sim.now) as runner:
                assert [step.name for step in runner.steps] == ["budgets"]
                runner.kubernetes.start()
                try:
                    start = sim.now
                    for minutes in (20, 40, 62, 90, 125):
                        sim.advance(start + timedelta(minutes=minutes))
                        runner.kubernetes.pump(timeout=10, until_rv=sim.resource_version)
                        runner.tick()
                finally:
                    runner.kubernetes.stop()
            t = schema.records
            with ledger.engine.connect() as conn:
                # The first committed hour whose GPU usage reaches 1 GPU-hour (its last second + 1 s).
                hours = conn.execute(
                    select(t.c.start, func.sum(t.c.usage))
                    .where(and_(t.c.current.is_(True), t.c.item == "gpu_hours"))
                    .group_by(t.c.start)
                    .order_by(t.c.start)
                ).all()
            alerts = alert_rows(ledger)
        total, first = 0.0, None
        for hour_start, usage in hours:
            total += float(usage)
            if total >= 1 and first is None:
                first = hour_start + timedelta(hours=1)
        assert first is not None, "the scenario has GPU usage"
        assert [(a["budget"], a["kind"], a["threshold"]) for a in alerts] == [("gpu-cap", "actual", "100")]
        assert alerts[0]["crossedAt"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert [r.headers["webhook-id"] for r in receiver.received] == [alerts[0]["id"]]
    finally:
        receiver.close()
