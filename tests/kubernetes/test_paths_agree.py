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

Both paths run with ``capacity: true``, so every node's capacity, idle and over-commit records
are compared too. Down and cordoned stretches that began and ended between two ``collect`` runs
leave no field to read (a node's Ready condition keeps only its last transition): there collect
never reports more than the agent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from k8s_builders import scenario as build_scenario
from k8s_builders import t
from k8s_paths import HOUR, SETTLE, collect_hourly, collect_once, names, records, run_agent
from test_agent import churn, dedicated_late, late_statuses, short_job
from test_capacity import provider_scenario
from test_cli import cluster as cli_cluster
from test_collect import gpu_cloud

from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to
from kubetally.sim import Scenario
from kubetally.sim.scenario import packaged_scenarios
from kubetally.sources.kubernetes.provider import CAPACITY, CORDONED, DOWN, IDLE, OVERCOMMIT

HERE = Path(__file__).parent
#: Provider records of stretches a state read cannot date once they are over.
UNSEEN_STRETCHES = {DOWN, CORDONED}


def every_scenario() -> Iterator[tuple[str, Scenario]]:
    for name, path in packaged_scenarios().items():
        yield f"packaged:{name}", Scenario.load(path)
    for path in sorted((HERE / "scenarios").glob("*.yaml")):
        yield f"tests:{path.stem}", Scenario.load(path)
    yield "test_collect:gpu_cloud", build_scenario(t("11:05:00"), gpu_cloud())
    yield "test_cli:cluster", build_scenario(t("11:05:00"), cli_cluster())
    yield "test_capacity:provider_cloud", provider_scenario()
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


def _hosts(scenario: Scenario, pods: set[str]) -> set[str]:
    """Nodes some of ``pods`` ran on: their idle is capacity minus those pods' (differing) time."""
    objects = [*scenario.objects, *(e.object for e in scenario.events)]
    return {
        str((o.get("spec") or {}).get("nodeName"))
        for o in objects
        if o.get("kind") == "Pod" and o["metadata"]["name"] in pods and (o.get("spec") or {}).get("nodeName")
    }


def _derived_on(key: tuple[str, ...], hosts: set[str]) -> bool:
    return key[3] in (IDLE, OVERCOMMIT) and key[5] in hosts


def _compared(key: tuple[str, ...], deleted: set[str], hosts: set[str]) -> bool:
    return key[5] not in deleted and key[3] not in UNSEEN_STRETCHES and not _derived_on(key, hosts)


def _capacity_adds_up(ledger: Ledger, start: datetime, end: datetime) -> None:
    """In each ledger, per period, node, item, SKU and profile with a capacity record:
    Σ tenants + idle − over-commit = capacity, exactly (so idle records left out of a
    comparison are still checked)."""
    sums: dict[tuple[object, ...], Decimal] = defaultdict(Decimal)
    with_capacity = set()
    sign = {CAPACITY: -1, IDLE: 1, OVERCOMMIT: -1, "Pod": 1}
    for r in ledger.records(start=start, end=end):
        node = r.labels.get("node") if r.kind == "Pod" else r.name
        factor = 1 if (r.kind == "Node" and r.tenant) else sign.get(r.kind)
        if factor is None or not node:
            continue
        profile = "" if r.kind == "Node" else r.labels.get("gpu_profile", "")
        key = (r.start, node, r.item, r.labels.get("gpu_sku", ""), profile)
        sums[key] += factor * r.usage
        if r.kind == CAPACITY:
            with_capacity.add(key)
    assert with_capacity, "no capacity metered"
    assert {k: sums[k] for k in with_capacity if sums[k] != 0} == {}


def test_every_scenario_of_the_suite_is_here() -> None:
    assert "packaged:gpu-cloud" in SCENARIOS and "tests:accuracy" in SCENARIOS
    assert len(SCENARIOS) >= 4


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_collect_and_the_agent_write_identical_records(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    start, end, stop = _window(scenario)
    deleted = {e.object["metadata"]["name"] for e in scenario.events if e.type == "DELETED"}
    with Ledger.open(str(tmp_path / "agent.db")) as a, Ledger.open(str(tmp_path / "collect.db")) as c:
        run_agent(scenario, a, stop, capacity=True)
        collect_hourly(scenario, c, stop, capacity=True)
        by_agent, by_collect = records(a, start, end), records(c, start, end)
        for ledger in (a, c):
            _capacity_adds_up(ledger, start, end)
    assert by_agent, f"{name}: nothing metered"
    hosts = _hosts(scenario, deleted)
    kept_agent = {k: v for k, v in by_agent.items() if _compared(k, deleted, hosts)}
    kept_collect = {k: v for k, v in by_collect.items() if _compared(k, deleted, hosts)}
    assert kept_collect == kept_agent
    for key, value in by_collect.items():
        if key[3] in UNSEEN_STRETCHES:
            assert value <= by_agent.get(key, 0), key
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
        run_agent(scenario, a, stop, capacity=True)
        warnings = collect_once(scenario, c, start, end, capacity=True)
        by_agent, by_collect = records(a, start, end), records(c, start, end)
        for ledger in (a, c):
            _capacity_adds_up(ledger, start, end)
    unknowable = {n for n in names(by_collect) if any(n in m and "not recorded" in m for m in warnings.messages)}
    differing_pods = {k[5] for k in set(by_agent) | set(by_collect) if by_agent.get(k) != by_collect.get(k)}
    hosts = _hosts(scenario, deleted | unknowable | differing_pods)
    differing = {
        k[5]
        for k in set(by_agent) | set(by_collect)
        if by_agent.get(k) != by_collect.get(k) and k[3] not in UNSEEN_STRETCHES and not _derived_on(k, hosts)
    }
    assert differing <= deleted | unknowable
    for key, value in by_collect.items():
        if key[3] in UNSEEN_STRETCHES:
            assert value <= by_agent.get(key, 0), key
