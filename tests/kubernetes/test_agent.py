"""The list+watch agent against the simulated API: churn between periods, 410 Gone, restarts,
failed LISTs, late corrections and short windows. Time is the simulator's virtual clock; each step
advances it and waits until every watch has delivered up to the simulator's resourceVersion."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from k8s_builders import control_plane_pod, namespace, node, pod, serve, t, usage, vcluster
from sqlalchemy import select

from kubetally.config import Config
from kubetally.config.kubernetes import KubernetesConfig, TenancyConfig
from kubetally.config.loader import CollectionSettings, Settings
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.sim import SimServer
from kubetally.sources.kubernetes.agent import KubernetesAgent
from kubetally.sources.kubernetes.lease import LeaseHeld
from kubetally.sources.kubernetes.registry import known_tenants
from kubetally.sources.kubernetes.run import collect_kubernetes
from kubetally.sources.kubernetes.tables import segments

TEAM_A = "vcluster/vcluster-team-a/team-a"
TEAM_B = "vcluster/vcluster-team-b/team-b"
A100 = "nvidia-a100-sxm-40gb"
H100 = "nvidia-h100-sxm-80gb"
SYNCED = "vcluster.loft.sh/managed-by"


def config(*, backfill: str = "2h", **kubernetes: Any) -> Config:
    collection = CollectionSettings(max_backfill=backfill)
    return Config(settings=Settings(collection=collection, kubernetes=KubernetesConfig(**kubernetes)))


@contextmanager
def running(sim: SimServer, ledger: Ledger, cfg: Config) -> Iterator[KubernetesAgent]:
    agent = KubernetesAgent(
        config=cfg, ledger=ledger, cluster="gpu-east", api_client=sim.api_client(), clock=lambda: sim.now
    )
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def step(sim: SimServer, agent: KubernetesAgent, to: str) -> None:
    """Advance virtual time and apply everything the watches deliver up to now."""
    sim.advance(to)
    agent.pump(timeout=10, until_rv=sim.resource_version)
    assert agent.synced(sim.resource_version), "watches did not deliver in time"


def gpu_pod(name: str, node_name: str, gpus: str, **kwargs: Any) -> dict[str, Any]:
    return pod(
        name,
        "vcluster-team-a",
        node_name=node_name,
        labels={SYNCED: "team-a"},
        requests={"nvidia.com/gpu": gpus},
        **kwargs,
    )


def churn() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    h100 = node(
        "h100-new",
        labels={
            SYNCED: "team-a",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "node.kubernetes.io/instance-type": "p5.48xlarge",
        },
        cpu="192",
        memory="2Ti",
        gpus={"nvidia.com/gpu": "8"},
        created=t("10:17:23"),
    )
    objects = [
        namespace("vcluster-team-a"),
        vcluster("team-a", "vcluster-team-a"),
        node("cpu-system", cpu="16", memory="64Gi"),
        node("a100", labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}, gpus={"nvidia.com/gpu": "8"}),
        control_plane_pod("team-a", "vcluster-team-a", ready_since=t("08:00:00")),
        gpu_pod("notebook-x-default-x-team-a", "a100", "1", started=t("09:50:00")),
    ]
    events = [
        {"at": t("10:17:23"), "type": "ADDED", "object": h100},
        {"at": t("10:25:00"), "type": "ADDED", "object": gpu_pod("trainer-x-ml-x-team-a", "a100", "2")},
        {
            "at": t("10:25:30"),
            "type": "MODIFIED",
            "object": gpu_pod("trainer-x-ml-x-team-a", "a100", "2", started=t("10:25:30")),
        },
        {
            "at": t("10:28:00"),
            "type": "ADDED",
            "object": gpu_pod("eval-x-ml-x-team-a", "h100-new", "8", started=t("10:28:00")),
        },
        {
            "at": t("10:40:00"),
            "type": "DELETED",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "notebook-x-default-x-team-a",
                    "namespace": "vcluster-team-a",
                    "deletionTimestamp": t("10:40:00"),
                },
            },
        },
        # While the agent is down (11:20–12:10): the trainer finishes, the H100 node is removed.
        {
            "at": t("11:40:00"),
            "type": "MODIFIED",
            "object": gpu_pod("trainer-x-ml-x-team-a", "a100", "2", started=t("10:25:30"), finished=t("11:40:00")),
        },
        {
            "at": t("11:45:00"),
            "type": "DELETED",
            "object": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "h100-new"}},
        },
    ]
    return objects, events


SHARED = ("billing_mode=shared", "capacity_type=on-demand")
DEDICATED = ("billing_mode=dedicated", "capacity_type=on-demand")


def test_watch_churn_410_and_restart_bill_every_second_once(ledger: Ledger) -> None:
    objects, events = churn()
    with serve(t("10:00:00"), objects, events) as sim:
        with running(sim, ledger, config()) as agent:
            step(sim, agent, t("10:17:23"))  # the dedicated H100 node joins
            step(sim, agent, t("10:25:00"))  # trainer scheduled (Pending: nothing billed yet)
            # etcd compaction: every open watch gets 410 Gone and must re-list; the pod re-list
            # also fails twice, so the trainer starting at 10:25:30 happens inside the gap.
            sim.fail_next(verb="list", resource="pods", status=500, times=2)
            sim.expire_watches()
            sim.advance(t("10:25:30"))
            agent.pump(timeout=10, until_rv=sim.resource_version)
            assert agent.synced(sim.resource_version)
            step(sim, agent, t("10:28:00"))  # a pod on the dedicated node: not billed again
            step(sim, agent, t("10:40:00"))  # notebook deleted at 10:40:00, between two periods
            step(sim, agent, t("11:02:00"))
            # 11:02 - settle 2 min = 11:00; max_backfill 2 h reaches back into 09:00–10:00 (09:02),
            # the first period resumed → 09:00–10:00 and 10:00–11:00.
            first = agent.tick()
            step(sim, agent, t("11:20:00"))
        # The agent is down from 11:20 to 12:10; the trainer finishes and the node goes meanwhile.
        sim.advance(t("12:10:00"))
        with running(sim, ledger, config()) as agent:
            second = agent.tick()  # 12:10: writes 11:00–12:00
    assert [p.start for p in first.periods] == [parse_time(t("09:00:00")), parse_time(t("10:00:00"))]
    assert [p.start for p in second.periods] == [parse_time(t("11:00:00"))]
    assert usage(ledger, start=parse_time(t("09:00:00")), end=parse_time(t("10:00:00"))) == {
        # notebook 09:50:00–10:00:00 = 600 s × 1 GPU
        (TEAM_A, "gpu_hours", "notebook-x-default-x-team-a", f"gpu_sku={A100}", *SHARED): Decimal("0.166666667"),
        (TEAM_A, "control_plane_hours", "team-a"): Decimal("1"),
    }
    assert usage(ledger, start=parse_time(t("10:00:00")), end=parse_time(t("11:00:00"))) == {
        # notebook 10:00:00–10:40:00 (deletionTimestamp) = 2400 s × 1 GPU
        (TEAM_A, "gpu_hours", "notebook-x-default-x-team-a", f"gpu_sku={A100}", *SHARED): Decimal("0.666666667"),
        # trainer 10:25:30–11:00:00 = 2070 s × 2 GPU = 4140/3600
        (TEAM_A, "gpu_hours", "trainer-x-ml-x-team-a", f"gpu_sku={A100}", *SHARED): Decimal("1.15"),
        # H100 node 10:17:23–11:00:00 = 2557 s: node 2557/3600; 8 GPU 20456/3600; 192 cores 490944/3600;
        # 2 TiB = 2048 GiB → 5236736/3600. The eval pod on it has no record.
        (TEAM_A, "node_hours", "h100-new", *DEDICATED, "node_sku=p5.48xlarge"): Decimal("0.710277778"),
        (TEAM_A, "gpu_hours", "h100-new", f"gpu_sku={H100}", *DEDICATED): Decimal("5.682222222"),
        (TEAM_A, "cpu_core_hours", "h100-new", *DEDICATED): Decimal("136.373333333"),
        (TEAM_A, "memory_gib_hours", "h100-new", *DEDICATED): Decimal("1454.648888889"),
        (TEAM_A, "control_plane_hours", "team-a"): Decimal("1"),
    }
    assert usage(ledger, start=parse_time(t("11:00:00")), end=parse_time(t("12:00:00"))) == {
        # trainer 11:00:00–11:40:00 (finishedAt, seen in the LIST after the restart) = 2400 s × 2 GPU
        (TEAM_A, "gpu_hours", "trainer-x-ml-x-team-a", f"gpu_sku={A100}", *SHARED): Decimal("1.333333333"),
        # H100 node vanished while nobody watched: billed to 11:20:00, when the stopping agent last
        # confirmed it (never later than provable) = 1200 s: 1/3 node; 8/3 GPU; 64 cores; 2048/3 GiB
        (TEAM_A, "node_hours", "h100-new", *DEDICATED, "node_sku=p5.48xlarge"): Decimal("0.333333333"),
        (TEAM_A, "gpu_hours", "h100-new", f"gpu_sku={H100}", *DEDICATED): Decimal("2.666666667"),
        (TEAM_A, "cpu_core_hours", "h100-new", *DEDICATED): Decimal("64"),
        (TEAM_A, "memory_gib_hours", "h100-new", *DEDICATED): Decimal("682.666666667"),
        (TEAM_A, "control_plane_hours", "team-a"): Decimal("1"),
    }
    # Nothing doubled: every record is a first measurement, and no period was re-written.
    assert all(r.revision == 0 for r in ledger.records(history=True))
    with ledger.engine.connect() as conn:
        still_open = conn.execute(select(segments.c.uid, segments.c.role).where(segments.c.ended_at.is_(None)))
        assert sorted(role for _, role in still_open) == ["control-plane"]


def test_a_failed_list_never_offboards_and_grace_is_respected(tmp_path: Path) -> None:
    objects = [
        namespace("vcluster-team-a"),
        namespace("vcluster-team-b"),
        node("cpu-system"),
        vcluster("team-a", "vcluster-team-a"),
        vcluster("team-b", "vcluster-team-b"),
    ]
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger, serve(t("10:00:00"), objects) as sim:
        cfg = config(tenancy=TenancyConfig(offboard_grace=timedelta(hours=1)))
        with running(sim, ledger, cfg) as agent:
            # The StatefulSet LIST fails on both attempts: the discovery is incomplete.
            sim.fail_next(verb="list", resource="statefulsets", status=500, times=2)
            step(sim, agent, t("10:05:00"))
            agent.reconcile()
            state = {k.tenant.id: k for k in known_tenants(ledger, "gpu-east")}
            assert set(state) == {TEAM_A, TEAM_B}
            assert all(k.missing_since is None and k.offboarded_at is None for k in state.values())
            # team-b's vCluster really goes away; the next complete discovery (10:10:00) misses it.
            sim.apply(
                "DELETED",
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "metadata": {"name": "team-b", "namespace": "vcluster-team-b"},
                },
            )
            step(sim, agent, t("10:10:00"))
            agent.reconcile()
            # 11:09:59 is 59 min 59 s after 10:10:00: still inside the 1 h grace.
            step(sim, agent, t("11:09:59"))
            agent.reconcile()
            team_b = next(k for k in known_tenants(ledger, "gpu-east") if k.tenant.id == TEAM_B)
            assert (team_b.missing_since, team_b.offboarded_at) == (parse_time(t("10:10:00")), None)
            step(sim, agent, t("11:10:00"))
            agent.reconcile()
    state = {k.tenant.id: k for k in known_tenants(ledger, "gpu-east")}
    # Missing since 10:10:00 + 1 h grace → offboarded by the reconcile at 11:10:00.
    assert state[TEAM_B].offboarded_at == parse_time(t("11:10:00"))
    assert state[TEAM_A].offboarded_at is None


def late_statuses() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """At 11:01:30 two jobs still show Running; their finish statuses arrive at 11:02:00."""
    objects = [
        namespace("vcluster-team-a"),
        vcluster("team-a", "vcluster-team-a"),
        node("a100", labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}, gpus={"nvidia.com/gpu": "8"}),
        gpu_pod("job-x-ml-x-team-a", "a100", "1", started=t("10:00:00")),
        gpu_pod("early-x-ml-x-team-a", "a100", "1", started=t("09:30:00")),
    ]
    events = [
        {
            "at": t("11:02:00"),
            "type": "MODIFIED",
            "object": gpu_pod("job-x-ml-x-team-a", "a100", "1", started=t("10:00:00"), finished=t("10:59:00")),
        },
        {
            "at": t("11:02:00"),
            "type": "MODIFIED",
            "object": gpu_pod("early-x-ml-x-team-a", "a100", "1", started=t("09:30:00"), finished=t("09:59:30")),
        },
    ]
    return objects, events


def test_a_late_status_update_revises_the_written_period(tmp_path: Path) -> None:
    objects, events = late_statuses()
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger, serve(t("11:01:30"), objects, events) as sim:
        with running(sim, ledger, config(settle_delay=timedelta(minutes=1), backfill="1h")) as agent:
            agent.tick()  # 11:01:30: 10:00–11:00 written with both jobs still running → 1 GPU-hour each
            step(sim, agent, t("11:02:00"))  # the kubelet's statuses arrive late
            result = agent.tick()
        current = {r.name: r for r in ledger.records(item="gpu_hours", start=parse_time(t("10:00:00")))}
        history = sorted(
            (r.name, r.revision, r.usage)
            for r in ledger.records(item="gpu_hours", start=parse_time(t("10:00:00")), history=True)
        )
    # The earliest late end (09:59:30) re-meters every written period from its start on.
    assert [p.start for p in result.revisited] == [parse_time(t("09:00:00")), parse_time(t("10:00:00"))]
    assert history == [
        # early finished at 09:59:30, before the period: its 1 h is withdrawn (revision to 0).
        ("early-x-ml-x-team-a", 0, Decimal("1")),
        ("early-x-ml-x-team-a", 1, Decimal("0")),
        # job: 10:00:00–10:59:00 = 3540 s × 1 GPU = 0.983333333, a revision of the 1 h first written.
        ("job-x-ml-x-team-a", 0, Decimal("1")),
        ("job-x-ml-x-team-a", 1, Decimal("0.983333333")),
    ]
    assert (current["job-x-ml-x-team-a"].usage, current["job-x-ml-x-team-a"].revision) == (Decimal("0.983333333"), 1)
    # 09:00–10:00 was before max_backfill but is re-metered with what is now known:
    # early ran 09:30:00–09:59:30 = 1770 s × 1 GPU = 0.491666667.
    assert usage_of(tmp_path, "09:00:00") == {"early-x-ml-x-team-a": Decimal("0.491666667")}


def usage_of(tmp_path: Path, hour: str) -> dict[str, Decimal]:
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        start = parse_time(t(hour))
        return {r.name: r.usage for r in ledger.records(item="gpu_hours", start=start, end=start + timedelta(hours=1))}


def short_job() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A job running 10:02:30–10:13:10 on a shared A100."""
    objects = [
        namespace("vcluster-team-a"),
        vcluster("team-a", "vcluster-team-a"),
        node("a100", labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}, gpus={"nvidia.com/gpu": "8"}),
    ]
    events = [
        {
            "at": t("10:02:30"),
            "type": "ADDED",
            "object": gpu_pod("job-x-ml-x-team-a", "a100", "1", started=t("10:02:30")),
        },
        {
            "at": t("10:13:10"),
            "type": "MODIFIED",
            "object": gpu_pod("job-x-ml-x-team-a", "a100", "1", started=t("10:02:30"), finished=t("10:13:10")),
        },
    ]
    return objects, events


