"""The agent's RBAC is enough and no more: kubetally runs against the simulated API with a token
bound to the rendered Roles and ClusterRoles and gets the scenario's exact totals, and the
simulated API (evaluating the same objects as a real apiserver) refuses everything else."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from k8s_builders import control_plane_pod, lb_service, namespace, node, pod, pvc, scenario, t, usage, vci, vcluster
from typer.testing import CliRunner

from kubetally.cli.main import app
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.sim import SimServer
from kubetally.sim.rbac import RBAC, RBACError, User, request_of

AGENT_TOKEN = "agent-token"
#: The agent's namespace (the Deployment's POD_NAMESPACE).
NS_AGENT = "kubetally"
#: The namespace's default ServiceAccount: bound to nothing.
DEFAULT_TOKEN = "default-token"
TEAM_A = "vcluster/vcluster-team-a/team-a"
SHARED_SPOT = ("billing_mode=shared", "capacity_type=spot")
SYNCED = "vcluster.loft.sh/managed-by"


def cluster() -> list[dict[str, Any]]:
    """One tenant with something of every metered kind (pod, PVC, LoadBalancer, control plane)."""
    return [
        namespace("vcluster-team-a"),
        vcluster("team-a", "vcluster-team-a"),
        # A vCluster Platform instance of another cluster: listed (the rule is used), not ours.
        vci("elsewhere", "research", host_ns="vcluster-elsewhere", vcluster_name="elsewhere", cluster="other"),
        node("cpu-system-01"),
        node(
            "g5",
            labels={"nvidia.com/gpu.product": "NVIDIA-A10G", "eks.amazonaws.com/capacityType": "SPOT"},
            gpus={"nvidia.com/gpu": "1"},
        ),
        control_plane_pod("team-a", "vcluster-team-a", ready_since=t("09:00:00")),
        pod(
            "infer-x-default-x-team-a",
            "vcluster-team-a",
            node_name="g5",
            requests={"nvidia.com/gpu": "1"},
            labels={SYNCED: "team-a"},
            started=t("10:12:00"),
            finished=t("10:42:00"),
        ),
        pvc(
            "data-x-default-x-team-a",
            "vcluster-team-a",
            size="100Gi",
            storage_class="standard",
            created=t("10:30:00"),
            labels={SYNCED: "team-a"},
        ),
        lb_service(
            "web-x-default-x-team-a",
            "vcluster-team-a",
            created=t("10:00:00"),
            ingress_at=t("10:15:00"),
            labels={SYNCED: "team-a"},
        ),
    ]


EXPECTED = {
    # 10:12:00–10:42:00 on a spot A10G: 1800 s × 1 GPU / 3600 = 0.5 GPU-h
    (TEAM_A, "gpu_hours", "infer-x-default-x-team-a", "gpu_sku=nvidia-a10g-24gb", *SHARED_SPOT): Decimal("0.5"),
    # control plane Ready since 09:00: the whole hour 10:00–11:00 = 1 h
    (TEAM_A, "control_plane_hours", "team-a"): Decimal("1"),
    # 100 GiB bound from 10:30:00 to 11:00:00: 100 × 1800 / 3600 = 50 GiB-h
    (TEAM_A, "storage_gib_hours", "data-x-default-x-team-a", "storage_class=standard"): Decimal("50"),
    # LoadBalancer address written 10:15:00 → 11:00:00: 2700 / 3600 = 0.75 h
    (TEAM_A, "lb_hours", "web-x-default-x-team-a"): Decimal("0.75"),
}
HOUR = {"start": parse_time(t("10:00:00")), "end": parse_time(t("11:00:00"))}


@pytest.fixture(scope="module")
def agent_rbac(rendered: dict[str, list[dict[str, Any]]]) -> RBAC:
    """The agent's RBAC exactly as `kubectl apply -k deploy/base/agent` would create it."""
    return RBAC(rendered["base/agent"], {AGENT_TOKEN: "kubetally/kubetally-agent", DEFAULT_TOKEN: "kubetally/default"})


