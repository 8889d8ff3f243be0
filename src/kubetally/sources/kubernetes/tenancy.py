"""Who the tenants are, and which tenant an object (pod, PVC, Service, node) belongs to.

Tenant ids are printable ASCII, readable and collision-free because ``/`` can appear in no
Kubernetes name, namespace or label value:

* ``vcluster/<host-namespace>/<vcluster-name>`` — a vCluster tenant cluster, found from a
  StatefulSet/Deployment labelled ``app=vcluster`` or from a vCluster Platform
  ``VirtualClusterInstance`` (``spec.clusterRef`` names the host namespace and vCluster). Both
  paths give the same id, so a vCluster seen both ways is one tenant. Two vClusters in one
  namespace are two tenants (vBilling v0.1 joined ``<namespace>-<name>`` with ``-``, so
  ``a-b``/``c`` and ``a``/``b-c`` were the same customer).
* ``namespace/<namespace>`` — a namespace labelled ``<tenancy.namespace_label>: "true"``.
* ``tenant/<value>`` — namespaces labelled ``<tenancy.namespace_label>: <value>`` (one customer,
  several namespaces).
* ``project/<project>`` — namespaces labelled ``<tenancy.project_label>: <project>`` when that
  setting is on.

Label values cannot hold ``/``, so a node is dedicated to a tenant with the same id written with
``.`` (``kubetally.io/tenant: vcluster.team-a.gpu``); :func:`tenant_id_from_label` converts back.

:class:`TenantResolver` is what the sources share: the Kubernetes meter uses it for every object
and the Prometheus source uses :meth:`TenantResolver.tenant_for` to fill ``tenant`` from a series'
namespace (and pod labels).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetally.config.kubernetes import VCLUSTER_MANAGED_BY, KubernetesConfig

VCLUSTER = "vcluster"
NAMESPACE = "namespace"
NAMED = "tenant"
PROJECT = "project"
TENANT_KINDS = (VCLUSTER, NAMESPACE, NAMED, PROJECT)

VCLUSTER_APP_LABEL = ("app", "vcluster")
RELEASE_LABEL = "release"
#: vCluster Platform project label on a VirtualClusterInstance.
PLATFORM_PROJECT_LABEL = "loft.sh/project"


def vcluster_tenant_id(namespace: str, name: str) -> str:
    return f"{VCLUSTER}/{namespace}/{name}"


def tenant_label_value(tenant_id: str) -> str:
    """The form of a tenant id that fits a label value (``/`` → ``.``)."""
    return tenant_id.replace("/", ".")


def tenant_id_from_label(value: str) -> str | None:
    """``vcluster.team-a.gpu`` → ``vcluster/team-a/gpu``; ``namespace.research`` →
    ``namespace/research``. Namespaces and vCluster names hold no dots (DNS labels), so only the
    first one or two dots are separators; ``None`` if the value is not in this form."""
    kind, _, rest = value.strip().partition(".")
    if kind == VCLUSTER:
        namespace, _, name = rest.partition(".")
        if namespace and name and "." not in name:
            return vcluster_tenant_id(namespace, name)
        return None
    if kind in (NAMESPACE, NAMED, PROJECT) and rest:
        return f"{kind}/{rest}"
    return None


@dataclass(frozen=True)
class Tenant:
    """A tenant as discovered. One row per (tenant, namespace) for multi-namespace tenants."""

    id: str
    kind: str
    #: The host namespace (a vCluster's or a labelled namespace).
    namespace: str
    #: vCluster name, namespace, tenant label value or project.
    name: str
    project: str = ""
    display_name: str = ""
    #: How it was found: ``statefulset``, ``deployment``, ``virtualclusterinstance``,
    #: ``namespace-label``, ``project-label``.
    sources: tuple[str, ...] = ()
    #: Billing customer id from ``tenancy.customer_key`` ("" when the object has none).
    customer: str = ""


@dataclass
class Discovery:
    """The tenants of one discovery pass, and whether it can be trusted to be complete.

    ``complete`` is False when any LIST failed: then a tenant's absence means nothing, and
    offboarding must not start (vBilling v0.1 treated a failed list as "every tenant deleted")."""

    tenants: list[Tenant] = field(default_factory=list)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    complete: bool = True
    problems: list[str] = field(default_factory=list)

    def ids(self) -> set[str]:
        return {t.id for t in self.tenants}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(obj.get("metadata"))


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = _meta(obj).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    annotations = _meta(obj).get("annotations")
    return {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, Mapping) else {}


def _customer(key: str | None, *objects: Mapping[str, Any] | None) -> str:
    """``key``'s value on the first object that has it, annotation before label ("" if none)."""
    if not key:
        return ""
    for obj in objects:
        if obj is None:
            continue
        for values in (annotations_of(obj), labels_of(obj)):
            if values.get(key, "").strip():
                return values[key].strip()
    return ""