def test_short_windows_for_near_real_time_records(tmp_path: Path) -> None:
    objects, events = short_job()
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger, serve(t("10:00:00"), objects, events) as sim:
        cfg = config(window=timedelta(minutes=5), settle_delay=timedelta(0), backfill="15m")
        with running(sim, ledger, cfg) as agent:
            step(sim, agent, t("10:02:30"))
            step(sim, agent, t("10:13:10"))
            step(sim, agent, t("10:15:00"))
            agent.tick()
        records = sorted(ledger.records(item="gpu_hours"), key=lambda r: r.start)
    assert [(r.start, str(r.period), r.usage) for r in records] == [
        (parse_time(t("10:00:00")), "5m", Decimal("0.041666667")),  # 10:02:30–10:05:00 = 150 s
        (parse_time(t("10:05:00")), "5m", Decimal("0.083333333")),  # 300 s
        (parse_time(t("10:10:00")), "5m", Decimal("0.052777778")),  # 10:10:00–10:13:10 = 190 s
    ]
    assert records[0].end == parse_time(t("10:04:59"))


def test_nothing_is_written_while_a_watch_is_broken(tmp_path: Path) -> None:
    objects = [namespace("vcluster-team-a"), vcluster("team-a", "vcluster-team-a"), node("cpu-system")]
    with (
        Ledger.open(str(tmp_path / "ledger.db")) as ledger,
        serve(t("10:00:00"), objects) as sim,
        running(sim, ledger, config(backfill="1h")) as agent,
    ):
        # Pods can neither be watched nor re-listed for a while: periods wait for them.
        sim.fail_next(verb="watch", resource="pods", status=500, times=1000)
        sim.fail_next(verb="list", resource="pods", status=500, times=1000)
        sim.expire_watches()
        agent.pump(timeout=1)
        sim.advance(t("11:05:00"))
        assert agent.tick().periods == []
        sim.faults.clear()
        agent.pump(timeout=10, until_rv=sim.resource_version)
        # 11:05 - settle 2 min, max_backfill 1 h (from the period of 10:05): 10:00–11:00 is written now.
        assert [p.start for p in agent.tick().periods] == [parse_time(t("10:00:00"))]


