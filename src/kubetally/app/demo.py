"""``kubetally demo``: the whole pipeline on a simulated GPU cloud, start to finish.

Nothing here is a shortcut around the product: the packaged ``gpu-cloud`` scenario is served over
the real Kubernetes HTTP API by :mod:`kubetally.sim`, the real agent lists and watches it through
the official client while the scenario's clock runs through the hour (a node joins, pods finish,
one is deleted), closed periods go into a real SQLite ledger, the outbox delivers them to a JSON
lines file, and the example price book turns them into the cost table printed at the end.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from kubetally.app.agent import AgentRunner, AgentSettings
from kubetally.app.report import PricingInputs, report
from kubetally.config import Config
from kubetally.config.destinations import DestinationsConfig, FileConfig
from kubetally.config.loader import CollectionSettings, KubetallyConfig
from kubetally.delivery.engine import DeliverySummary
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to
from kubetally.rating.pricebook import example_pricebook
from kubetally.reports import Report
from kubetally.sim import Scenario, SimServer

log = logging.getLogger("kubetally.demo")

CLUSTER = "demo-gpu-cloud"
SCENARIO = "gpu-cloud"
#: Demo clock: how far past the scenario's start the simulated clock runs, in which steps.
RUN_FOR = timedelta(hours=1, minutes=2)
STEP = timedelta(minutes=1)


@dataclass
class DemoResult:
    ledger_path: Path
    events_path: Path
    records: int
    delivery: DeliverySummary
    report: Report


def demo_config() -> Config:
    """Defaults a GPU cloud would start with, except a short backfill so the demo stays small:
    the agent bills the hour before the scenario starts (from the objects' state) and the hour
    it watches."""
    settings = KubetallyConfig(cluster=CLUSTER, collection=CollectionSettings(max_backfill="1h", settle_delay="1m"))
    return Config(settings=settings)


def run_demo(out: Path, say: Callable[[str], None] = log.info) -> DemoResult:
    """Run the demo into ``out``; ``say`` narrates each step (the command prints it)."""
    out.mkdir(parents=True, exist_ok=True)
    ledger_path = out / "ledger.db"
    events_path = out / "events.jsonl"
    # A demo run starts from nothing, so what it prints is what this run measured.
    for stale in (ledger_path, out / "ledger.db-wal", out / "ledger.db-shm", events_path):
        if stale.exists():
            stale.unlink()
    config = demo_config()
    # The same agent runner as `kubetally agent`, delivering to a JSON lines file.
    settings = AgentSettings(
        config=config,
        cluster=CLUSTER,
        db=str(ledger_path),
        prometheus_url=None,
        destinations=DestinationsConfig(
            destinations=[FileConfig(type="file", name="audit-file", path=str(events_path))]
        ),
    )
    scenario = Scenario.packaged(SCENARIO)
    with Ledger.open(str(ledger_path)) as ledger, SimServer(scenario) as sim:
        start = sim.now
        say(
            f"1. Simulated GPU cloud {SCENARIO} served at {sim.url} "
            f"({len(scenario.objects)} objects, {len(scenario.events)} events), clock at {start:%Y-%m-%d %H:%M}Z"
        )
        with AgentRunner(settings, ledger, sim.api_client(), clock=lambda: sim.now) as runner:
            agent = runner.kubernetes
            agent.start()
            try:
                say("2. Agent listing and watching; running the clock through the hour …")
                # Stop the clock at every event as well as every minute: the agent then sees each
                # change at the second it happens, as a watching agent in a real cluster does.
                stops = {start + STEP * i for i in range(1, int(RUN_FOR / STEP) + 1)}
                stops |= {event.at for event in scenario.events if start < event.at <= start + RUN_FOR}
                for at in sorted(stops):
                    sim.advance(at)
                    agent.pump(timeout=10, until_rv=sim.resource_version)
                # One tick: the settled periods are written, then the delivery step sends them.
                runner.tick()
            finally:
                agent.stop()
            delivery = runner.last_delivery
        records = sum(1 for _ in ledger.records())
    say(f"   {records} usage records in the ledger ({ledger_path})")
    if delivery is None:  # the delivery step failed; the runner logged why
        raise RuntimeError("demo: delivery to the events file failed (see the log)")
    say(
        f"3. Outbox delivered {delivery.delivered} events to {events_path} "
        f"({delivery.dead_lettered} dead-lettered, {delivery.pending} pending)"
    )
    day = floor_to(start, timedelta(days=1))
    priced = report(
        PricingInputs(config, example_pricebook(), True, str(ledger_path)),
        day,
        day + timedelta(days=1),
        by=("tenant", "item"),
        per="day",
        unit="display",
    )
    say("4. Priced with the example price book (kubetally/rating/example-prices.yaml):")
    return DemoResult(
        ledger_path=ledger_path, events_path=events_path, records=records, delivery=delivery, report=priced
    )


def remove(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
