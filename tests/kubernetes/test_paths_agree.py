"""``collect`` (state) and the agent (watch) derive the same lifetimes from the same objects.

Every scenario in the suite — the packaged ones, the YAML scenarios under ``scenarios/`` and the
clusters the other Kubernetes tests build — is played twice: to the agent, watching from the
scenario's start, and to ``collect`` run as a cron job (once per period, at its end + settle), each
into its own ledger. The records of every period from the scenario's start to the last closed
period must be identical, record id and usage.

What a state read cannot see is history no field records: a pod deleted between two ``collect``
runs is billed by ``collect`` up to its last run (never later), by the agent up to the deletion;
a node label removed (a dedication released) leaves no trace. Records of such objects (and of
pods on such nodes) are compared as "collect never bills more than the agent" where deleted, and
every other record exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from k8s_builders import scenario as build_scenario
from k8s_builders import t
from k8s_paths import HOUR, SETTLE, collect_hourly, collect_once, names, records, run_agent
from test_agent import churn, dedicated_late, late_statuses, short_job
from test_cli import cluster as cli_cluster
from test_collect import gpu_cloud

from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to
from kubetally.sim import Scenario
from kubetally.sim.scenario import packaged_scenarios

HERE = Path(__file__).parent


def every_scenario() -> Iterator[tuple[str, Scenario]]:
    for name, path in packaged_scenarios().items():
        yield f"packaged:{name}", Scenario.load(path)
    for path in sorted((HERE / "scenarios").glob("*.yaml")):
        yield f"tests:{path.stem}", Scenario.load(path)
    yield "test_collect:gpu_cloud", build_scenario(t("11:05:00"), gpu_cloud())
    yield "test_cli:cluster", build_scenario(t("11:05:00"), cli_cluster())
    for name, build, now in (
        ("churn", churn, "10:00:00"),
        ("late_statuses", late_statuses, "11:01:30"),
        ("short_job", short_job, "10:00:00"),
        ("dedicated_late", dedicated_late, "10:00:00"),
    ):
        objects, events = build()
        yield f"test_agent:{name}", build_scenario(t(now), objects, events)


SCENARIOS = dict(every_scenario())


def _window(scenario: Scenario) -> tuple[datetime, datetime, datetime]:
    """(first period start, end of the last closed period, when to stop): every period from two
    hours before the scenario's start (what its objects' history reaches) to the one holding its
    last event."""
    start = floor_to(scenario.now, HOUR) - 2 * HOUR
    last = max([scenario.now, *(e.at for e in scenario.events)])
    end = floor_to(last, HOUR) + HOUR
    return start, end, end + SETTLE + timedelta(seconds=1)


def _gone(scenario: Scenario) -> set[str]:
    """Names of objects whose history no object field records: what a scenario deletes, nodes
    whose labels it changes (a dedication released by removing a label leaves no trace), and
    the pods on such nodes."""
    deleted = {e.object["metadata"]["name"] for e in scenario.events if e.type == "DELETED"}
    labels: dict[str, dict[str, str]] = {}
    for obj in [*scenario.objects, *(e.object for e in scenario.events if e.type != "DELETED")]:
        if obj.get("kind") == "Node":
            name, now = obj["metadata"]["name"], obj["metadata"].get("labels") or {}
            if name in labels and labels[name] != now:
                deleted.add(name)
            labels[name] = now
    objects = [*scenario.objects, *(e.object for e in scenario.events)]
    on_gone_node = {
        o["metadata"]["name"]
        for o in objects
        if o.get("kind") == "Pod" and (o.get("spec") or {}).get("nodeName") in deleted
    }
    return deleted | on_gone_node


def test_every_scenario_of_the_suite_is_here() -> None:
    assert "packaged:gpu-cloud" in SCENARIOS and "tests:accuracy" in SCENARIOS
    assert len(SCENARIOS) >= 4


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_collect_and_the_agent_write_identical_records(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    start, end, stop = _window(scenario)
    deleted = {e.object["metadata"]["name"] for e in scenario.events if e.type == "DELETED"}
    with Ledger.open(str(tmp_path / "agent.db")) as a, Ledger.open(str(tmp_path / "collect.db")) as c:
        run_agent(scenario, a, stop)
        collect_hourly(scenario, c, stop)
        by_agent, by_collect = records(a, start, end), records(c, start, end)
    assert by_agent, f"{name}: nothing metered"
    kept_agent = {k: v for k, v in by_agent.items() if k[5] not in deleted}
    kept_collect = {k: v for k, v in by_collect.items() if k[5] not in deleted}
    assert kept_collect == kept_agent
    # Deleted objects: collect never bills a second the agent did not.
    removed = {e.object["metadata"]["name"] for e in scenario.events if e.type == "DELETED"}
    for key, value in by_collect.items():
        if key[5] in removed:
            assert value <= by_agent.get(key, 0), key


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_one_collect_at_the_end_agrees_except_where_it_says_it_cannot_know(name: str, tmp_path: Path) -> None:
    """A single ``collect`` sees only the final state. Besides deleted objects, it may differ
    from the agent only on objects it named in a "not recorded" warning (a PVC's size before a
    resize), never silently. Pods on a deleted node count as deleted here: the node's dedicated
    stretch is gone with it."""
    scenario = SCENARIOS[name]
    start, end, stop = _window(scenario)
    deleted = _gone(scenario)
    with Ledger.open(str(tmp_path / "agent.db")) as a, Ledger.open(str(tmp_path / "collect.db")) as c:
        run_agent(scenario, a, stop)
        warnings = collect_once(scenario, c, start, end)
        by_agent, by_collect = records(a, start, end), records(c, start, end)
    unknowable = {n for n in names(by_collect) if any(n in m and "not recorded" in m for m in warnings.messages)}
    differing = {k[5] for k in set(by_agent) | set(by_collect) if by_agent.get(k) != by_collect.get(k)}
    assert differing <= deleted | unknowable