def _project_from_platform(vci: Mapping[str, Any]) -> str:
    labels = labels_of(vci)
    if labels.get(PLATFORM_PROJECT_LABEL):
        return labels[PLATFORM_PROJECT_LABEL]
    namespace = str(_meta(vci).get("namespace") or "")
    for prefix in ("loft-p-", "p-"):
        if namespace.startswith(prefix):
            return namespace[len(prefix) :]
    return ""


def _merge(tenants: dict[tuple[str, str], Tenant], tenant: Tenant) -> None:
    key = (tenant.id, tenant.namespace)
    existing = tenants.get(key)
    if existing is None:
        tenants[key] = tenant
        return
    # The Platform's view (project, display name) is authoritative over what a workload implies.
    first, second = (tenant, existing) if "virtualclusterinstance" in tenant.sources else (existing, tenant)
    tenants[key] = Tenant(
        id=tenant.id,
        kind=tenant.kind,
        namespace=tenant.namespace,
        name=tenant.name,
        project=first.project or second.project,
        display_name=first.display_name or second.display_name,
        sources=tuple(sorted(set(existing.sources) | set(tenant.sources))),
        customer=first.customer or second.customer,
    )


def discover(
    objects: Mapping[str, Sequence[Mapping[str, Any]]],
    config: KubernetesConfig,
    *,
    failed: Iterable[str] = (),
    project_label: str = "",
) -> Discovery:
    """Tenants from listed objects. ``objects`` maps a resource (``namespaces``, ``statefulsets``,
    ``deployments``, ``virtualclusterinstances``) to its items; ``failed`` names resources whose
    LIST failed (the discovery is then incomplete)."""
    tenancy = config.tenancy
    failed = set(failed)
    found: dict[tuple[str, str], Tenant] = {}
    problems: list[str] = []
    namespace_labels: dict[str, dict[str, str]] = {}
    namespace_objects: dict[str, Mapping[str, Any]] = {}
    for ns in objects.get("namespaces", ()):
        name = str(_meta(ns).get("name") or "")
        if name:
            namespace_labels[name] = labels_of(ns)
            namespace_objects[name] = ns
    key = tenancy.customer_key
    project_key = tenancy.project_label or project_label

    def ns_project(namespace: str) -> str:
        return namespace_labels.get(namespace, {}).get(project_key, "") if project_key else ""

    if tenancy.vclusters:
        for resource, source in (("statefulsets", "statefulset"), ("deployments", "deployment")):
            for obj in objects.get(resource, ()):
                meta = _meta(obj)
                labels = labels_of(obj)
                if labels.get(VCLUSTER_APP_LABEL[0]) != VCLUSTER_APP_LABEL[1]:
                    continue
                namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
                if not namespace or not name:
                    problems.append(f"{source} without metadata.name/namespace ignored: {str(obj)[:120]}")
                    continue
                _merge(
                    found,
                    Tenant(
                        vcluster_tenant_id(namespace, name),
                        VCLUSTER,
                        namespace,
                        name,
                        ns_project(namespace),
                        name,
                        (source,),
                        _customer(key, obj, namespace_objects.get(namespace)),
                    ),
                )
    if tenancy.platform:
        for vci in objects.get("virtualclusterinstances", ()):
            meta = _meta(vci)
            where = f"VirtualClusterInstance {meta.get('namespace')}/{meta.get('name')}"
            spec = _mapping(vci.get("spec"))
            ref = _mapping(spec.get("clusterRef"))
            cluster = str(ref.get("cluster") or "")
            if tenancy.platform_cluster and cluster and cluster != tenancy.platform_cluster:
                continue
            namespace = str(ref.get("namespace") or "")
            name = str(ref.get("virtualCluster") or meta.get("name") or "")
            if not namespace or not name:
                problems.append(f"{where}: spec.clusterRef.namespace is not set (not deployed yet?); skipped")
                continue
            project = _project_from_platform(vci) or ns_project(namespace)
            display = str(spec.get("displayName") or name)
            _merge(
                found,
                Tenant(
                    vcluster_tenant_id(namespace, name),
                    VCLUSTER,
                    namespace,
                    name,
                    project,
                    display,
                    ("virtualclusterinstance",),
                    _customer(key, vci, namespace_objects.get(namespace)),
                ),
            )
    for namespace, labels in namespace_labels.items():
        if tenancy.namespace_label and tenancy.namespace_label in labels:
            value = labels[tenancy.namespace_label].strip()
            if value.lower() in ("", "true"):
                tid, kind, name = f"{NAMESPACE}/{namespace}", NAMESPACE, namespace
            else:
                tid, kind, name = f"{NAMED}/{value}", NAMED, value
            customer = _customer(key, namespace_objects.get(namespace))
            _merge(
                found, Tenant(tid, kind, namespace, name, ns_project(namespace), name, ("namespace-label",), customer)
            )
        elif tenancy.project_label and labels.get(tenancy.project_label):
            project = labels[tenancy.project_label]
            customer = _customer(key, namespace_objects.get(namespace))
            tid = f"{PROJECT}/{project}"
            _merge(found, Tenant(tid, PROJECT, namespace, project, project, project, ("project-label",), customer))
    complete = not failed
    for resource in sorted(failed):
        problems.append(f"LIST {resource} failed: tenant discovery is incomplete, nobody is offboarded")
    tenants = sorted(found.values(), key=lambda t: (t.id, t.namespace))
    return Discovery(tenants, namespace_labels, complete, problems)