@pytest.fixture(scope="module")
def sim(agent_rbac: RBAC) -> Iterator[SimServer]:
    """Read-only tests share one server; the clock stays at 11:05 (nothing advances it)."""
    with SimServer(scenario(t("11:05:00"), cluster()), rbac=agent_rbac) as server:
        yield server


def test_collect_with_the_agent_token_gets_the_exact_totals(sim: SimServer, tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig", token=AGENT_TOKEN)
    args = ["collect", "--kubernetes", "--kubeconfig", str(kubeconfig), "--cluster", "gpu-east", "--db", db]
    result = CliRunner().invoke(app, [*args, "--from", t("10:00:00"), "--to", t("11:00:00")])
    assert result.exit_code == 0, result.output
    with Ledger.open(db) as ledger:
        assert usage(ledger) == EXPECTED


def test_the_agent_with_the_agent_token_lists_watches_and_gets_the_exact_totals(sim: SimServer, tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig", token=AGENT_TOKEN)
    config = tmp_path / "kubetally.yaml"
    config.write_text("collection:\n  max_backfill: 1h\n")  # 11:05 - 1 h: the hour 10:00–11:00 only
    args = ["agent", "--once", "--clock", "apiserver", "-c", str(config), "--kubeconfig", str(kubeconfig)]
    result = CliRunner().invoke(app, [*args, "--cluster", "gpu-east", "--db", db])
    assert result.exit_code == 0, result.output
    with Ledger.open(db) as ledger:
        assert usage(ledger, **HOUR) == EXPECTED


SEEDS = Path(__file__).resolve().parent.parent / "data" / "seeds"
#: A kubetally ConfigMap that tries to set what needs a restart: invalid, ignored, gets an Event.
BAD_OWN = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "bad-prices", "namespace": NS_AGENT, "labels": {"kubetally.io/config": "true"}},
    "data": {"kubetally.yaml": "cluster: elsewhere\n"},
}
#: An Alauda display ConfigMap that is not YAML: invalid, ignored, gets an Event in kube-public.
BAD_DISPLAY = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "bad-display",
        "namespace": "kube-public",
        "labels": {"cpaas.io/slark.display.config": "true"},
    },
    "data": {"config": "[not: closed\n"},
}


