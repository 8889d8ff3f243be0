"""Live configuration (issue 13): the agent reads cost-model ConfigMaps from the API by label and
applies a change at the next period without a restart; an invalid one is ignored — log line,
Warning Event on the ConfigMap, ``kubetally_config_invalid_total`` — and the last good config keeps
collecting.

The cost model is Alauda's seed (collection ConfigMap in cpaas-system, display ConfigMap in
kube-public), collected from the real Prometheus of the Prometheus tests (2026-03-02, H10 and
H11). The agent runs in-process against the simulated API with the real ``kubernetes`` client.

Hand-derived truth (tests/prometheus/prom_scenario.py): the T4 device in yulin-2 uses 0.5 cores
all through H10 and H11, and VgpuCoreUsed sums the twelve 5-minute rate points of an hour:
12 × 0.5 = 6 per hour. The changed query multiplies by 2: 12 × (0.5 × 2) = 12.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from kubetally.app.agent import AgentRunner, AgentSettings
from kubetally.config import load_config
from kubetally.ledger.store import Ledger
from kubetally.sim import Scenario, SimServer

SEEDS = Path(__file__).resolve().parent.parent / "data" / "seeds"
T4 = "GPU-2eec4202-80dc-870f-3ca5-25879d96eca7"
COLLECTION = "slark-agent-project-config-vgpu"
QUERY = "sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total{}[5m]))"


def seed(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((SEEDS / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def runner(prometheus: Any, tmp_path: Path) -> Iterator[tuple[AgentRunner, SimServer, Ledger]]:
    scenario = Scenario.from_dict(
        {
            "name": "live-config",
            "now": "2026-03-02T11:02:00Z",
            "objects": [seed("alauda-collection-configmap.yaml"), seed("alauda-display-configmap.yaml")],
        }
    )
    config_file = tmp_path / "kubetally.yaml"
    config_file.write_text(
        "collection: {max_backfill: 1h}\n"
        "agent:\n"
        "  listen: 127.0.0.1:0\n"
        "  live_config: {enabled: true, namespace: kubetally}\n"
    )
    settings = AgentSettings(
        config=load_config([config_file]),
        cluster="gpu-east",
        db=str(tmp_path / "ledger.db"),
        prometheus_url=prometheus.url,
        destinations=None,
    )
    with (
        Ledger.open(settings.db) as ledger,
        SimServer(scenario) as sim,
        AgentRunner(settings, ledger, sim.api_client(), clock=lambda: sim.now) as runner,
    ):
        runner.start_services()
        runner.kubernetes.start()
        try:
            yield runner, sim, ledger
        finally:
            runner.kubernetes.stop()
            runner.stop_services()


def t4_usage(ledger: Ledger, hour: int) -> Decimal:
    day = "2026-03-02"
    from kubetally.periods import parse_time

    start = parse_time(f"{day}T{hour:02d}:00:00Z")
    found = [
        r.usage
        for r in ledger.records(item="VgpuCoreUsed", start=start, end=start + timedelta(hours=1))
        if r.name == T4 and r.namespace == "yulin-2"
    ]
    assert len(found) == 1, found
    return found[0]


def edit_collection(sim: SimServer, change: Any) -> None:
    core = client.CoreV1Api(sim.api_client())
    configmap = core.read_namespaced_config_map(COLLECTION, "cpaas-system")
    items = yaml.safe_load(configmap.data["config"])
    change(items)
    configmap.data["config"] = yaml.safe_dump(items, sort_keys=False)
    core.replace_namespaced_config_map(COLLECTION, "cpaas-system", configmap)


def scrape(runner: AgentRunner, path: str = "/metrics") -> tuple[int, str]:
    assert runner.health is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{runner.health.port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(runner: AgentRunner, name: str, **labels: str) -> float | None:
    _, text = scrape(runner)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_a_configmap_change_applies_at_the_next_period_without_a_restart(
    runner: tuple[AgentRunner, SimServer, Ledger],
) -> None:
    agent, sim, ledger = runner
    # The seed's two items came from the ConfigMaps, not from the file (which has none).
    assert [item.item for item in agent.settings.config.items] == ["VgpuCoreUsed", "VgpuMemoryUsed"]
    agent.tick()  # 11:02: H10 with the seed's query
    assert t4_usage(ledger, 10) == Decimal(6)  # 12 points × 0.5

    def double(items: list[dict[str, Any]]) -> None:
        items[0]["usage"]["query"] = f"{QUERY} * 2"

    edit_collection(sim, double)
    assert agent.reload_config(timeout=10)  # the watch delivered it: applied, no restart
    sim.advance("2026-03-02T12:02:00Z")
    agent.tick()  # H11 with the changed query
    assert t4_usage(ledger, 11) == Decimal(12)  # 12 points × 0.5 × 2
    assert t4_usage(ledger, 10) == Decimal(6)  # the closed period is not re-collected
    # Two reloads: the first listing of the ConfigMaps, then the change. Nothing invalid.
    assert metric(agent, "kubetally_config_reloads_total") == 2.0
    assert metric(agent, "kubetally_config_invalid_total", configmap=f"cpaas-system/{COLLECTION}") is None


def test_a_broken_configmap_is_ignored_with_an_event_and_the_old_config_keeps_collecting(
    runner: tuple[AgentRunner, SimServer, Ledger], caplog: pytest.LogCaptureFixture
) -> None:
    agent, sim, ledger = runner
    caplog.set_level(logging.ERROR, logger="kubetally.agent")
    agent.tick()
    assert t4_usage(ledger, 10) == Decimal(6)

    def break_step(items: list[dict[str, Any]]) -> None:
        items[0]["usage"]["query"] = f"{QUERY} * 2"  # would change H11 if it were applied
        items[0]["usage"]["step"] = "7m"  # does not divide the hour

    edit_collection(sim, break_step)
    assert not agent.reload_config(timeout=10)  # seen, refused: the config did not change
    # The log line names the ConfigMap and the field.
    [line] = [r.getMessage() for r in caplog.records if COLLECTION in r.getMessage()]
    assert f"ConfigMap cpaas-system/{COLLECTION} is invalid and ignored" in line
    assert "item 'VgpuCoreUsed'" in line and "step" in line
    # A Warning Event on the ConfigMap, where `kubectl describe configmap` shows it.
    events = client.CoreV1Api(sim.api_client()).list_namespaced_event(
        "cpaas-system", field_selector=f"involvedObject.name={COLLECTION}"
    )
    [event] = events.items
    assert (event.type, event.reason, event.involved_object.kind, event.involved_object.namespace) == (
        "Warning",
        "InvalidConfig",
        "ConfigMap",
        "cpaas-system",
    )
    assert event.source.component == "kubetally-agent" and "step" in event.message
    assert metric(agent, "kubetally_config_invalid_total", configmap=f"cpaas-system/{COLLECTION}") == 1.0
    # The last good config collects H11: 12 × 0.5, not 12 × 1.
    sim.advance("2026-03-02T12:02:00Z")
    agent.tick()
    assert t4_usage(ledger, 11) == Decimal(6)


def test_kubetally_configmap_sets_the_price_book_and_refuses_what_needs_a_restart(
    runner: tuple[AgentRunner, SimServer, Ledger],
) -> None:
    agent, sim, _ = runner
    assert agent.settings.config.settings.pricing is None
    core = client.CoreV1Api(sim.api_client())
    prices = {
        "pricing": {
            "currency": "EUR",
            "prices": [{"category": "VgpuCore", "item": "VgpuCoreUsed", "price": "0.40"}],
        }
    }
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="prices", namespace="kubetally", labels={"kubetally.io/config": "true"}),
        data={"kubetally.yaml": yaml.safe_dump(prices)},
    )
    core.create_namespaced_config_map("kubetally", body)
    assert agent.reload_config(timeout=10)
    pricing = agent.settings.config.settings.pricing
    assert pricing is not None and pricing.currency == "EUR"
    assert [p.price for p in pricing.prices] == [Decimal("0.40")]
    # A section that needs a restart: refused, named, the 0.40 price book stays.
    body.data = {"kubetally.yaml": yaml.safe_dump({**prices, "kubernetes": {"window": "5m"}})}
    core.replace_namespaced_config_map("prices", "kubetally", body)
    assert not agent.reload_config(timeout=10)
    [event] = core.list_namespaced_event("kubetally", field_selector="involvedObject.name=prices").items
    assert "data.kubetally.yaml: kubernetes: not reloadable from a ConfigMap" in event.message
    assert [p.price for p in agent.settings.config.settings.pricing.prices] == [Decimal("0.40")]  # type: ignore[union-attr]


def test_probes_and_metrics(runner: tuple[AgentRunner, SimServer, Ledger]) -> None:
    agent, _, _ = runner
    assert scrape(agent, "/healthz") == (200, "ok\n")
    assert scrape(agent, "/readyz") == (200, "ok\n")
    assert metric(agent, "kubetally_agent_leader") == 1.0  # no election: the one agent leads
    agent.tick()
    # The scenario has no metered objects: nothing written, nothing behind.
    assert metric(agent, "kubetally_agent_periods_behind", source="kubernetes") == 0.0
    assert metric(agent, "kubetally_agent_records_written_total", source="kubernetes") == 0.0
    assert metric(agent, "kubetally_agent_watch_relists_total", resource="pods") == 0.0
    # Watches stopped: not ready, and why.
    for watcher in agent.kubernetes.watchers.values():
        watcher.stop()
        watcher.join(timeout=5)
    assert scrape(agent, "/readyz") == (503, "not ready: watches not synced\n")
    assert scrape(agent, "/nope")[0] == 404
