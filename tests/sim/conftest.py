"""A small, fully known cluster for exact assertions, served by a real SimServer per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubetally.sim import Scenario, SimServer

NOW = "2026-11-01T10:00:00Z"


def node(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "creationTimestamp": "2026-10-01T00:00:00Z", "labels": labels},
        "status": {"capacity": {"cpu": "8", "nvidia.com/gpu": "8"}},
    }


def pod(namespace: str, name: str, node_name: str, phase: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": phase},
    }


def scenario_dict() -> dict[str, Any]:
    """RVs: objects 1-8, the history event 9; events at 10:15 → 10, 10:30 → 11 and 12, 10:45 → 13."""
    return {
        "now": NOW,
        "objects": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
            node(
                "gpu-h100-01",
                pool="gpu",
                **{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "vcluster.loft.sh/managed-by": "team-a"},
            ),
            node("gpu-a100-01", pool="gpu", **{"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}),
            node("cpu-01", pool="cpu"),
            pod(
                "team-a",
                "trainer-0",
                "gpu-h100-01",
                "Running",
                app="trainer",
                **{"vcluster.loft.sh/managed-by": "team-a"},
            ),
            pod(
                "team-a",
                "notebook",
                "gpu-a100-01",
                "Running",
                app="notebook",
                **{"vcluster.loft.sh/managed-by": "team-a"},
            ),
            pod("team-b", "eval", "gpu-a100-01", "Succeeded", app="eval"),
            {
                "apiVersion": "management.loft.sh/v1",
                "kind": "VirtualClusterInstance",
                "metadata": {"name": "team-b", "namespace": "p-research"},
                "spec": {
                    "clusterRef": {
                        "cluster": "loft-cluster",
                        "namespace": "vcluster-team-b",
                        "virtualCluster": "team-b",
                    }
                },
                "status": {"phase": "Ready"},
            },
        ],
        "events": [
            {"at": "2026-11-01T09:30:00Z", "type": "MODIFIED", "object": node("cpu-01", pool="system")},
            {
                "at": "2026-11-01T10:15:00Z",
                "type": "ADDED",
                "object": node("gpu-h100-02", pool="gpu", **{"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
            },
            {
                "at": "2026-11-01T10:30:00Z",
                "type": "MODIFIED",
                "object": pod(
                    "team-a",
                    "notebook",
                    "gpu-a100-01",
                    "Succeeded",
                    app="notebook",
                    **{"vcluster.loft.sh/managed-by": "team-a"},
                ),
            },
            {
                "at": "2026-11-01T10:30:00Z",
                "type": "ADDED",
                "object": pod("team-b", "infer", "gpu-h100-02", "Running", app="infer"),
            },
            {
                "at": "2026-11-01T10:45:00Z",
                "type": "DELETED",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer-0", "namespace": "team-a"}},
            },
        ],
    }


@pytest.fixture
def scenario() -> Scenario:
    return Scenario.from_dict(scenario_dict(), source="test-scenario")


@pytest.fixture
def sim(scenario: Scenario) -> Iterator[SimServer]:
    with SimServer(scenario) as server:
        yield server


@pytest.fixture
def core(sim: SimServer) -> client.CoreV1Api:
    return client.CoreV1Api(sim.api_client())


@pytest.fixture(scope="module")
def read_only_core() -> Iterator[client.CoreV1Api]:
    """One server per module for tests that only read (never advance, apply or expire)."""
    with SimServer(Scenario.from_dict(scenario_dict(), source="test-scenario")) as server:
        yield client.CoreV1Api(server.api_client())
