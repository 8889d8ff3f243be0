"""``collect --kubernetes`` against the simulated API, through the official client over HTTP.

One GPU cloud, one hour (2026-11-02 10:00–11:00 UTC), collected at 11:05 (settle 2 min). Every
expected number is worked out by hand next to it: seconds inside the hour × quantity / 3600.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from k8s_builders import (
    control_plane_pod,
    lb_service,
    namespace,
    node,
    pod,
    pvc,
    serve,
    t,
    usage,
    vci,
    vcluster,
)

from kubetally.config import Config
from kubetally.errors import SourceError
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.sources.kubernetes.items import ITEMS, SOURCE
from kubetally.sources.kubernetes.registry import known_tenants
from kubetally.sources.kubernetes.run import collect_kubernetes

ALPHA = "vcluster/vc-shared/alpha"
BETA = "vcluster/vc-shared/beta"
GAMMA = "vcluster/vcluster-gamma/gamma"
RESEARCH = "namespace/research"
H100 = "nvidia-h100-sxm-80gb"
SYNCED = "vcluster.loft.sh/managed-by"


def gpu_cloud() -> list[dict[str, Any]]:
    """The cluster at 11:05. Comments give each object's billable seconds in 10:00–11:00."""
    return [
        namespace("vc-shared"),  # hosts TWO vClusters: alpha (StatefulSet) and beta (Deployment)
        namespace("vcluster-gamma"),
        namespace("p-research"),
        namespace("research", {"kubetally.io/tenant": "true"}),
        vcluster("alpha", "vc-shared"),
        vcluster("beta", "vc-shared", kind="Deployment"),
        vcluster("gamma", "vcluster-gamma"),
        vci("gamma", "research", host_ns="vcluster-gamma", vcluster_name="gamma"),
        # -- nodes --------------------------------------------------------------------------
        node("cpu-system", cpu="16", memory="64Gi"),
        # The same H100 model in three label dialects, all shared.
        node(
            "h100-gfd",
            labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"},
            gpus={"nvidia.com/gpu": "8"},
        ),
        node(
            "h100-gke",
            labels={
                "cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
                "cloud.google.com/gke-spot": "true",
                "node.kubernetes.io/instance-type": "a3-highgpu-8g",
            },
            gpus={"nvidia.com/gpu": "8"},
        ),
        node(
            "h100-eks",
            labels={
                "k8s.amazonaws.com/accelerator": "nvidia-h100",
                "eks.amazonaws.com/capacityType": "ON_DEMAND",
                "node.kubernetes.io/instance-type": "p5.48xlarge",
            },
            gpus={"nvidia.com/gpu": "8"},
        ),
        # MIG mixed strategy, all-balanced on 8× A100 80GB.
        node(
            "a100-mig",
            labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/mig.strategy": "mixed"},
            gpus={"nvidia.com/mig-1g.10gb": "16", "nvidia.com/mig-2g.20gb": "8", "nvidia.com/mig-3g.40gb": "8"},
        ),
        # Time-sliced 4× T4, 4 replicas each.
        node(
            "t4-ts",
            labels={
                "nvidia.com/gpu.product": "Tesla-T4-SHARED",
                "nvidia.com/gpu.replicas": "4",
                "nvidia.com/gpu.count": "4",
                "nvidia.com/gpu.sharing-strategy": "time-slicing",
            },
            gpus={"nvidia.com/gpu": "16"},
        ),
        # Dedicated to gamma (vBilling's label), joined mid-hour at 10:17:23 → 2557 s.
        node(
            "l40s-dedicated",
            labels={
                SYNCED: "gamma",
                "nvidia.com/gpu.product": "NVIDIA-L40S",
                "node.kubernetes.io/instance-type": "g6e.12xlarge",
            },
            cpu="48",
            memory="384Gi",
            gpus={"nvidia.com/gpu": "4"},
            created=t("10:17:23"),
        ),
        # -- pods ---------------------------------------------------------------------------
        # alpha: 2 GPUs, ran 09:30:00–10:20:30 → 1230 s in the hour.
        pod(
            "trainer-x-ml-x-alpha",
            "vc-shared",
            node_name="h100-gfd",
            labels={SYNCED: "alpha"},
            requests={"nvidia.com/gpu": "2", "cpu": "16", "memory": "128Gi"},
            started=t("09:30:00"),
            finished=t("10:20:30"),
        ),
        # beta: 1 GPU on the GKE spot H100 from 10:10:00 → 3000 s.
        pod(
            "server-x-web-x-beta",
            "vc-shared",
            node_name="h100-gke",
            labels={SYNCED: "beta"},
            requests={"nvidia.com/gpu": "1", "cpu": "4", "memory": "32Gi"},
            started=t("10:10:00"),
        ),
        # beta: 1 GPU on the EKS H100 all hour → 3600 s; pending 09:40–09:58 is not billed.
        pod(
            "batch-x-web-x-beta",
            "vc-shared",
            node_name="h100-eks",
            labels={SYNCED: "beta"},
            requests={"nvidia.com/gpu": "1"},
            created=t("09:40:00"),
            started=t("09:58:00"),
        ),
        # A host pod in vc-shared without the synced label: alpha's or beta's? Not attributed.
        pod("helper", "vc-shared", node_name="cpu-system", requests={"cpu": "1"}, started=t("09:00:00")),
        # gamma: one MIG 1g.10gb slice all hour → 3600 s × 1/7 GPU.
        pod(
            "finetune-x-ml-x-gamma",
            "vcluster-gamma",
            node_name="a100-mig",
            labels={SYNCED: "gamma"},
            requests={"nvidia.com/mig-1g.10gb": "1", "cpu": "500m", "memory": "4Gi"},
            started=t("09:00:00"),
        ),
        # gamma: on its dedicated node → not billed again (the node is billed whole).
        pod(
            "render-x-ml-x-gamma",
            "vcluster-gamma",
            node_name="l40s-dedicated",
            labels={SYNCED: "gamma"},
            requests={"nvidia.com/gpu": "2", "cpu": "16", "memory": "64Gi"},
            started=t("10:20:00"),
        ),
        # research (namespace tenant): 1 time-sliced T4 from 10:30:00 → 1800 s × 1/4 GPU.
        pod("embeddings", "research", node_name="t4-ts", requests={"nvidia.com/gpu": "1"}, started=t("10:30:00")),
        # vCluster control planes: alpha has two Ready replicas (count once), beta became Ready
        # at 10:30:15 (1785 s), gamma all hour.
        control_plane_pod("alpha", "vc-shared", ready_since=t("09:00:00"), index=0),
        control_plane_pod("alpha", "vc-shared", ready_since=t("10:40:00"), index=1),
        pod(
            "beta-7f9c6d5b8-x2x4z",
            "vc-shared",
            node_name="cpu-system",
            requests={"cpu": "200m"},
            labels={"app": "vcluster", "release": "beta"},
            started=t("10:29:50"),
            ready_since=t("10:30:15"),
        ),
        control_plane_pod("gamma", "vcluster-gamma", ready_since=t("08:00:00")),
        # -- storage and load balancers -------------------------------------------------------
        # gamma: 100 GiB premium-rwo bound since 10:45:00 → 900 s × 100 GiB.
        pvc(
            "data-x-ml-x-gamma",
            "vcluster-gamma",
            size="100Gi",
            storage_class="premium-rwo",
            created=t("10:45:00"),
            labels={SYNCED: "gamma"},
        ),
        # gamma: still Pending → nothing.
        pvc(
            "scratch-x-ml-x-gamma",
            "vcluster-gamma",
            size="1Ti",
            storage_class="premium-rwo",
            created=t("10:50:00"),
            phase="Pending",
            labels={SYNCED: "gamma"},
        ),
        # The vCluster's own etcd volume is control plane → not billed.
        pvc(
            "data-alpha-0",
            "vc-shared",
            size="5Gi",
            storage_class="standard",
            created=t("09:00:00"),
            labels={"app": "vcluster", "release": "alpha"},
        ),
        # beta: LoadBalancer created 10:00:00, address written 10:05:00 → 3300 s.
        lb_service(
            "gateway-x-web-x-beta",
            "vc-shared",
            created=t("10:00:00"),
            ingress_at=t("10:05:00"),
            labels={SYNCED: "beta"},
        ),
        # beta: LoadBalancer still without address → nothing.
        lb_service(
            "pending-lb-x-web-x-beta", "vc-shared", created=t("10:30:00"), ingress_at=None, labels={SYNCED: "beta"}
        ),
    ]