@dataclass(frozen=True)
class Resolution:
    """Which tenant an object belongs to. ``tenant`` "" means: not a tenant's object."""

    tenant: str = ""
    project: str = ""
    #: The object is part of a vCluster's control plane (``app=vcluster``, ``release=<name>``).
    control_plane: bool = False
    #: Why the object could not be attributed (ambiguous), for a warning naming it.
    problem: str = ""


class TenantResolver:
    """Maps namespaces, labelled objects and nodes to tenant ids (see module doc)."""

    def __init__(
        self,
        tenants: Iterable[Tenant],
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        config: KubernetesConfig | None = None,
        *,
        project_label: str = "",
    ):
        self.config = config or KubernetesConfig()
        self.tenants: dict[str, Tenant] = {}
        self.namespace_tenant: dict[str, str] = {}
        self.vclusters_by_namespace: dict[str, list[Tenant]] = {}
        self.vclusters_by_name: dict[str, list[Tenant]] = {}
        self.namespace_labels = {k: dict(v) for k, v in (namespace_labels or {}).items()}
        self.project_label = self.config.tenancy.project_label or project_label
        for tenant in tenants:
            self.tenants.setdefault(tenant.id, tenant)
            if tenant.kind == VCLUSTER:
                if tenant not in self.vclusters_by_namespace.setdefault(tenant.namespace, []):
                    self.vclusters_by_namespace[tenant.namespace].append(tenant)
                    self.vclusters_by_name.setdefault(tenant.name, []).append(tenant)
            else:
                self.namespace_tenant.setdefault(tenant.namespace, tenant.id)

    @classmethod
    def from_discovery(
        cls, discovery: Discovery, config: KubernetesConfig, *, project_label: str = ""
    ) -> TenantResolver:
        return cls(discovery.tenants, discovery.namespace_labels, config, project_label=project_label)

    # -- projects --------------------------------------------------------------------------

    def project(self, tenant_id: str, namespace: str) -> str:
        """The record's ``project``: the tenant's (Platform project, ``project/<p>``), else the
        namespace's project label."""
        tenant = self.tenants.get(tenant_id)
        if tenant is not None and tenant.project:
            return tenant.project
        if tenant_id.startswith(f"{PROJECT}/"):
            return tenant_id.split("/", 1)[1]
        if self.project_label:
            return self.namespace_labels.get(namespace, {}).get(self.project_label, "")
        return ""

    # -- namespaced objects ----------------------------------------------------------------

    def resolve(self, namespace: str, labels: Mapping[str, str]) -> Resolution:
        """The tenant of a pod, PVC or Service in ``namespace`` with ``labels``. Order:
        vCluster-synced (``vcluster.loft.sh/managed-by``) → vCluster control plane
        (``app=vcluster``, ``release``) → labelled namespace → the one vCluster hosted in the
        namespace. With several vClusters in the namespace and no label, it is ambiguous."""
        managed_by = labels.get(VCLUSTER_MANAGED_BY, "")
        if managed_by:
            tid = vcluster_tenant_id(namespace, managed_by)
            return Resolution(tid, self.project(tid, namespace))
        if labels.get(VCLUSTER_APP_LABEL[0]) == VCLUSTER_APP_LABEL[1] and labels.get(RELEASE_LABEL):
            tid = vcluster_tenant_id(namespace, labels[RELEASE_LABEL])
            return Resolution(tid, self.project(tid, namespace), control_plane=True)
        tid = self.namespace_tenant.get(namespace, "")
        if tid:
            return Resolution(tid, self.project(tid, namespace))
        hosted = self.vclusters_by_namespace.get(namespace, [])
        if len(hosted) == 1:
            return Resolution(hosted[0].id, self.project(hosted[0].id, namespace))
        if len(hosted) > 1:
            names = ", ".join(sorted(t.name for t in hosted))
            return Resolution(
                problem=f"namespace {namespace} hosts several vClusters ({names}) and the object "
                f"has no {VCLUSTER_MANAGED_BY} label; not attributed"
            )
        return Resolution()

    def tenant_for(self, namespace: str, labels: Mapping[str, str] | None = None) -> str:
        """Tenant id for a namespace (and optionally an object's labels); "" if none/ambiguous.
        This is the entry point for other sources (Prometheus series carry a namespace)."""
        return self.resolve(namespace, labels or {}).tenant

    # -- nodes -----------------------------------------------------------------------------

    def resolve_node(self, labels: Mapping[str, str]) -> tuple[str, str]:
        """(tenant id, problem) of a node dedicated to one tenant; ("", "") for a shared node.

        ``dedicated_nodes.tenant_label`` (kubetally's, a tenant id with dots) wins over
        ``dedicated_nodes.vcluster_label`` (vBilling's, a vCluster name, or its host namespace
        when that hosts exactly one vCluster)."""
        dedicated = self.config.dedicated_nodes
        if dedicated.tenant_label and labels.get(dedicated.tenant_label):
            value = labels[dedicated.tenant_label]
            tid = tenant_id_from_label(value)
            if tid is None:
                return "", (
                    f"label {dedicated.tenant_label}={value!r} is not a tenant id written with dots "
                    f"(e.g. vcluster.<namespace>.<name>, namespace.<name>); node billed as shared"
                )
            return tid, ""
        if dedicated.vcluster_label and labels.get(dedicated.vcluster_label):
            value = labels[dedicated.vcluster_label]
            by_name = self.vclusters_by_name.get(value, [])
            if len(by_name) == 1:
                return by_name[0].id, ""
            by_namespace = self.vclusters_by_namespace.get(value, [])
            if not by_name and len(by_namespace) == 1:
                return by_namespace[0].id, ""
            candidates = by_name or by_namespace
            if candidates:
                names = ", ".join(sorted(t.id for t in candidates))
                reason = f"matches several vClusters ({names})"
            else:
                reason = "matches no known vCluster"
            hint = (
                f"label the node {dedicated.tenant_label}=vcluster.<namespace>.<name>" if dedicated.tenant_label else ""
            )
            return "", f"label {dedicated.vcluster_label}={value!r} {reason}; node billed as shared. {hint}".strip()
        return "", ""
