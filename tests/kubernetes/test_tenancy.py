"""Tenant discovery, collision-free ids, and which tenant an object or node belongs to."""

from __future__ import annotations

from k8s_builders import namespace, vci, vcluster

from kubetally.config.kubernetes import KubernetesConfig, TenancyConfig
from kubetally.sources.kubernetes.tenancy import (
    TenantResolver,
    discover,
    tenant_id_from_label,
    tenant_label_value,
    vcluster_tenant_id,
)


def test_tenant_ids_cannot_collide_where_vbilling_v01_did() -> None:
    # vBilling v0.1: "vcluster-" + ns + "-" + name → both were "vcluster-a-b-c".
    assert vcluster_tenant_id("a-b", "c") != vcluster_tenant_id("a", "b-c")
    assert vcluster_tenant_id("a-b", "c") == "vcluster/a-b/c"
    assert all(ch.isprintable() and ord(ch) < 128 for ch in vcluster_tenant_id("vcluster-team-a", "team-a"))


def test_label_form_round_trips() -> None:
    for tid in ("vcluster/team-a/gpu", "namespace/research", "tenant/acme", "project/ml.platform"):
        assert tenant_id_from_label(tenant_label_value(tid)) == tid
    assert tenant_id_from_label("vcluster.only-namespace") is None
    assert tenant_id_from_label("team-a") is None


def test_discovery_from_statefulsets_deployments_platform_and_namespaces() -> None:
    objects = {
        "namespaces": [
            namespace("vc-shared"),
            namespace("vcluster-gamma", {"cpaas.io/project": "ml"}),
            namespace("research", {"kubetally.io/tenant": "true"}),
            namespace("acme-1", {"kubetally.io/tenant": "acme"}),
            namespace("acme-2", {"kubetally.io/tenant": "acme"}),
            namespace("kube-system"),
        ],
        "statefulsets": [vcluster("alpha", "vc-shared"), vcluster("gamma", "vcluster-gamma")],
        "deployments": [vcluster("beta", "vc-shared", kind="Deployment")],
        "virtualclusterinstances": [
            vci("gamma", "research", host_ns="vcluster-gamma", vcluster_name="gamma", display="Gamma GPU team")
        ],
    }
    found = discover(objects, KubernetesConfig(), project_label="cpaas.io/project")
    assert found.complete
    by_id = {(t.id, t.namespace): t for t in found.tenants}
    assert sorted(by_id) == [
        ("namespace/research", "research"),
        ("tenant/acme", "acme-1"),
        ("tenant/acme", "acme-2"),
        ("vcluster/vc-shared/alpha", "vc-shared"),
        ("vcluster/vc-shared/beta", "vc-shared"),
        ("vcluster/vcluster-gamma/gamma", "vcluster-gamma"),
    ]
    gamma = by_id[("vcluster/vcluster-gamma/gamma", "vcluster-gamma")]
    # Found both ways → one tenant; the Platform project wins over the namespace label.
    assert gamma.sources == ("statefulset", "virtualclusterinstance")
    assert (gamma.project, gamma.display_name) == ("research", "Gamma GPU team")


def test_platform_instance_maps_through_cluster_ref_only_for_our_cluster() -> None:
    objects = {
        "virtualclusterinstances": [
            vci("x", "p1", host_ns="loft-p1-v-x", vcluster_name="x", cluster="other-cluster"),
            vci("y", "p1", host_ns="loft-p1-v-y", vcluster_name="y", cluster="gpu-east"),
        ]
    }
    config = KubernetesConfig(tenancy=TenancyConfig(platform_cluster="gpu-east"))
    assert discover(objects, config).ids() == {"vcluster/loft-p1-v-y/y"}
    # Not deployed yet (no clusterRef.namespace): reported, not guessed.
    pending = vci("z", "p1", host_ns="", vcluster_name="z")
    result = discover({"virtualclusterinstances": [pending]}, KubernetesConfig())
    assert result.ids() == set()
    assert "VirtualClusterInstance p-p1/z" in result.problems[0]


def test_a_failed_list_makes_discovery_incomplete() -> None:
    result = discover({"namespaces": []}, KubernetesConfig(), failed={"statefulsets"})
    assert not result.complete
    assert "LIST statefulsets failed" in result.problems[0]


