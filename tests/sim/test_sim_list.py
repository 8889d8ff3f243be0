"""List, get, discovery and injected failures, through the official kubernetes client over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from kubetally.sim import SimServer
from kubetally.sim.store import deterministic_uid


def raw(sim: SimServer, path: str) -> tuple[int, dict[str, str], Any]:
    """GET without the client library, to see exactly what is on the wire."""
    try:
        with urllib.request.urlopen(sim.url + path, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def names(items: list[Any]) -> list[str]:
    return [i.metadata.name for i in items]


def test_list_nodes_in_key_order_with_resource_versions(sim: SimServer, core: client.CoreV1Api) -> None:
    nodes = core.list_node()
    assert nodes.metadata.resource_version == "9"
    assert names(nodes.items) == ["cpu-01", "gpu-a100-01", "gpu-h100-01"]
    assert [n.metadata.resource_version for n in nodes.items] == ["9", "3", "2"]
    cpu = nodes.items[0]
    assert cpu.metadata.labels == {"pool": "system"}  # the 09:30 history event was applied at load
    assert cpu.metadata.creation_timestamp.isoformat() == "2026-10-01T00:00:00+00:00"


def test_list_items_of_builtin_kinds_carry_no_type_but_cr_items_do(sim: SimServer) -> None:
    status, _, body = raw(sim, "/api/v1/namespaces/team-a/pods")
    assert status == 200
    assert (body["kind"], body["apiVersion"], body["metadata"]) == ("PodList", "v1", {"resourceVersion": "9"})
    assert [sorted(i) for i in body["items"]] == [["metadata", "spec", "status"]] * 2
    _, _, crs = raw(sim, "/apis/management.loft.sh/v1/virtualclusterinstances")
    assert crs["kind"] == "VirtualClusterInstanceList"
    assert [(i["apiVersion"], i["kind"]) for i in crs["items"]] == [("management.loft.sh/v1", "VirtualClusterInstance")]


def test_uid_and_creation_timestamp_are_filled_deterministically(scenario, core: client.CoreV1Api) -> None:
    trainer = core.read_namespaced_pod("trainer-0", "team-a")
    assert trainer.metadata.uid == "28cb5213-48ca-5f67-858c-7fe334a2519d"
    assert deterministic_uid("Pod", "team-a", "trainer-0") == trainer.metadata.uid
    assert trainer.metadata.creation_timestamp.isoformat() == "2026-11-01T10:00:00+00:00"
    with SimServer(scenario) as again:
        other = client.CoreV1Api(again.api_client()).read_namespaced_pod("trainer-0", "team-a")
    assert other.metadata.uid == trainer.metadata.uid


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("pool=gpu", ["gpu-a100-01", "gpu-h100-01"]),
        ("pool==gpu", ["gpu-a100-01", "gpu-h100-01"]),
        ("pool!=gpu", ["cpu-01"]),
        ("pool in (system, cpu)", ["cpu-01"]),
        ("pool notin (system)", ["gpu-a100-01", "gpu-h100-01"]),
        ("vcluster.loft.sh/managed-by", ["gpu-h100-01"]),
        ("!vcluster.loft.sh/managed-by", ["cpu-01", "gpu-a100-01"]),
        ("pool=gpu,nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3", ["gpu-h100-01"]),
        ("vcluster.loft.sh/managed-by!=team-a", ["cpu-01", "gpu-a100-01"]),
    ],
)
def test_label_selectors(read_only_core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    assert names(read_only_core.list_node(label_selector=selector).items) == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("spec.nodeName=gpu-a100-01", ["team-a/notebook", "team-b/eval"]),
        ("status.phase=Running", ["team-a/notebook", "team-a/trainer-0"]),
        ("status.phase!=Running", ["team-b/eval"]),
        ("metadata.namespace=team-b", ["team-b/eval"]),
        ("metadata.name=trainer-0,spec.nodeName==gpu-h100-01", ["team-a/trainer-0"]),
    ],
)
def test_field_selectors(read_only_core: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    pods = read_only_core.list_pod_for_all_namespaces(field_selector=selector).items
    assert [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods] == expected


def test_selector_and_namespace_combined(read_only_core: client.CoreV1Api) -> None:
    pods = read_only_core.list_namespaced_pod("team-a", label_selector="app in (notebook,eval)")
    assert names(pods.items) == ["notebook"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_selector": "pool in gpu"}, "unable to parse requirement: found 'gpu', expected: '('"),
        ({"label_selector": "pool=a=b"}, "unable to parse requirement: found '=', expected: ','"),
        ({"field_selector": "spec.foo=bar"}, "field label not supported: spec.foo"),
        ({"field_selector": "status.phase"}, "invalid selector: 'status.phase'; can't understand 'status.phase'"),
    ],
)
def test_bad_selectors_are_400_with_the_apiserver_message(
    read_only_core: client.CoreV1Api, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ApiException) as caught:
        read_only_core.list_pod_for_all_namespaces(**kwargs)
    assert caught.value.status == 400
    body = json.loads(caught.value.body)
    assert (body["kind"], body["reason"], body["message"], body["code"]) == ("Status", "BadRequest", message, 400)


def test_pagination_with_limit_and_continue(sim: SimServer, core: client.CoreV1Api) -> None:
    first = core.list_pod_for_all_namespaces(limit=2)
    assert names(first.items) == ["notebook", "trainer-0"]
    assert first.metadata.remaining_item_count == 1
    assert first.metadata.resource_version == "9"
    token = first.metadata._continue
    # Changes after the first page do not leak into the rest of a paginated list (a snapshot).
    sim.advance("2026-11-01T10:30:00Z")
    second = core.list_pod_for_all_namespaces(limit=2, _continue=token)
    assert names(second.items) == ["eval"]
    assert second.items[0].status.phase == "Succeeded"
    assert second.metadata.resource_version == "9"
    assert second.metadata._continue is None
    assert second.metadata.remaining_item_count is None
    fresh = core.list_pod_for_all_namespaces(limit=10)
    assert (names(fresh.items), fresh.metadata.resource_version) == (["notebook", "trainer-0", "eval", "infer"], "12")


def test_pagination_with_a_selector_has_no_remaining_count(core: client.CoreV1Api) -> None:
    page = core.list_node(label_selector="pool=gpu", limit=1)
    assert names(page.items) == ["gpu-a100-01"]
    assert page.metadata.remaining_item_count is None
    rest = core.list_node(label_selector="pool=gpu", limit=1, _continue=page.metadata._continue)
    assert names(rest.items) == ["gpu-h100-01"]
    assert rest.metadata._continue is None


def test_continue_after_compaction_is_410_expired(sim: SimServer, core: client.CoreV1Api) -> None:
    token = core.list_node(limit=1).metadata._continue
    assert sim.expire_watches() == 10
    with pytest.raises(ApiException) as caught:
        core.list_node(limit=1, _continue=token)
    assert caught.value.status == 410
    body = json.loads(caught.value.body)
    assert body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")
    # The token handed back with the 410 continues from the same place at the latest state.
    rest = core.list_node(_continue=body["metadata"]["continue"])
    assert (names(rest.items), rest.metadata.resource_version) == (["gpu-a100-01", "gpu-h100-01"], "10")


def test_resource_version_semantics_of_list(sim: SimServer, core: client.CoreV1Api) -> None:
    # NotOlderThan (the default) with an old RV serves the current state, as the apiserver does.
    assert core.list_node(resource_version="3").metadata.resource_version == "9"
    exact = core.list_node(resource_version="3", resource_version_match="Exact")
    assert (names(exact.items), exact.metadata.resource_version) == (["gpu-a100-01", "gpu-h100-01"], "3")
    exact = core.list_node(resource_version="4", resource_version_match="Exact")
    assert names(exact.items) == ["cpu-01", "gpu-a100-01", "gpu-h100-01"]
    assert exact.items[0].metadata.labels == {"pool": "cpu"}  # before the 09:30 history event
    with pytest.raises(ApiException) as too_large:
        core.list_node(resource_version="99")
    assert too_large.value.status == 504
    assert json.loads(too_large.value.body)["message"] == "Too large resource version: 99, current: 9"
    sim.expire_watches()
    with pytest.raises(ApiException) as expired:
        core.list_node(resource_version="3", resource_version_match="Exact")
    assert expired.value.status == 410
    body = json.loads(expired.value.body)
    assert (body["reason"], body["message"]) == ("Expired", "too old resource version: 3 (10)")


def test_get_and_not_found(core: client.CoreV1Api, sim: SimServer) -> None:
    assert core.read_node("gpu-h100-01").metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert core.read_namespace("team-a").metadata.resource_version == "1"
    assert core.read_namespaced_pod_status("eval", "team-b").status.phase == "Succeeded"
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_pod("nope", "team-a")
    assert caught.value.status == 404
    assert json.loads(caught.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    }


def test_unknown_resources_are_404_status(sim: SimServer) -> None:
    for path in ("/api/v1/widgets", "/apis/example.com/v1/widgets", "/api/v2/pods", "/api/v1/namespaces/a/nodes"):
        status, _, body = raw(sim, path)
        assert (status, body["kind"], body["reason"], body["message"]) == (
            404,
            "Status",
            "NotFound",
            "the server could not find the requested resource",
        ), path


def test_date_header_shows_virtual_time(sim: SimServer) -> None:
    assert raw(sim, "/api/v1/nodes")[1]["date"] == "Sun, 01 Nov 2026 10:00:00 GMT"
    sim.advance("2026-11-01T10:17:23Z")
    assert raw(sim, "/version")[1]["date"] == "Sun, 01 Nov 2026 10:17:23 GMT"


def test_fail_next_fails_exactly_the_armed_requests(sim: SimServer, core: client.CoreV1Api) -> None:
    sim.fail_next(verb="list", resource="pods", status=500, times=1)
    assert names(core.list_node().items) == ["cpu-01", "gpu-a100-01", "gpu-h100-01"]  # other resource: served
    core.read_namespaced_pod("eval", "team-b")  # other verb: served
    with pytest.raises(ApiException) as caught:
        core.list_pod_for_all_namespaces()
    assert caught.value.status == 500
    body = json.loads(caught.value.body)
    assert (body["reason"], body["message"]) == ("InternalError", "injected failure: list pods")
    assert len(core.list_pod_for_all_namespaces().items) == 3
    sim.fail_next(verb="get", resource="nodes", status=429, times=2)
    for _ in range(2):
        with pytest.raises(ApiException) as again:
            core.read_node("cpu-01")
        assert again.value.status == 429
    assert core.read_node("cpu-01").metadata.name == "cpu-01"


def test_discovery_documents(sim: SimServer) -> None:
    assert raw(sim, "/version")[2]["gitVersion"] == "v1.32.1"
    _, _, api = raw(sim, "/api")
    assert (api["kind"], api["versions"]) == ("APIVersions", ["v1"])
    _, _, core_v1 = raw(sim, "/api/v1")
    assert (core_v1["kind"], core_v1["groupVersion"]) == ("APIResourceList", "v1")
    pods = next(r for r in core_v1["resources"] if r["name"] == "pods")
    assert pods == {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get", "list", "watch"],
        "shortNames": ["po"],
        "categories": ["all"],
    }
    _, _, groups = raw(sim, "/apis")
    by_name = {g["name"]: g for g in groups["groups"]}
    assert by_name["management.loft.sh"]["preferredVersion"] == {
        "groupVersion": "management.loft.sh/v1",
        "version": "v1",
    }
    assert {"apps", "batch", "storage.k8s.io"} <= set(by_name)
    _, _, loft = raw(sim, "/apis/management.loft.sh/v1")
    assert [r["name"] for r in loft["resources"]] == ["virtualclusterinstances", "virtualclusterinstances/status"]


def test_dynamic_client_discovers_and_lists_the_custom_resource(sim: SimServer, tmp_path: Path) -> None:
    dyn = dynamic.DynamicClient(sim.api_client(), cache_file=str(tmp_path / "discovery.json"))
    vci = dyn.resources.get(api_version="management.loft.sh/v1", kind="VirtualClusterInstance")
    assert (vci.name, vci.namespaced) == ("virtualclusterinstances", True)
    listed = vci.get()
    assert [(i.metadata.namespace, i.metadata.name, i.status.phase) for i in listed.items] == [
        ("p-research", "team-b", "Ready")
    ]
    assert vci.get(name="team-b", namespace="p-research").spec.clusterRef.virtualCluster == "team-b"
    sts = dyn.resources.get(api_version="apps/v1", kind="StatefulSet")
    assert sts.get(label_selector="app=vcluster").items == []


def test_kubeconfig_points_the_client_at_the_simulator(sim: SimServer, tmp_path: Path) -> None:
    path = sim.kubeconfig(tmp_path / "kube" / "config")
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(path)))
    assert names(api.list_node(label_selector="pool=gpu").items) == ["gpu-a100-01", "gpu-h100-01"]


def test_writes_are_refused_read_only(sim: SimServer, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.delete_namespaced_pod("eval", "team-b")
    assert caught.value.status == 405
    assert core.read_namespaced_pod("eval", "team-b").metadata.name == "eval"


def test_server_side_table_for_kubectl(sim: SimServer) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    request = urllib.request.Request(f"{sim.url}/api/v1/namespaces/team-a/pods", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as resp:
        body = json.loads(resp.read())
    assert (body["kind"], body["apiVersion"], body["metadata"]) == ("Table", "meta.k8s.io/v1", {"resourceVersion": "9"})
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Status", "Node", "Age"]
    assert [r["cells"] for r in body["rows"]] == [
        ["notebook", "Running", "gpu-a100-01", "0s"],
        ["trainer-0", "Running", "gpu-h100-01", "0s"],
    ]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    sim.advance("2026-11-01T13:25:00Z")
    request = urllib.request.Request(f"{sim.url}/api/v1/nodes/cpu-01", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as resp:
        node = json.loads(resp.read())
    assert node["rows"][0]["cells"] == ["cpu-01", "Unknown", "", "31d"]


def test_boolean_fields_select_in_lower_case(sim: SimServer, core: client.CoreV1Api) -> None:
    cordoned = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "cpu-01", "labels": {"pool": "system"}},
        "spec": {"unschedulable": True},
    }
    sim.apply("MODIFIED", cordoned)
    assert names(core.list_node(field_selector="spec.unschedulable=true").items) == ["cpu-01"]
    assert names(core.list_node(field_selector="spec.unschedulable!=true").items) == ["gpu-a100-01", "gpu-h100-01"]
