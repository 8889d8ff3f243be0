"""Scenario loading: the packaged GPU cloud, and errors that name the file and the object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetally.sim import Scenario, ScenarioError, SimServer
from kubetally.sim.scenario import packaged_scenarios, resolve_scenario_path

from .conftest import node, pod, scenario_dict


def problems_of(data: Any) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        Scenario.from_dict(data, source="bad.yaml")
    return caught.value.problems


def test_packaged_gpu_cloud_scenario_loads() -> None:
    path = resolve_scenario_path("gpu-cloud")
    assert path == packaged_scenarios()["gpu-cloud"]
    scenario = Scenario.load(path)
    assert scenario.now.isoformat() == "2026-11-02T10:00:00+00:00"
    assert (len(scenario.objects), len(scenario.events)) == (31, 6)
    assert [(e.at.strftime("%H:%M:%S"), e.type, e.object["metadata"]["name"]) for e in scenario.events] == [
        ("10:17:23", "ADDED", "gpu-h100-02"),
        ("10:20:05", "ADDED", "trainer-0-x-ml-x-team-b"),
        ("10:20:41", "MODIFIED", "trainer-0-x-ml-x-team-b"),
        ("10:40:00", "MODIFIED", "batch-eval-x-ml-x-team-b"),
        ("10:45:00", "MODIFIED", "notebook-7d9f8c6b5-kx2lp-x-default-x-team-a"),
        ("10:45:12", "DELETED", "notebook-7d9f8c6b5-kx2lp-x-default-x-team-a"),
    ]
    vci = scenario.registry().by_kind("management.loft.sh/v1", "VirtualClusterInstance")
    assert vci is not None
    assert (vci.plural, vci.namespaced) == ("virtualclusterinstances", True)


def test_gpu_cloud_over_the_client(tmp_path: Path) -> None:
    with SimServer(Scenario.load(resolve_scenario_path("gpu-cloud"))) as sim:
        core = client.CoreV1Api(sim.api_client())
        apps = client.AppsV1Api(sim.api_client())
        vclusters = apps.list_stateful_set_for_all_namespaces(label_selector="app=vcluster")
        assert [(s.metadata.namespace, s.metadata.name) for s in vclusters.items] == [
            ("vcluster-team-a", "team-a"),
            ("vcluster-team-b", "team-b"),
        ]
        dedicated = core.list_node(label_selector="vcluster.loft.sh/managed-by")
        assert [(n.metadata.name, n.metadata.labels["vcluster.loft.sh/managed-by"]) for n in dedicated.items] == [
            ("gpu-h100-01", "team-a")
        ]
        h100 = core.list_node(label_selector="nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3").items
        assert [n.status.capacity["nvidia.com/gpu"] for n in h100] == ["8"]
        mig = core.read_node("gpu-a100-mig-01")
        assert mig.metadata.labels["nvidia.com/mig.strategy"] == "mixed"
        assert mig.status.allocatable["nvidia.com/mig-3g.40gb"] == "8"
        assert core.read_node("gpu-t4-ts-01").status.capacity["nvidia.com/gpu"] == "16"
        spot = core.list_node(label_selector="eks.amazonaws.com/capacityType=SPOT").items
        assert [n.metadata.name for n in spot] == ["ip-10-0-87-217.us-west-2.compute.internal"]
        gke = core.list_node(label_selector="cloud.google.com/gke-accelerator=nvidia-l4").items
        assert [n.status.capacity["nvidia.com/gpu"] for n in gke] == ["1"]
        lbs = [s for s in core.list_service_for_all_namespaces().items if s.spec.type == "LoadBalancer"]
        assert [(s.metadata.name, s.status.load_balancer.ingress[0].ip) for s in lbs] == [
            ("llm-gateway-x-serving-x-team-b", "203.0.113.10")
        ]
        synced = core.list_pod_for_all_namespaces(label_selector="vcluster.loft.sh/managed-by=team-b").items
        assert len(synced) == 4
        assert len(core.list_persistent_volume_claim_for_all_namespaces().items) == 3
        sim.advance("2026-11-02T11:00:00Z")
        assert [n.metadata.name for n in core.list_node(label_selector="vcluster.loft.sh/managed-by=team-b").items] == [
            "gpu-h100-02"
        ]
        assert core.read_namespaced_pod("batch-eval-x-ml-x-team-b", "vcluster-team-b").status.phase == "Succeeded"
        assert core.list_namespaced_pod("vcluster-team-a", label_selector="app=notebook").items == []
        trainer = core.read_namespaced_pod("trainer-0-x-ml-x-team-b", "vcluster-team-b")
        assert (trainer.status.phase, trainer.metadata.resource_version) == ("Running", "34")


def test_timestamps_stay_strings_and_history_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "now: 2026-11-01T10:00:00Z\n"
        "objects:\n"
        "- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a, creationTimestamp: 2026-10-01T00:00:00Z}\n"
        "events:\n"
        "- at: 2026-11-01T09:00:00Z\n  type: MODIFIED\n"
        "  object: {apiVersion: v1, kind: Namespace, metadata: {name: a, labels: {x: 'y'}}}\n"
        "- at: 2026-11-01T11:00:00Z\n  type: DELETED\n"
        "  object: {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n"
    )
    scenario = Scenario.load(path)
    assert scenario.objects[0]["metadata"]["creationTimestamp"] == "2026-10-01T00:00:00Z"
    with SimServer(scenario) as sim:
        ns = client.CoreV1Api(sim.api_client()).read_namespace("a")
        assert (ns.metadata.labels, ns.metadata.resource_version) == ({"x": "y"}, "2")
        assert ns.metadata.creation_timestamp.isoformat() == "2026-10-01T00:00:00+00:00"
        assert [e.at.isoformat() for e in sim.simulation.pending] == ["2026-11-01T11:00:00+00:00"]


def test_object_problems_name_the_file_index_and_object() -> None:
    data = scenario_dict()
    data["objects"][1]["metadata"]["labels"]["nvidia.com/gpu.count"] = 8
    data["objects"][4]["spec"].pop("containers")
    data["objects"][5]["metadata"].pop("name")
    assert problems_of(data) == [
        "bad.yaml: objects[1] (Node gpu-h100-01): metadata.labels['nvidia.com/gpu.count'] must be a string, "
        "not int 8 (quote it in YAML)",
        "bad.yaml: objects[4] (Pod team-a/trainer-0): the kubernetes client cannot read it as V1Pod: "
        "V1PodSpec.containers: Input should be a valid list",
        "bad.yaml: objects[5] (Pod team-a/?): metadata.name is required (a non-empty string)",
    ]


def test_quantities_must_be_strings_as_the_apiserver_serves_them() -> None:
    data = {"now": "2026-11-01T10:00:00Z", "objects": [node("n1")]}
    data["objects"][0]["status"]["capacity"]["cpu"] = 8
    assert problems_of(data) == [
        "bad.yaml: objects[0] (Node n1): the kubernetes client cannot read it as V1Node: "
        "V1NodeStatus.capacity.cpu: Input should be a valid string"
    ]


def test_scope_duplicates_and_event_consistency_are_checked() -> None:
    data = scenario_dict()
    data["objects"].append(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"}, "spec": {"containers": [{"name": "c"}]}}
    )
    data["objects"].append(node("cpu-01"))
    data["objects"].append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n9", "namespace": "x"}})
    data["events"].append(
        {"at": "2026-11-01T11:00:00Z", "type": "MODIFIED", "object": pod("team-a", "ghost", "cpu-01", "Running")}
    )
    data["events"].append({"at": "2026-11-01T11:00:00Z", "type": "ADDED", "object": node("gpu-h100-02")})
    data["events"].append(
        {
            "at": "2026-11-01T11:00:00Z",
            "type": "DELETED",
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer-0", "namespace": "team-a"}},
        }
    )
    assert problems_of(data) == [
        "bad.yaml: objects[8] (Pod orphan): Pod is namespaced; metadata.namespace is required",
        "bad.yaml: objects[9] (Node cpu-01): duplicate object (same apiVersion, kind, namespace and name)",
        "bad.yaml: objects[10] (Node x/n9): Node is cluster-scoped; remove metadata.namespace",
        "bad.yaml: events[5] (MODIFIED Pod team-a/ghost): no such object exists at 2026-11-01T11:00:00Z",
        "bad.yaml: events[6] (ADDED Node gpu-h100-02): already exists at 2026-11-01T11:00:00Z; use MODIFIED",
        "bad.yaml: events[7] (DELETED Pod team-a/trainer-0): no such object exists at 2026-11-01T11:00:00Z",
    ]


def test_event_shape_problems() -> None:
    data = {
        "now": "2026-11-01T10:00:00Z",
        "nodes": [],
        "objects": [node("n1")],
        "events": [
            {"at": "2026-11-01T10:30:00Z", "type": "UPDATED", "object": node("n1")},
            {"at": "yesterday", "type": "DELETED", "object": node("n1")},
            {"at": "2026-11-01T10:40:00Z", "type": "DELETED", "object": node("n1"), "extra": 1},
            {"at": "2026-11-01T10:20:00Z", "type": "MODIFIED", "object": node("n1")},
            {"at": "2026-11-01T10:50:00Z", "type": "ADDED"},
        ],
    }
    assert problems_of(data) == [
        "bad.yaml: unknown top-level key(s) nodes (allowed: now, objects, events, name, description)",
        "bad.yaml: events[0] (Node n1): type must be one of ADDED, MODIFIED, DELETED, not 'UPDATED'",
        "bad.yaml: events[1] (Node n1): at: not a time: 'yesterday' (expected RFC 3339, e.g. 2026-11-01T10:00:00Z)",
        "bad.yaml: events[2] (Node n1): unknown key(s) extra (allowed: at, type, object)",
        "bad.yaml: events[3] (Node n1): at 2026-11-01T10:20:00Z is before events[2] at 2026-11-01T10:40:00Z; "
        "list events in time order",
        "bad.yaml: events[4] (object): object is required",
    ]


def test_now_is_required_and_a_scenario_is_a_mapping() -> None:
    assert problems_of({"objects": []}) == ["bad.yaml: now is required (RFC 3339, e.g. 2026-11-01T10:00:00Z)"]
    assert problems_of([1, 2]) == ["bad.yaml: a scenario must be a mapping with now, objects and events"]


def test_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("now: 2026-11-01T10:00:00Z\nobjects:\n  - kind: Node\n    metadata: {name: [\n")
    with pytest.raises(ScenarioError) as caught:
        Scenario.load(broken)
    assert str(caught.value).startswith(f"{broken}: line 5 column 1: not valid YAML: ")
    with pytest.raises(ScenarioError) as missing:
        Scenario.load(tmp_path / "nope.yaml")
    assert str(missing.value) == f"{tmp_path / 'nope.yaml'}: cannot read scenario: No such file or directory"
    with pytest.raises(ScenarioError) as unknown:
        resolve_scenario_path("no-such-scenario")
    assert str(unknown.value) == (
        "no-such-scenario: no such scenario file, and no packaged scenario of that name (packaged: gpu-cloud)"
    )


def test_apply_rejects_bad_events_with_the_object_named(sim: SimServer) -> None:
    with pytest.raises(ScenarioError) as caught:
        sim.apply("MODIFIED", pod("team-a", "ghost", "cpu-01", "Running"))
    assert str(caught.value) == "Pod team-a/ghost: MODIFIED of an object that does not exist"
    with pytest.raises(ScenarioError) as unknown:
        sim.apply("ADDED", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert str(unknown.value) == (
        "Widget w: unknown resource example.com/v1 Widget; a new custom resource kind must appear in the scenario"
    )
    with pytest.raises(ScenarioError) as bad_type:
        sim.apply("PATCHED", node("n"))
    assert str(bad_type.value) == "event type must be one of ADDED, MODIFIED, DELETED, not 'PATCHED'"
    assert sim.resource_version == 9  # nothing was applied


def test_custom_resource_definition_names_the_resource() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gpupolicies.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"kind": "GPUPolicy", "plural": "gpupolicies", "shortNames": ["gp"]},
            "versions": [
                {"name": "v1beta1", "served": True, "storage": False},
                {"name": "v1", "served": True, "storage": True},
            ],
        },
    }
    scenario = Scenario.from_dict(
        {
            "now": "2026-11-01T10:00:00Z",
            "objects": [crd, {"apiVersion": "example.com/v1", "kind": "GPUPolicy", "metadata": {"name": "default"}}],
        }
    )
    with SimServer(scenario) as sim:
        custom = client.CustomObjectsApi(sim.api_client())
        listed = custom.list_cluster_custom_object("example.com", "v1", "gpupolicies")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["default"]
        assert custom.list_cluster_custom_object("example.com", "v1beta1", "gpupolicies")["items"] == []
        group = client.ApisApi(sim.api_client()).get_api_versions()
        example = next(g for g in group.groups if g.name == "example.com")
        assert [v.version for v in example.versions] == ["v1", "v1beta1"]
        assert example.preferred_version.version == "v1"
