"""A generated vCluster GPU cloud of any size, for scale benchmarks and memory tests.

Hand-written scenarios stay small so that every number in a test can be worked out by hand; the
failures that matter at provider scale (memory growing with the window, writes slowing as the
ledger grows) only show with tens of thousands of objects. This builds such a cluster as a plain
scenario (``now`` + objects), deterministically from a seed, shaped like the hand-written ones:

* tenants are vCluster StatefulSets (``app=vcluster``) in ``vc-<tenant>`` namespaces, their pods
  synced to the host as ``<name>-x-<ns>-x-<tenant>`` with the ``vcluster.loft.sh/managed-by`` label;
* shared H100 nodes (GFD labels), a MIG node pool (A100, mixed strategy) and a few nodes
  dedicated to tenants (their pods are covered by the node's hours);
* churn: besides pods running since before the window, some pods start and finish inside the
  window at arbitrary seconds, and some nodes join mid-window; one PVC and one LoadBalancer per
  tenant.

The object count does not depend on ``hours``: the window only spreads the churn's start and finish
times, so a 1-hour and a 48-hour collect of the same cluster see the same objects.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from kubetally.periods import format_time

SYNCED = "vcluster.loft.sh/managed-by"
_MIG = {"nvidia.com/mig-1g.10gb": "16", "nvidia.com/mig-2g.20gb": "8", "nvidia.com/mig-3g.40gb": "8"}
_MIG_PROFILES = ("nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb", "nvidia.com/mig-3g.40gb")


def _node(name: str, created: str, labels: dict[str, str], gpus: dict[str, str]) -> dict[str, Any]:
    capacity = {"cpu": "96", "memory": "1056768Mi", "pods": "110", **gpus}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **labels},
        },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": created}
            ],
        },
    }


def _pod(
    name: str, ns: str, tenant: str, node: str, requests: dict[str, str], started: str, finished: str | None
) -> dict[str, Any]:
    limits = {k: v for k, v in requests.items() if "gpu" in k or "mig" in k}
    state: dict[str, Any] = (
        {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": finished}}
        if finished
        else {"running": {"startedAt": started}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": started,
            "labels": {SYNCED: tenant, "app": "train"},
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/train:1",
                    "resources": {"requests": requests, "limits": limits},
                }
            ],
        },
        "status": {
            "phase": "Succeeded" if finished else "Running",
            "startTime": started,
            "containerStatuses": [
                {
                    "name": "main",
                    "image": "registry.example/train:1",
                    "imageID": "",
                    "ready": not finished,
                    "restartCount": 0,
                    "state": state,
                }
            ],
        },
    }


def generate_cluster(
    pods: int,
    *,
    now: datetime,
    hours: int = 48,
    nodes: int | None = None,
    tenants: int | None = None,
    churn: float = 0.2,
    seed: int = 10,
) -> dict[str, Any]:
    """The scenario dict (``now``, ``objects``) of a GPU cloud with ``pods`` pods (see module doc).

    Defaults follow the issue's measurements: 10 pods per node and 50 per tenant up to 10,000
    pods (1,000 nodes, 200 tenants), 20 per node and 100 per tenant above (100,000 pods: 5,000
    nodes, 1,000 tenants)."""
    rng = random.Random(seed)
    nodes = nodes or max(4, pods // 10 if pods <= 10_000 else pods // 20)
    tenants = tenants or max(2, pods // 50 if pods <= 10_000 else pods // 100)
    window = timedelta(hours=hours)
    old = format_time(now - window - timedelta(days=30))
    objects: list[dict[str, Any]] = []
    names = [f"t{i:04d}" for i in range(tenants)]
    for tenant in names:
        ns = f"vc-{tenant}"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "creationTimestamp": old, "labels": {"kubernetes.io/metadata.name": ns}},
                "status": {"phase": "Active"},
            }
        )
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {
                    "name": tenant,
                    "namespace": ns,
                    "creationTimestamp": old,
                    "labels": {"app": "vcluster", "release": tenant, "chart": "vcluster-0.35.3"},
                },
                "spec": {
                    "replicas": 1,
                    "serviceName": f"{tenant}-headless",
                    "selector": {"matchLabels": {"app": "vcluster", "release": tenant}},
                    "template": {
                        "metadata": {"labels": {"app": "vcluster", "release": tenant}},
                        "spec": {"containers": [{"name": "syncer", "image": "ghcr.io/loft-sh/vcluster-pro:0.35.3"}]},
                    },
                },
                "status": {"replicas": 1, "readyReplicas": 1},
            }
        )
        size = f"{rng.choice((50, 100, 500))}Gi"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"data-x-{ns}-x-{tenant}", "namespace": ns, "creationTimestamp": old},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "premium-rwo",
                    "resources": {"requests": {"storage": size}},
                    "volumeName": f"pvc-{tenant}",
                },
                "status": {"phase": "Bound", "capacity": {"storage": size}},
            }
        )
    # Node pools: 1 in 10 MIG, 1 in 50 dedicated to a tenant, the rest shared H100.
    shared: list[str] = []
    mig: list[str] = []
    for i in range(nodes):
        # A few nodes join inside the window (churn), at an arbitrary second.
        created = old if i % 25 else format_time(now - timedelta(seconds=rng.randrange(1, int(window.total_seconds()))))
        if i % 50 == 7:
            tenant = names[i % tenants]
            labels = {SYNCED: tenant, "nvidia.com/gpu.product": "NVIDIA-L40S"}
            objects.append(_node(f"l40s-{i:05d}", created, labels, {"nvidia.com/gpu": "4"}))
        elif i % 10 == 3:
            labels = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/mig.strategy": "mixed"}
            objects.append(_node(f"a100-mig-{i:05d}", created, labels, dict(_MIG)))
            mig.append(f"a100-mig-{i:05d}")
        else:
            labels = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}
            objects.append(_node(f"h100-{i:05d}", created, labels, {"nvidia.com/gpu": "8"}))
            shared.append(f"h100-{i:05d}")
    span = int(window.total_seconds())
    for i in range(pods):
        tenant = names[i % tenants]
        ns = f"vc-{tenant}"
        if mig and i % 10 == 3:
            node = mig[i % len(mig)]
            requests = {rng.choice(_MIG_PROFILES): "1", "cpu": "4", "memory": "32Gi"}
        else:
            node = shared[i % len(shared)]
            requests = {"nvidia.com/gpu": str(rng.choice((1, 1, 2, 4))), "cpu": "8", "memory": "64Gi"}
        if rng.random() < churn:
            begin = rng.randrange(60, span)
            started = now - timedelta(seconds=begin)
            finished = started + timedelta(seconds=rng.randrange(30, max(31, min(begin - 30, 6 * 3600))))
            objects.append(
                _pod(
                    f"job-{i:06d}-x-{ns}-x-{tenant}",
                    ns,
                    tenant,
                    node,
                    requests,
                    format_time(started),
                    format_time(finished),
                )
            )
        else:
            started = now - timedelta(seconds=rng.randrange(60, span + 24 * 3600))
            objects.append(
                _pod(f"train-{i:06d}-x-{ns}-x-{tenant}", ns, tenant, node, requests, format_time(started), None)
            )
    return {"name": f"generated-{pods}", "now": format_time(now), "objects": objects}