HOUR_START = parse_time(t("10:00:00"))
HOUR_END = parse_time(t("11:00:00"))

EXPECTED = {
    # alpha trainer: 1230 s × 2 GPU / 3600 = 0.683333333; 16 cores → 5.466666667; 128 GiB → 43.733333333
    (
        ALPHA,
        "gpu_hours",
        "trainer-x-ml-x-alpha",
        f"gpu_sku={H100}",
        "billing_mode=shared",
        "capacity_type=on-demand",
    ): Decimal("0.683333333"),
    (ALPHA, "cpu_core_hours", "trainer-x-ml-x-alpha", "billing_mode=shared", "capacity_type=on-demand"): Decimal(
        "5.466666667"
    ),
    (ALPHA, "memory_gib_hours", "trainer-x-ml-x-alpha", "billing_mode=shared", "capacity_type=on-demand"): Decimal(
        "43.733333333"
    ),
    # alpha control plane: pod 0 Ready all hour, pod 1 from 10:40 overlaps → 1 h, not 1.333
    (ALPHA, "control_plane_hours", "alpha"): Decimal("1"),
    # beta server on GKE spot: 3000 s × 1 GPU = 0.833333333; 4 cores → 3.333333333; 32 GiB → 26.666666667
    (BETA, "gpu_hours", "server-x-web-x-beta", f"gpu_sku={H100}", "billing_mode=shared", "capacity_type=spot"): Decimal(
        "0.833333333"
    ),
    (BETA, "cpu_core_hours", "server-x-web-x-beta", "billing_mode=shared", "capacity_type=spot"): Decimal(
        "3.333333333"
    ),
    (BETA, "memory_gib_hours", "server-x-web-x-beta", "billing_mode=shared", "capacity_type=spot"): Decimal(
        "26.666666667"
    ),
    # beta batch on EKS: 3600 s × 1 GPU = 1
    (
        BETA,
        "gpu_hours",
        "batch-x-web-x-beta",
        f"gpu_sku={H100}",
        "billing_mode=shared",
        "capacity_type=on-demand",
    ): Decimal("1"),
    # beta control plane: Ready 10:30:15 → 1785 s = 0.495833333
    (BETA, "control_plane_hours", "beta"): Decimal("0.495833333"),
    # beta LB: 3300 s = 0.916666667
    (BETA, "lb_hours", "gateway-x-web-x-beta"): Decimal("0.916666667"),
    # gamma MIG 1g.10gb: 3600 s × 1/7 = 0.142857142857… → 0.142857143; 0.5 core → 0.5; 4 GiB → 4
    (
        GAMMA,
        "gpu_hours",
        "finetune-x-ml-x-gamma",
        "gpu_sku=nvidia-a100-sxm-80gb",
        "gpu_profile=1g.10gb",
        "billing_mode=shared",
        "capacity_type=on-demand",
    ): Decimal("0.142857143"),
    (GAMMA, "cpu_core_hours", "finetune-x-ml-x-gamma", "billing_mode=shared", "capacity_type=on-demand"): Decimal(
        "0.5"
    ),
    (GAMMA, "memory_gib_hours", "finetune-x-ml-x-gamma", "billing_mode=shared", "capacity_type=on-demand"): Decimal(
        "4"
    ),
    # gamma dedicated L40S node from 10:17:23 → 2557 s: node 0.710277778; 4 GPU → 10228/3600 = 2.841111111;
    # 48 cores → 122736/3600 = 34.093333333; 384 GiB → 981888/3600 = 272.746666667
    (
        GAMMA,
        "node_hours",
        "l40s-dedicated",
        "billing_mode=dedicated",
        "capacity_type=on-demand",
        "node_sku=g6e.12xlarge",
    ): Decimal("0.710277778"),
    (
        GAMMA,
        "gpu_hours",
        "l40s-dedicated",
        "gpu_sku=nvidia-l40s-48gb",
        "billing_mode=dedicated",
        "capacity_type=on-demand",
    ): Decimal("2.841111111"),
    (GAMMA, "cpu_core_hours", "l40s-dedicated", "billing_mode=dedicated", "capacity_type=on-demand"): Decimal(
        "34.093333333"
    ),
    (GAMMA, "memory_gib_hours", "l40s-dedicated", "billing_mode=dedicated", "capacity_type=on-demand"): Decimal(
        "272.746666667"
    ),
    # gamma control plane all hour; PVC 900 s × 100 GiB = 25
    (GAMMA, "control_plane_hours", "gamma"): Decimal("1"),
    (GAMMA, "storage_gib_hours", "data-x-ml-x-gamma", "storage_class=premium-rwo"): Decimal("25"),
    # research: 1800 s × 1/4 T4 = 0.125
    (
        RESEARCH,
        "gpu_hours",
        "embeddings",
        "gpu_sku=nvidia-t4-16gb",
        "gpu_profile=shared-4",
        "billing_mode=shared",
        "capacity_type=on-demand",
    ): Decimal("0.125"),
}