def test_one_writer_per_cluster(tmp_path: Path) -> None:
    objects = [namespace("vcluster-team-a"), vcluster("team-a", "vcluster-team-a"), node("cpu-system")]
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger, serve(t("11:05:00"), objects) as sim:
        # A collect while the agent meters the same cluster into the same ledger would open a
        # second segment for every new object: refused, naming the holder.
        with running(sim, ledger, config()), pytest.raises(LeaseHeld, match=r"cluster gpu-east is being metered by"):
            collect_kubernetes(
                config=config(), ledger=ledger, cluster="gpu-east", api_client=sim.api_client(), clock=lambda: sim.now
            )
        # The agent gave the lease back on stop: collecting now works.
        result = collect_kubernetes(
            config=config(), ledger=ledger, cluster="gpu-east", api_client=sim.api_client(), clock=lambda: sim.now
        )
        assert result.written.revised == 0


def dedicated_late() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An L4 node joins at 10:10 labelled for vCluster "late" (discovered at 10:10:40) and is
    released (label removed) at 10:30; a pod runs on it from 10:10:30."""
    l4 = {"nvidia.com/gpu.product": "NVIDIA-L4", "node.kubernetes.io/instance-type": "g2-standard-8"}
    joined = node(
        "l4-late",
        labels={**l4, SYNCED: "late"},
        cpu="8",
        memory="32Gi",
        gpus={"nvidia.com/gpu": "1"},
        created=t("10:10:00"),
    )
    released = node("l4-late", labels=l4, cpu="8", memory="32Gi", gpus={"nvidia.com/gpu": "1"}, created=t("10:10:00"))
    job = pod(
        "serve-x-default-x-late",
        "vcluster-late",
        node_name="l4-late",
        labels={SYNCED: "late"},
        requests={"nvidia.com/gpu": "1"},
        started=t("10:10:30"),
    )
    objects = [namespace("vcluster-late"), node("cpu-system")]
    events = [
        {"at": t("10:10:00"), "type": "ADDED", "object": joined},  # labelled for vCluster "late", unknown yet
        {"at": t("10:10:30"), "type": "ADDED", "object": job},
        {"at": t("10:10:40"), "type": "ADDED", "object": vcluster("late", "vcluster-late")},
        {"at": t("10:30:00"), "type": "MODIFIED", "object": released},  # the operator releases the node
    ]
    return objects, events


def test_a_node_dedicated_late_and_released_is_never_billed_twice(tmp_path: Path) -> None:
    objects, events = dedicated_late()
    late = "vcluster/vcluster-late/late"
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger, serve(t("10:00:00"), objects, events) as sim:
        with running(sim, ledger, config(backfill="2h", settle_delay=timedelta(0))) as agent:
            step(sim, agent, t("10:10:30"))
            step(sim, agent, t("10:10:40"))
            agent.reconcile()  # the vCluster is discovered: the node was dedicated since it joined
            step(sim, agent, t("10:30:00"))
            step(sim, agent, t("11:00:00"))
            agent.tick()
        got = usage(ledger, start=parse_time(t("10:00:00")), end=parse_time(t("11:00:00")))
    assert got == {
        # Node dedicated 10:10:00 (creation) – 10:30:00 (released) = 1200 s: 1/3 node, 1/3 GPU,
        # 8 cores → 2.666666667, 32 GiB → 10.666666667.
        (late, "node_hours", "l4-late", *DEDICATED, "node_sku=g2-standard-8"): Decimal("0.333333333"),
        (late, "gpu_hours", "l4-late", "gpu_sku=nvidia-l4-24gb", *DEDICATED): Decimal("0.333333333"),
        (late, "cpu_core_hours", "l4-late", *DEDICATED): Decimal("2.666666667"),
        (late, "memory_gib_hours", "l4-late", *DEDICATED): Decimal("10.666666667"),
        # The pod: nothing while the node was dedicated (not even the 10 s before the discovery);
        # from the release 10:30:00 to 11:00:00 = 1800 s × 1 GPU.
        (late, "gpu_hours", "serve-x-default-x-late", "gpu_sku=nvidia-l4-24gb", *SHARED): Decimal("0.5"),
    }


def test_a_crash_after_an_idle_tick_ends_what_vanished_at_that_tick(tmp_path: Path) -> None:
    """Idle ticks persist the confirmations as one row per kind, not by rewriting every open
    segment; a crashed agent (no flush on stop) still ends what vanished meanwhile at its last
    tick's confirmation, as when every open segment was rewritten each tick."""
    trainer = gpu_pod("trainer-x-ml-x-team-a", "a100", "1", started=t("10:00:00"))
    objects = [
        namespace("vcluster-team-a"),
        vcluster("team-a", "vcluster-team-a"),
        node("a100", labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}, gpus={"nvidia.com/gpu": "8"}),
        trainer,
    ]
    gone = {"apiVersion": "v1", "kind": "Pod", "metadata": {**trainer["metadata"], "deletionTimestamp": t("11:40:00")}}
    events = [{"at": t("11:40:00"), "type": "DELETED", "object": gone}]
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger, serve(t("10:30:00"), objects, events) as sim:
        agent = KubernetesAgent(
            config=config(), ledger=ledger, cluster="gpu-east", api_client=sim.api_client(), clock=lambda: sim.now
        )
        agent.start()
        step(sim, agent, t("11:02:00"))
        assert [p.start for p in agent.tick().periods] == [parse_time(t("09:00:00")), parse_time(t("10:00:00"))]
        step(sim, agent, t("11:20:00"))
        assert agent.tick().periods == []  # idle: 11:00–12:00 is not closed before 12:02
        agent.abandon()  # the crash: nothing flushed since the 11:20 tick
        sim.advance(t("12:10:00"))  # meanwhile the trainer was deleted (11:40)
        with running(sim, ledger, config()) as restarted:
            assert [p.start for p in restarted.tick().periods] == [parse_time(t("11:00:00"))]
    assert usage(ledger, start=parse_time(t("11:00:00")), end=parse_time(t("12:00:00"))) == {
        # 11:00:00–11:20:00, the idle tick's confirmation (not 11:02, the last written period) = 1200 s × 1 GPU
        (TEAM_A, "gpu_hours", "trainer-x-ml-x-team-a", f"gpu_sku={A100}", *SHARED): Decimal("0.333333333"),
    }