def test_project_tenants_by_namespace_label() -> None:
    config = KubernetesConfig(tenancy=TenancyConfig(project_label="cpaas.io/project", namespace_label=None))
    result = discover(
        {"namespaces": [namespace("ns-1", {"cpaas.io/project": "ml"}), namespace("ns-2", {"cpaas.io/project": "ml"})]},
        config,
    )
    assert sorted((t.id, t.namespace) for t in result.tenants) == [("project/ml", "ns-1"), ("project/ml", "ns-2")]
    resolver = TenantResolver.from_discovery(result, config)
    assert resolver.resolve("ns-2", {}).tenant == "project/ml"
    assert resolver.resolve("ns-2", {}).project == "ml"


def _resolver() -> TenantResolver:
    objects = {
        "namespaces": [
            namespace("vc-shared"),
            namespace("vcluster-gamma"),
            namespace("research", {"kubetally.io/tenant": "true", "cpaas.io/project": "science"}),
        ],
        "statefulsets": [
            vcluster("alpha", "vc-shared"),
            vcluster("gamma", "vcluster-gamma"),
            vcluster("gamma", "vc-shared"),
        ],
        "deployments": [vcluster("beta", "vc-shared", kind="Deployment")],
    }
    config = KubernetesConfig()
    return TenantResolver.from_discovery(discover(objects, config), config, project_label="cpaas.io/project")


def test_objects_resolve_by_synced_label_control_plane_namespace_and_sole_vcluster() -> None:
    resolver = _resolver()
    synced = resolver.resolve("vc-shared", {"vcluster.loft.sh/managed-by": "beta"})
    assert (synced.tenant, synced.control_plane) == ("vcluster/vc-shared/beta", False)
    control = resolver.resolve("vc-shared", {"app": "vcluster", "release": "alpha"})
    assert (control.tenant, control.control_plane) == ("vcluster/vc-shared/alpha", True)
    assert resolver.resolve("research", {}).tenant == "namespace/research"
    assert resolver.resolve("research", {}).project == "science"
    assert resolver.resolve("vcluster-gamma", {"app": "job"}).tenant == "vcluster/vcluster-gamma/gamma"
    assert resolver.resolve("kube-system", {"k8s-app": "kube-dns"}).tenant == ""
    # Prometheus source entry point: a namespace alone.
    assert resolver.tenant_for("vcluster-gamma") == "vcluster/vcluster-gamma/gamma"


def test_two_vclusters_in_one_namespace_never_share_an_unlabelled_object() -> None:
    resolution = _resolver().resolve("vc-shared", {"app": "helper"})
    assert resolution.tenant == ""
    assert "hosts several vClusters (alpha, beta, gamma)" in resolution.problem


def test_dedicated_node_labels() -> None:
    resolver = _resolver()
    # vBilling's convention: the vCluster name, unique across namespaces.
    assert resolver.resolve_node({"vcluster.loft.sh/managed-by": "beta"}) == ("vcluster/vc-shared/beta", "")
    # ... or a host namespace that hosts exactly one vCluster (vBilling v0.1 used namespaces).
    assert resolver.resolve_node({"vcluster.loft.sh/managed-by": "vcluster-gamma"}) == (
        "vcluster/vcluster-gamma/gamma",
        "",
    )
    # "gamma" exists in two namespaces: ambiguous, reported with the fix, billed as shared.
    tenant, problem = resolver.resolve_node({"vcluster.loft.sh/managed-by": "gamma"})
    assert tenant == ""
    assert "matches several vClusters" in problem and "kubetally.io/tenant=vcluster.<namespace>.<name>" in problem
    # kubetally's label disambiguates and wins.
    labels = {"vcluster.loft.sh/managed-by": "gamma", "kubetally.io/tenant": "vcluster.vc-shared.gamma"}
    assert resolver.resolve_node(labels) == ("vcluster/vc-shared/gamma", "")
    assert resolver.resolve_node({"kubetally.io/tenant": "namespace.research"}) == ("namespace/research", "")
    tenant, problem = resolver.resolve_node({"kubetally.io/tenant": "garbage"})
    assert tenant == "" and "not a tenant id" in problem
    assert resolver.resolve_node({"vcluster.loft.sh/managed-by": "nobody"})[0] == ""
    assert resolver.resolve_node({"kubernetes.io/hostname": "n1"}) == ("", "")
