"""Two ``kubetally agent`` processes, one simulated API, one PostgreSQL ledger (issue 13).

Leader election follows client-go over a ``coordination.k8s.io/v1`` Lease in the simulator; the
scenario is issue 9's accuracy scenario, whose truth is derived by hand in ``test_accuracy.py``
(``EXPECTED``). The leader is SIGKILLed mid-period (10:15, after the scratch PVC bound and
before the 10:30 resizes); the standby takes over and the totals must still equal the truth:
nothing lost (the killed leader's journal + the new leader's LIST) and nothing doubled (records
have deterministic ids; the ledger's journal lease fences a stale writer).

Short timings keep the test fast: lease 2 s, renew deadline 1.5 s, retry 0.25 s, tick 1 s.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

from ha_helpers import AgentProcess, wait_for
from k8s_builders import usage
from k8s_paths import _instants
from kubernetes import client
from test_accuracy import END, EXPECTED, SCENARIO, START

from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.sim import Scenario, SimServer

NAMESPACE = "kubetally"
LEASE = "kubetally-agent"
LEASE_SECONDS = 2
RETRY = 0.25
CONFIG = f"""\
cluster: gpu-east
collection: {{max_backfill: 6h, settle_delay: 2m}}
kubernetes: {{tick_interval: 1s, reconcile_interval: 1s}}
agent:
  leader_election:  # enabled by --leader-elect, as the ha-agent overlay does
    namespace: {NAMESPACE}
    lease_duration: {LEASE_SECONDS}
    renew_deadline: 1.5
    retry_period: {RETRY}
"""


def lease(sim: SimServer) -> client.V1Lease | None:
    try:
        return client.CoordinationV1Api(sim.api_client()).read_namespaced_lease(LEASE, NAMESPACE)
    except client.ApiException:
        return None


def holder_pid(sim: SimServer) -> int | None:
    found = lease(sim)
    holder = found.spec.holder_identity if found is not None else None
    return int(holder.split("/")[1]) if holder else None


def kubernetes_until(ledger: Ledger) -> datetime | None:
    marks = [m.until for m in ledger.watermarks() if m.source == "kubernetes"]
    return min(marks) if marks else None


def test_sigkill_of_the_leader_mid_period_loses_and_doubles_nothing(pg_url: str, tmp_path: Path) -> None:
    scenario = Scenario.load(SCENARIO)
    config = tmp_path / "kubetally.yaml"
    config.write_text(CONFIG)
    kill_at = parse_time("2026-11-02T10:15:00Z")
    with SimServer(scenario) as sim:
        kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
        args = (
            "-c",
            str(config),
            "--kubeconfig",
            str(kubeconfig),
            "--db",
            pg_url,
            "--clock",
            "apiserver",
            "--leader-elect",
        )
        with AgentProcess("a", tmp_path, *args) as a:
            wait_for("agent a to lead", lambda: a.alive() and holder_pid(sim) == a.pid, timeout=60)
            with AgentProcess("b", tmp_path, *args, log_format="json") as b, Ledger.open(pg_url) as ledger:
                # The standby answers its probes: alive, ready (it can reach the ledger), not leader.
                wait_for("b's listener", lambda: b.get("/healthz") == (200, "ok\n"), timeout=60)
                assert b.get("/readyz") == (200, "ok\n")
                assert b.metric("kubetally_agent_leader") == 0.0
                leader = a
                for at in _instants(scenario, parse_time("2026-11-02T12:05:00Z")):
                    sim.advance(at)
                    target = sim.resource_version
                    wait_for(
                        f"the leader to apply the watch up to {target} at {at}",
                        lambda leader=leader, target=target: (
                            (leader.metric("kubetally_agent_watch_resource_version") or 0) >= target
                        ),
                    )
                    if at != kill_at:
                        continue
                    # A wrote 09:00–10:00 at 10:02 (the period it closed before dying).
                    wait_for(
                        "a to write 09:00-10:00", lambda: (kubernetes_until(ledger) or START) >= START.replace(hour=10)
                    )
                    killed = time.monotonic()
                    a.signal(signal.SIGKILL)
                    wait_for("b to take the Lease", lambda: holder_pid(sim) == b.pid, timeout=10, every=0.02)
                    took = time.monotonic() - killed
                    # client-go: a candidate takes an unrenewed Lease once leaseDurationSeconds
                    # passed since it last saw it change, at its next retry (≤ retry × 1.2 later);
                    # A last renewed ≤ one retry before the kill: 2 + 0.3 = 2.3 s, plus 2 s of
                    # slack for two busy cores.
                    assert took <= LEASE_SECONDS + RETRY * 1.2 + 2.0, took
                    found = lease(sim)
                    assert found is not None
                    # A created the Lease (0 transitions); B's takeover is the first transition.
                    assert (found.spec.lease_transitions, found.spec.lease_duration_seconds) == (1, LEASE_SECONDS)
                    leader = b
                    wait_for(
                        "b to sync its watches",
                        lambda: (b.metric("kubetally_agent_watch_resource_version") or 0) >= sim.resource_version,
                    )
                # The truth of every case, as if one agent had watched all three hours.
                wait_for("b to write 11:00-12:00", lambda: (kubernetes_until(ledger) or START) >= END, timeout=30)
                assert usage(ledger, start=START, end=END) == EXPECTED
                # Leader, ready, nothing behind, no watch lost; it wrote 10:00–11:00 and
                # 11:00–12:00: every one of the 18 cases has a record in both hours (the scratch
                # PVC from its 10:15 bind, podlevel from 10:00), 18 × 2 = 36 records.
                assert b.get("/readyz") == (200, "ok\n")
                assert b.metric("kubetally_agent_leader") == 1.0
                assert b.metric("kubetally_agent_periods_behind", source="kubernetes") == 0.0
                assert b.metric("kubetally_agent_records_written_total", source="kubernetes") == 36.0
                for resource in ("nodes", "pods", "persistentvolumeclaims", "services"):
                    assert b.metric("kubetally_agent_watch_restarts_total", resource=resource) == 0.0
                    assert b.metric("kubetally_agent_watch_relists_total", resource=resource) == 0.0
                verbs = {
                    dict(labels)["verb"]
                    for name, labels in b.metrics()
                    if name.startswith("kubetally_kubernetes_api_requests")
                }
                # B found A's Lease (never created one) and writes no Events: get, update, list, watch.
                assert verbs == {"get", "update", "list", "watch"}
                # SIGTERM: flush, give the journal lease and the Lease back, exit 0 within a
                # pod's default terminationGracePeriodSeconds (30 s).
                b.signal(signal.SIGTERM)
                assert b.process.wait(timeout=30) == 0, b.output()
                released = lease(sim)
                assert released is not None and released.spec.holder_identity is None
                # client-go's ReleaseOnCancel: duration 1 s, transitions kept.
                assert (released.spec.lease_duration_seconds, released.spec.lease_transitions) == (1, 1)
                lines = [json.loads(line) for line in b.output().splitlines() if line.startswith("{")]
                assert any("became leader" in line["message"] for line in lines)
                assert any("released Lease kubetally/kubetally-agent" in line["message"] for line in lines)
                # Every kubetally line names the cluster; the period line names its last period.
                assert {line["cluster"] for line in lines if line["logger"].startswith("kubetally")} == {"gpu-east"}
                wrote = [line for line in lines if line["message"].startswith("wrote ")]
                assert wrote[-1]["period"] == "[2026-11-02T11:00:00Z, 2026-11-02T12:00:00Z)"
