"""The simulator keeps ``metadata.managedFields`` as the apiserver does, so a state-only reader can
date status changes (a PVC's bind, a resize) from a scenario that does not spell them out."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kubetally.sim import Scenario, SimServer


def claim(phase: str, size: str, **meta: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if phase == "Bound":
        status["capacity"] = {"storage": size}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "ns", **meta},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        "status": status,
    }


def entries(sim: SimServer) -> list[tuple[str, str, list[str]]]:
    pvc = client.CoreV1Api(sim.api_client()).read_namespaced_persistent_volume_claim("data", "ns")
    return [
        (e.manager, e.time.strftime("%H:%M:%S"), sorted((e.fields_v1 or {}).get("f:status", {})))
        for e in pvc.metadata.managed_fields or []
    ]


def test_status_writes_are_recorded_with_their_writer_and_time() -> None:
    resized = claim("Bound", "200Gi")
    # The resize is written by another manager (the CSI resizer): given explicitly, served as given.
    resized["metadata"]["managedFields"] = [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-02T10:15:00Z",
            "fieldsType": "FieldsV1",
            "subresource": "status",
            "fieldsV1": {"f:status": {"f:phase": {}}},
        },
        {
            "manager": "csi-resizer",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-02T10:30:00Z",
            "fieldsType": "FieldsV1",
            "subresource": "status",
            "fieldsV1": {"f:status": {"f:capacity": {}}},
        },
    ]
    relabelled = {**resized, "metadata": {"name": "data", "namespace": "ns", "labels": {"team": "a"}}}
    scenario = Scenario.from_dict(
        {
            "now": "2026-11-02T09:00:00Z",
            "objects": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}],
            "events": [
                {"at": "2026-11-02T09:30:00Z", "type": "ADDED", "object": claim("Pending", "100Gi")},
                {"at": "2026-11-02T10:15:00Z", "type": "MODIFIED", "object": claim("Bound", "100Gi")},
                {"at": "2026-11-02T10:30:00Z", "type": "MODIFIED", "object": resized},
                {"at": "2026-11-02T10:40:00Z", "type": "MODIFIED", "object": relabelled},
            ],
        }
    )
    with SimServer(scenario) as sim:
        sim.advance("2026-11-02T09:30:00Z")
        # Created Pending: the binder owns the phase from the creation.
        assert entries(sim) == [("kube-controller-manager", "09:30:00", ["f:phase"])]
        sim.advance("2026-11-02T10:15:00Z")
        # Bound: phase and capacity written at 10:15 (the entry's time moves with its last write).
        assert entries(sim) == [("kube-controller-manager", "10:15:00", ["f:capacity", "f:phase"])]
        sim.advance("2026-11-02T10:30:00Z")
        assert entries(sim) == [
            ("kube-controller-manager", "10:15:00", ["f:phase"]),
            ("csi-resizer", "10:30:00", ["f:capacity"]),
        ]
        sim.advance("2026-11-02T10:40:00Z")
        # A write that does not send managedFields keeps them (the apiserver maintains them).
        assert entries(sim) == [
            ("kube-controller-manager", "10:15:00", ["f:phase"]),
            ("csi-resizer", "10:30:00", ["f:capacity"]),
        ]