def collect(sim: Any, ledger: Ledger, **kwargs: Any) -> Any:
    return collect_kubernetes(
        config=Config(), ledger=ledger, cluster="gpu-east", api_client=sim.api_client(), clock=lambda: sim.now, **kwargs
    )


def test_one_hour_of_a_gpu_cloud_exact_per_tenant_and_sku(ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    with serve(t("11:05:00"), gpu_cloud()) as sim:
        result = collect(sim, ledger, start=HOUR_START, end=HOUR_END)
    assert [(p.start, p.end) for p in result.periods] == [(HOUR_START, HOUR_END)]
    assert usage(ledger) == EXPECTED
    # Per tenant and SKU, as an invoice line would add them up:
    h100 = [r for r in ledger.records(item="gpu_hours") if r.labels["gpu_sku"] == H100]
    # beta: 0.833333333 (GKE, spot) + 1 (EKS) = 1.833333333; alpha 0.683333333 (GFD): one SKU for all three
    assert sum(r.usage for r in h100 if r.tenant == BETA) == Decimal("1.833333333")
    assert sum(r.usage for r in h100 if r.tenant == ALPHA) == Decimal("0.683333333")
    # No double counting: gamma's pod on its dedicated node has no record of its own.
    assert not list(r for r in ledger.records() if r.name == "render-x-ml-x-gamma")
    # The Platform project reaches gamma's records; the raw GPU product rides along as a label.
    gamma = list(ledger.records(tenant=GAMMA))
    assert {r.project for r in gamma} == {"research"}
    assert {r.namespace for r in gamma} == {"vcluster-gamma"}
    mig = next(r for r in gamma if r.name == "finetune-x-ml-x-gamma" and r.item == "gpu_hours")
    assert (mig.labels["gpu_product"], mig.labels["node"]) == ("NVIDIA-A100-SXM4-80GB", "a100-mig")
    # The ambiguous host pod is named in a warning, not silently given to a tenant.
    err = caplog.text  # the source logs its warnings (the command line prints them)
    assert "Pod vc-shared/helper" in err and "several vClusters" in " ".join(err.split())
    # Watermark and tenants.
    assert all(ledger.watermark(SOURCE, "gpu-east", item) == HOUR_END for item in ITEMS)
    assert {k.tenant.id for k in known_tenants(ledger, "gpu-east")} == {ALPHA, BETA, GAMMA, RESEARCH}


def test_collecting_again_is_idempotent_and_resumes_from_the_watermark(ledger: Ledger) -> None:
    with serve(t("11:05:00"), gpu_cloud()) as sim:
        collect(sim, ledger, start=HOUR_START, end=HOUR_END)
        again = collect(sim, ledger, start=HOUR_START, end=HOUR_END)
        assert (again.written.inserted, again.written.revised, again.written.unchanged) == (0, 0, len(EXPECTED))
        resumed = collect(sim, ledger)  # from the watermark 11:00; 11:00–12:00 is not closed at 11:05
        assert resumed.periods == []
    assert usage(ledger) == EXPECTED


def test_a_failing_list_is_retried_and_a_persistent_failure_writes_nothing(ledger: Ledger) -> None:
    with serve(t("11:05:00"), gpu_cloud()) as sim:
        sim.fail_next(verb="list", resource="pods", status=500, times=3)
        with pytest.raises(SourceError, match="LIST pods failed: HTTP 500"):
            collect(sim, ledger, start=HOUR_START, end=HOUR_END)
        assert list(ledger.records()) == []
        assert ledger.watermark(SOURCE, "gpu-east", "gpu_hours") is None
        # A transient 503 is retried within the run.
        sim.fail_next(verb="list", resource="nodes", status=503, times=1)
        collect(sim, ledger, start=HOUR_START, end=HOUR_END)
    assert usage(ledger) == EXPECTED


def test_a_failed_tenant_list_still_meters_by_labels_and_offboards_nobody(ledger: Ledger) -> None:
    with serve(t("11:05:00"), gpu_cloud()) as sim:
        collect(sim, ledger, start=HOUR_START, end=HOUR_END)
        # Both attempts to list StatefulSets and Deployments fail: discovery is incomplete.
        sim.fail_next(verb="list", resource="statefulsets", status=500, times=2)
        sim.fail_next(verb="list", resource="deployments", status=500, times=2)
        collect(sim, ledger, start=HOUR_START, end=HOUR_END)
    tenants = {k.tenant.id: k for k in known_tenants(ledger, "gpu-east")}
    assert all(k.missing_since is None and k.offboarded_at is None for k in tenants.values())
    # Known tenants keep resolving (gamma's dedicated node by name), so nothing changed.
    assert usage(ledger) == EXPECTED
    assert all(r.revision == 0 for r in ledger.records())


def test_garbage_objects_are_named_and_skipped(ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    objects = [
        namespace("research", {"kubetally.io/tenant": "true"}),
        node("n1", labels={"nvidia.com/gpu.product": "NVIDIA-L4"}, gpus={"nvidia.com/gpu": "1"}),
        # Requests that are not quantities: named in a warning; the valid GPU request still counts.
        pod("odd", "research", node_name="n1", requests={"cpu": "lots", "nvidia.com/gpu": "1"}, started=t("10:00:00")),
        # Running, but the kubelet status has no container start: billed from startTime, with a warning.
        {
            **pod("trimmed", "research", node_name="n1", requests={"memory": "1Gi"}),
            "status": {"phase": "Running", "startTime": t("10:30:00")},
        },
    ]
    with serve(t("11:05:00"), objects) as sim:
        collect(sim, ledger, start=HOUR_START, end=HOUR_END)
    assert usage(ledger) == {
        # 3600 s × 1 L4 = 1
        (
            RESEARCH,
            "gpu_hours",
            "odd",
            "gpu_sku=nvidia-l4-24gb",
            "billing_mode=shared",
            "capacity_type=on-demand",
        ): Decimal("1"),
        # 1800 s × 1 GiB = 0.5
        (RESEARCH, "memory_gib_hours", "trimmed", "billing_mode=shared", "capacity_type=on-demand"): Decimal("0.5"),
    }
    err = " ".join(caplog.text.split())
    assert "Pod research/odd: container 'main' request cpu is not a quantity ('lots')" in err
    assert "Pod research/trimmed: phase Running without container start times; billed from status.startTime" in err
