"""Manifests for the simulated cluster, shaped like real objects (labels from
../shared/reference/realdata.md), so each test reads as the cluster an operator would see."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from kubetally.ledger.store import Ledger
from kubetally.sim import Scenario, SimServer

DAY = "2026-11-02"


def t(hhmmss: str, day: str = DAY) -> str:
    """``t("10:17:23")`` → ``2026-11-02T10:17:23Z``."""
    return f"{day}T{hhmmss}Z"


def namespace(name: str, labels: Mapping[str, str] | None = None, created: str = "2026-10-01T00:00:00Z") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
        },
        "status": {"phase": "Active"},
    }


def node(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    cpu: str = "96",
    memory: str = "1056768Mi",
    gpus: Mapping[str, str] | None = None,
    created: str = "2026-10-01T00:00:00Z",
) -> dict:
    capacity = {"cpu": cpu, "memory": memory, "pods": "110", **(gpus or {})}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})},
        },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": created}
            ],
        },
    }


def pod(
    name: str,
    ns: str,
    *,
    node_name: str | None,
    requests: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    started: str | None = None,
    finished: str | None = None,
    phase: str | None = None,
    created: str | None = None,
    ready_since: str | None = None,
    unready_since: str | None = None,
    init_requests: Mapping[str, str] | None = None,
) -> dict:
    """A pod with one container (and an optional init container). ``started``/``finished`` fill
    the container status the kubelet would write."""
    container: dict[str, Any] = {"name": "main", "image": "registry.example/train:1"}
    if requests:
        container["resources"] = {
            "requests": dict(requests),
            "limits": {k: v for k, v in requests.items() if "gpu" in k or "mig" in k},
        }
    spec: dict[str, Any] = {"containers": [container]}
    if init_requests:
        spec["initContainers"] = [
            {"name": "init", "image": "registry.example/init:1", "resources": {"requests": dict(init_requests)}}
        ]
    if node_name:
        spec["nodeName"] = node_name
    status: dict[str, Any] = {"phase": phase or ("Succeeded" if finished else "Running" if started else "Pending")}
    if started:
        state: dict[str, Any] = (
            {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": finished}}
            if finished
            else {"running": {"startedAt": started}}
        )
        status["containerStatuses"] = [
            {
                "name": "main",
                "image": container["image"],
                "imageID": "",
                "ready": not finished,
                "restartCount": 0,
                "state": state,
            }
        ]
        status["startTime"] = started
    conditions = []
    if ready_since:
        conditions.append({"type": "Ready", "status": "True", "lastTransitionTime": ready_since})
    if unready_since:
        conditions.append({"type": "Ready", "status": "False", "lastTransitionTime": unready_since})
    if conditions:
        status["conditions"] = conditions
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": dict(labels or {})}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def vcluster(name: str, ns: str, *, kind: str = "StatefulSet", ready: int = 1) -> dict:
    """A vCluster control plane workload as its Helm chart creates it."""
    labels = {"app": "vcluster", "chart": "vcluster-0.35.3", "release": name, "heritage": "Helm"}
    selector = {"matchLabels": {"app": "vcluster", "release": name}}
    template = {
        "metadata": {"labels": {"app": "vcluster", "release": name}},
        "spec": {"containers": [{"name": "syncer", "image": "ghcr.io/loft-sh/vcluster-pro:0.35.3"}]},
    }
    spec: dict[str, Any] = {"replicas": 1, "selector": selector, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = f"{name}-headless"
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns, "labels": labels, "creationTimestamp": "2026-10-01T00:00:00Z"},
        "spec": spec,
        "status": {"replicas": 1, "readyReplicas": ready},
    }


def control_plane_pod(
    vcluster_name: str,
    ns: str,
    *,
    node_name: str = "cpu-system-01",
    ready_since: str,
    index: int = 0,
    unready_since: str | None = None,
) -> dict:
    obj = pod(
        f"{vcluster_name}-{index}",
        ns,
        node_name=node_name,
        requests={"cpu": "200m", "memory": "256Mi"},
        labels={"app": "vcluster", "release": vcluster_name},
        started=ready_since,
        ready_since=None if unready_since else ready_since,
        unready_since=unready_since,
    )
    return obj


def pvc(
    name: str,
    ns: str,
    *,
    size: str,
    storage_class: str,
    created: str,
    phase: str = "Bound",
    labels: Mapping[str, str] | None = None,
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "labels": dict(labels or {})},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": size}},
            "volumeName": f"pvc-{name}",
        },
        "status": {"phase": phase, **({"capacity": {"storage": size}} if phase == "Bound" else {})},
    }


def lb_service(
    name: str, ns: str, *, created: str, ingress_at: str | None, labels: Mapping[str, str] | None = None
) -> dict:
    """A LoadBalancer Service; ``ingress_at`` is when the cloud controller wrote the address
    (its managedFields status entry), None while it has no address."""
    meta: dict[str, Any] = {"name": name, "namespace": ns, "creationTimestamp": created, "labels": dict(labels or {})}
    status: dict[str, Any] = {"loadBalancer": {}}
    if ingress_at:
        status["loadBalancer"] = {"ingress": [{"ip": "203.0.113.10"}]}
        meta["managedFields"] = [
            {
                "manager": "service-controller",
                "operation": "Update",
                "apiVersion": "v1",
                "time": ingress_at,
                "fieldsType": "FieldsV1",
                "subresource": "status",
                "fieldsV1": {"f:status": {"f:loadBalancer": {"f:ingress": {}}}},
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "TCP"}], "selector": {"app": "api"}},
        "status": status,
    }


def vci(
    name: str, project: str, *, host_ns: str, vcluster_name: str, cluster: str = "loft-cluster", display: str = ""
) -> dict:
    return {
        "apiVersion": "management.loft.sh/v1",
        "kind": "VirtualClusterInstance",
        "metadata": {"name": name, "namespace": f"p-{project}", "creationTimestamp": "2026-10-01T00:00:00Z"},
        "spec": {
            "displayName": display or name,
            "owner": {"team": project},
            "clusterRef": {"cluster": cluster, "namespace": host_ns, "virtualCluster": vcluster_name},
        },
        "status": {"phase": "Ready"},
    }


def scenario(now: str, objects: list[dict], events: list[dict] | None = None) -> Scenario:
    return Scenario.from_dict({"now": now, "objects": objects, "events": events or []})


@contextmanager
def serve(now: str, objects: list[dict], events: list[dict] | None = None) -> Iterator[SimServer]:
    with SimServer(scenario(now, objects, events)) as sim:
        yield sim


def usage(ledger: Ledger, **filters: Any) -> dict[tuple[str, ...], Decimal]:
    """Current records summed by (tenant, item, name, sorted dimension values) for assertions."""
    out: dict[tuple[str, ...], Decimal] = {}
    for record in ledger.records(**filters):
        keys = ("gpu_sku", "gpu_profile", "billing_mode", "capacity_type", "storage_class")
        if record.item == "node_hours":
            keys = (*keys[:4], "node_sku")  # node_sku splits node hours; on pods it is only a label
        dims = tuple(f"{k}={record.labels[k]}" for k in keys if k in record.labels)
        key = (record.tenant, record.item, record.name, *dims)
        out[key] = out.get(key, Decimal(0)) + record.usage
    return out


def total(ledger: Ledger, **filters: Any) -> Decimal:
    return sum((r.usage for r in ledger.records(**filters)), Decimal(0))