def deployed_agent_config(rendered: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """base/agent's kubetally.yaml as rendered into its ConfigMap, with the two changes a
    one-hour test needs: backfill one hour only, and no provider (capacity) records, which come
    from the nodes already listed and watched (no API call of their own) but are not what these
    totals check."""
    (configmap,) = [o for o in rendered["base/agent"] if o["kind"] == "ConfigMap"]
    settings = yaml.safe_load(configmap["data"]["kubetally.yaml"])
    assert settings["agent"]["live_config"] == {"enabled": True}  # what the test relies on
    assert settings["kubernetes"]["capacity"] is True
    settings["collection"] = {"max_backfill": "1h"}
    settings["kubernetes"]["capacity"] = False
    path.write_text(yaml.safe_dump(settings))
    return path


def test_the_ha_agent_with_live_config_runs_on_the_rendered_rbac(
    rendered: dict[str, list[dict[str, Any]]], agent_rbac: RBAC, tmp_path: Path
) -> None:
    """The HA overlay's command (`agent --leader-elect`) with the deployed config (live config on)
    in the namespace kubetally: it creates and holds the Lease there, lists and watches the
    ConfigMaps of all three namespaces, posts Events on the invalid ones, and meters the exact
    totals, every call authorized by the rendered rules (a refused one would fail the run or
    leave its object missing below)."""
    objects = [
        *cluster(),
        yaml.safe_load((SEEDS / "alauda-collection-configmap.yaml").read_text()),
        yaml.safe_load((SEEDS / "alauda-display-configmap.yaml").read_text()),
        BAD_OWN,
        BAD_DISPLAY,
    ]
    (deployment,) = [o for o in rendered["overlays/ha-agent"] if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][-1] == "--leader-elect"
    with SimServer(scenario(t("11:05:00"), objects), rbac=agent_rbac) as ha_sim:
        db = str(tmp_path / "ledger.db")
        kubeconfig = ha_sim.kubeconfig(tmp_path / "kubeconfig", token=AGENT_TOKEN)
        config = deployed_agent_config(rendered, tmp_path / "kubetally.yaml")
        args = [
            *container["args"],
            "--once",
            "--clock",
            "apiserver",
            "-c",
            str(config),
            "--kubeconfig",
            str(kubeconfig),
        ]
        args = [a for a in args if a not in ("--listen", "0.0.0.0:9090")]  # no port taken in tests
        result = CliRunner().invoke(app, [*args, "--cluster", "gpu-east", "--db", db], env={"POD_NAMESPACE": NS_AGENT})
        assert result.exit_code == 0, result.output
        with Ledger.open(db) as ledger:
            assert usage(ledger, **HOUR) == EXPECTED
        store = ha_sim.simulation.store
        changes, _, _ = store.changes_after(0)
        leases = [c for c in changes if c.rtype.plural == "leases"]
        # Created in the agent's namespace by this process (holder host/pid/random), renewed
        # while it metered, then handed back on exit (holder cleared, duration 1 s).
        assert {c.key for c in leases} == {(NS_AGENT, "kubetally-agent")}
        assert leases[0].type == "ADDED"
        holder = leases[0].obj["spec"]["holderIdentity"]
        assert holder.startswith(f"{socket.gethostname()}/{os.getpid()}/"), holder
        assert (leases[0].obj["spec"]["leaseDurationSeconds"], leases[0].obj["spec"]["leaseTransitions"]) == (15, 0)
        assert all(c.obj["spec"]["holderIdentity"] == holder for c in leases[:-1])
        released = leases[-1].obj["spec"]
        assert (leases[-1].type, released.get("holderIdentity"), released["leaseDurationSeconds"]) == (
            "MODIFIED",
            None,
            1,
        )
        # One Warning Event on each invalid ConfigMap, in its namespace; none on the seeds.
        events = [c.obj for c in changes if c.rtype.plural == "events"]
        assert sorted(
            (e["metadata"]["namespace"], e["involvedObject"]["name"], e["type"], e["reason"]) for e in events
        ) == [
            ("kube-public", "bad-display", "Warning", "InvalidConfig"),
            (NS_AGENT, "bad-prices", "Warning", "InvalidConfig"),
        ]


def test_without_the_right_token_nothing_is_collected(sim: SimServer, tmp_path: Path) -> None:
    for token, status in ((DEFAULT_TOKEN, "HTTP 403"), ("not-a-token", "HTTP 401")):
        kubeconfig = sim.kubeconfig(tmp_path / f"kubeconfig-{token}", token=token)
        db = str(tmp_path / f"{token}.db")
        args = ["collect", "--kubernetes", "--kubeconfig", str(kubeconfig), "--cluster", "x", "--db", db]
        result = CliRunner().invoke(app, [*args, "--from", t("10:00:00"), "--to", t("11:00:00")])
        assert result.exit_code != 0
        assert str(result.exception).startswith(f"kubernetes: LIST nodes failed: {status}: "), result.exception


NS = "kubetally"
#: (method, path, query) → allowed for the agent's ServiceAccount. Everything the agent does is in
#: the first block; the rest must be refused (a rule too broad would let one through).
TABLE = [
    # metered: list and watch, cluster-wide
    ("GET", "/api/v1/nodes", "limit=500", True),
    ("GET", "/api/v1/pods", "watch=true&allowWatchBookmarks=true", True),
    ("GET", "/api/v1/persistentvolumeclaims", "", True),
    ("GET", "/api/v1/services", "watch=1", True),
    # tenancy: list only
    ("GET", "/api/v1/namespaces", "", True),
    ("GET", "/apis/apps/v1/statefulsets", "labelSelector=app%3Dvcluster", True),
    ("GET", "/apis/apps/v1/deployments", "labelSelector=app%3Dvcluster", True),
    ("GET", "/apis/management.loft.sh/v1/virtualclusterinstances", "", True),
    # discovery and the Date header (api_server_time)
    ("GET", "/api", "", True),
    ("GET", "/apis/apps/v1", "", True),
    ("GET", "/version", "", True),
    # the Lease, by name; creating it (no name yet)
    ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/kubetally-agent", "", True),
    ("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/kubetally-agent", "", True),
    ("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", "", True),
    # ConfigMaps (list+watch by label) and Events (create) where the cost model lives
    ("GET", f"/api/v1/namespaces/{NS}/configmaps", "labelSelector=kubetally.io%2Fconfig%3Dtrue", True),
    ("GET", f"/api/v1/namespaces/{NS}/configmaps", "watch=true", True),
    ("GET", "/api/v1/namespaces/cpaas-system/configmaps", "labelSelector=cpaas.io%2Fslark.collection.config", True),
    ("GET", "/api/v1/namespaces/cpaas-system/configmaps", "watch=1&labelSelector=x%3Dtrue", True),
    ("GET", "/api/v1/namespaces/kube-public/configmaps", "labelSelector=cpaas.io%2Fslark.display.config", True),
    ("GET", "/api/v1/namespaces/kube-public/configmaps", "watch=true", True),
    ("POST", f"/api/v1/namespaces/{NS}/events", "", True),
    ("POST", "/api/v1/namespaces/cpaas-system/events", "", True),
    ("POST", "/api/v1/namespaces/kube-public/events", "", True),
    # ---- refused ----
    ("DELETE", "/api/v1/namespaces/team-a/pods/trainer-0", "", False),
    ("DELETE", "/api/v1/namespaces/team-a/pods", "", False),  # deletecollection
    ("POST", "/api/v1/namespaces/team-a/pods", "", False),
    ("PATCH", "/api/v1/nodes/g5", "", False),
    ("GET", "/api/v1/nodes/g5", "", False),  # get is not list: never needed, never granted
    ("GET", "/api/v1/namespaces/team-a/pods/trainer-0/log", "", False),
    ("GET", "/api/v1/namespaces/team-a/pods/trainer-0/exec", "", False),
    ("GET", "/api/v1/namespaces", "watch=true", False),  # tenancy is re-listed, never watched
    ("GET", "/apis/apps/v1/statefulsets", "watch=true", False),
    ("GET", "/api/v1/persistentvolumes", "", False),  # not metered
    ("GET", "/api/v1/secrets", "", False),
    ("GET", f"/api/v1/namespaces/{NS}/secrets", "", False),
    ("GET", f"/api/v1/namespaces/{NS}/secrets/kubetally-agent", "", False),
    ("GET", "/api/v1/configmaps", "", False),  # not cluster-wide
    ("GET", "/api/v1/namespaces/team-a/configmaps", "", False),  # not in a tenant's namespace
    ("PUT", f"/api/v1/namespaces/{NS}/configmaps/kubetally-agent-config", "", False),
    ("DELETE", f"/api/v1/namespaces/{NS}/configmaps/kubetally-agent-config", "", False),
    # ConfigMaps are never read by name (ConfigMapSource lists and watches), Events never patched
    # (post_warning creates one per bad version)
    ("GET", "/api/v1/namespaces/kube-public/configmaps/display", "", False),
    ("GET", f"/api/v1/namespaces/{NS}/configmaps/kubetally-agent-config", "", False),
    ("GET", "/api/v1/namespaces/cpaas-system/configmaps/slark-agent-project-config-vgpu", "", False),
    ("PATCH", f"/api/v1/namespaces/{NS}/events/kubetally-agent.1", "", False),
    ("PATCH", "/api/v1/namespaces/cpaas-system/events/x.1", "", False),
    ("GET", f"/api/v1/namespaces/{NS}/events", "", False),
    ("POST", "/api/v1/namespaces/team-a/events", "", False),
    ("POST", "/api/v1/namespaces/kube-system/configmaps", "", False),
    ("DELETE", f"/api/v1/namespaces/{NS}/events/kubetally-agent.1", "", False),
    ("PUT", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/someone-else", "", False),
    ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", "", False),  # list: no name
    ("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/kubetally-agent", "", False),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kubetally-agent", "", False),
    ("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", "", False),
    ("GET", "/apis/coordination.k8s.io/v1/leases", "", False),
    ("GET", "/apis/apps/v1/namespaces/team-a/deployments/x", "", False),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "", False),
    ("POST", "/apis/management.loft.sh/v1/namespaces/p-x/virtualclusterinstances", "", False),
    ("GET", "/metrics", "", False),  # a non-resource URL outside discovery
]


@pytest.mark.parametrize(("method", "path", "query", "allowed"), TABLE, ids=[f"{m} {p}?{q}" for m, p, q, _ in TABLE])
def test_the_rules_grant_exactly_what_the_agent_does(
    agent_rbac: RBAC, method: str, path: str, query: str, allowed: bool
) -> None:
    agent = User.service_account(NS, "kubetally-agent")
    assert agent_rbac.allows(agent, request_of(method, path, query)) is allowed
    # Nobody else in the namespace gets any of it (discovery aside).
    discovery = path in ("/api", "/apis/apps/v1", "/version")
    assert agent_rbac.allows(User.service_account(NS, "default"), request_of(method, path, query)) is discovery


@pytest.fixture(scope="module")
def http(sim: SimServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10, trust_env=False) as client:
        yield client


def _call(http: httpx.Client, token: str | None, method: str, path: str, query: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.request(method, f"{path}?{query}", headers=headers, content=b"{}")


def test_the_simulated_api_refuses_with_a_kubernetes_status(http: httpx.Client) -> None:
    refused = [(m, p, q) for m, p, q, allowed in TABLE if not allowed]
    for method, path, query in refused:
        response = _call(http, AGENT_TOKEN, method, path, query)
        assert response.status_code == 403, (method, path, response.text)
        body = response.json()
        assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "Forbidden", 403)
    user = "system:serviceaccount:kubetally:kubetally-agent"
    body = _call(http, AGENT_TOKEN, "DELETE", "/api/v1/namespaces/team-a/pods/trainer-0").json()
    assert body["message"] == (
        f'pods "trainer-0" is forbidden: User "{user}" cannot delete resource "pods" in API group "" '
        'in the namespace "team-a"'
    )
    assert body["details"] == {"name": "trainer-0", "kind": "pods"}
    body = _call(http, AGENT_TOKEN, "PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x").json()
    assert body["message"] == (
        f'leases.coordination.k8s.io "x" is forbidden: User "{user}" cannot update resource "leases" in API group '
        '"coordination.k8s.io" in the namespace "kube-system"'
    )
    assert body["details"] == {"name": "x", "group": "coordination.k8s.io", "kind": "leases"}
    body = _call(http, AGENT_TOKEN, "GET", "/api/v1/secrets").json()
    assert body["message"] == (
        f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" at the cluster scope'
    )
    # Granted reads are answered (the simulated cluster's own answers: 200 here).
    assert _call(http, AGENT_TOKEN, "GET", "/api/v1/nodes").json()["kind"] == "NodeList"
    assert _call(http, AGENT_TOKEN, "GET", "/apis/apps/v1/statefulsets").status_code == 200
    # No token, a wrong scheme or an unknown token: 401 before anything else.
    for token in (None, "not-a-token"):
        response = _call(http, token, "GET", "/api/v1/nodes")
        assert (response.status_code, response.json()["reason"]) == (401, "Unauthorized")
    response = http.get("/api/v1/nodes", headers={"Authorization": f"Basic {AGENT_TOKEN}"})
    assert response.status_code == 401


# ---- the evaluator's own rules (as the apiserver's) ----------------------------------------------


def _rbac(*objects: dict[str, Any]) -> RBAC:
    return RBAC(list(objects), {"t": "ns1/sa"})


def _role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


def _binding(kind: str, role_kind: str, role: str, subject: dict[str, str], namespace: str | None = None) -> dict:
    meta = {"name": f"b-{role}", **({"namespace": namespace} if namespace else {})}
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    return {"kind": kind, "metadata": meta, "roleRef": ref, "subjects": [subject]}


SA = {"kind": "ServiceAccount", "name": "sa", "namespace": "ns1"}
ME = User.service_account("ns1", "sa")


def test_a_rolebinding_grants_in_its_namespace_only_even_with_a_clusterrole() -> None:
    rbac = _rbac(
        _role("ClusterRole", "read", [{"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["list"]}]),
        _binding("RoleBinding", "ClusterRole", "read", SA, namespace="ns2"),
    )
    assert rbac.allows(ME, request_of("GET", "/api/v1/namespaces/ns2/pods")) is True
    assert rbac.allows(ME, request_of("GET", "/api/v1/namespaces/ns1/pods")) is False
    assert rbac.allows(ME, request_of("GET", "/api/v1/pods")) is False  # all namespaces = cluster scope
    assert rbac.allows(ME, request_of("GET", "/api/v1/nodes")) is False  # cluster-scoped resource


def test_wildcards_subresources_names_and_groups() -> None:
    rbac = _rbac(
        _role(
            "ClusterRole",
            "r",
            [
                {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["*"]},
                {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]},
            ],
        ),
        _binding("ClusterRoleBinding", "ClusterRole", "r", {"kind": "Group", "name": "system:serviceaccounts:ns1"}),
    )
    assert rbac.allows(ME, request_of("GET", "/apis/apps/v1/namespaces/x/deployments/d/status")) is True
    assert rbac.allows(ME, request_of("GET", "/apis/apps/v1/namespaces/x/deployments/d")) is False
    assert rbac.allows(ME, request_of("DELETE", "/api/v1/namespaces/x/configmaps/one")) is True
    assert rbac.allows(ME, request_of("DELETE", "/api/v1/namespaces/x/configmaps/two")) is False
    # A list or watch names its object only through a metadata.name field selector.
    assert rbac.allows(ME, request_of("GET", "/api/v1/namespaces/x/configmaps")) is False
    assert rbac.allows(ME, request_of("GET", "/api/v1/namespaces/x/configmaps", "fieldSelector=metadata.name%3Done"))
    assert rbac.allows(
        ME, request_of("GET", "/api/v1/namespaces/x/configmaps", "watch=1&fieldSelector=metadata.name==one")
    )
    assert rbac.allows(ME, request_of("GET", "/metrics")) is True
    assert rbac.allows(ME, request_of("GET", "/debug/pprof")) is True
    assert rbac.allows(ME, request_of("POST", "/metrics")) is False
    assert rbac.allows(User.service_account("ns2", "sa"), request_of("GET", "/metrics")) is False


def test_request_attributes_follow_the_apiserver() -> None:
    ask = request_of("GET", "/api/v1/namespaces/team-a")
    assert (ask.verb, ask.resource, ask.namespace, ask.name) == ("get", "namespaces", "team-a", "team-a")
    ask = request_of("PUT", "/api/v1/namespaces/team-a/finalize")
    assert (ask.verb, ask.resource, ask.name, ask.subresource) == ("update", "namespaces", "team-a", "finalize")
    ask = request_of("GET", "/api/v1/watch/namespaces/a/pods/p")
    assert (ask.verb, ask.namespace, ask.resource, ask.name) == ("watch", "a", "pods", "p")
    ask = request_of("DELETE", "/apis/apps/v1/namespaces/a/deployments")
    assert (ask.verb, ask.api_group, ask.resource) == ("deletecollection", "apps", "deployments")
    assert request_of("GET", "/apis/apps").resource_request is False


def test_unresolvable_rbac_objects_are_refused_with_their_name() -> None:
    with pytest.raises(RBACError, match=r"RoleBinding ns1/b-missing: roleRef Role 'missing' not found"):
        _rbac(_binding("RoleBinding", "Role", "missing", SA, namespace="ns1"))
    with pytest.raises(RBACError, match="aggregated ClusterRoles are not supported"):
        _rbac({"kind": "ClusterRole", "metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}})
    with pytest.raises(RBACError, match="expected namespace/name"):
        RBAC([], {"t": "no-namespace"})
