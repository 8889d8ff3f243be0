"""Which REST resources the simulated API server offers, and how each is named on the wire.

The real apiserver derives URL paths, discovery documents and list kinds from a fixed table of
built-in types plus CustomResourceDefinitions. The simulator does the same: the standard core
kinds are always served (so a client's discovery and an empty list work as against a real
cluster), and any other kind found in a scenario is served as a custom resource, named from its
CustomResourceDefinition when the scenario has one, otherwise by the usual English plural rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

READ_VERBS = ("get", "list", "watch")
#: Verbs of the resources clients may write (:data:`WRITABLE`).
WRITE_VERBS = ("create", "update", "delete")
#: (group, plural) of what the simulator accepts writes for: what the agent writes in a real
#: cluster (Leases for leader election, Events) and ConfigMaps, which tests edit to change the
#: agent's live config. Everything else stays read-only, as metered objects belong to the scenario.
WRITABLE = frozenset({("", "configmaps"), ("", "events"), ("coordination.k8s.io", "leases")})


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: ``/api/v1/pods`` or ``/apis/<group>/<version>/<plural>``."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def writable(self) -> bool:
        return (self.group, self.plural) in WRITABLE

    @property
    def builtin(self) -> bool:
        """Built-in types; their list items carry no apiVersion/kind on the wire, CRs' do."""
        return (self.group, self.version, self.kind) in _BUILTIN_KEYS

    def discovery_entries(self) -> list[dict[str, object]]:
        """The APIResource entries (resource plus ``/status``) of an APIResourceList."""
        entry: dict[str, object] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(READ_VERBS + WRITE_VERBS) if self.writable else list(READ_VERBS),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entries = [entry]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get"],
                }
            )
        return entries


def _core(kind: str, plural: str, namespaced: bool, *short: str, status: bool = True) -> ResourceType:
    return ResourceType("", "v1", kind, plural, namespaced, tuple(short), ("all",) if kind in _ALL else (), status)


def _grp(group: str, kind: str, plural: str, namespaced: bool, *short: str, status: bool = True) -> ResourceType:
    return ResourceType(group, "v1", kind, plural, namespaced, tuple(short), ("all",) if kind in _ALL else (), status)


_ALL = {
    "Pod",
    "Service",
    "ReplicationController",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
}

STANDARD: tuple[ResourceType, ...] = (
    _core("Binding", "bindings", True, status=False),
    _core("ConfigMap", "configmaps", True, "cm", status=False),
    _core("Endpoints", "endpoints", True, "ep", status=False),
    _core("Event", "events", True, "ev", status=False),
    _core("LimitRange", "limitranges", True, "limits", status=False),
    _core("Namespace", "namespaces", False, "ns"),
    _core("Node", "nodes", False, "no"),
    _core("PersistentVolumeClaim", "persistentvolumeclaims", True, "pvc"),
    _core("PersistentVolume", "persistentvolumes", False, "pv"),
    _core("Pod", "pods", True, "po"),
    _core("ReplicationController", "replicationcontrollers", True, "rc"),
    _core("ResourceQuota", "resourcequotas", True, "quota"),
    _core("Secret", "secrets", True, status=False),
    _core("ServiceAccount", "serviceaccounts", True, "sa", status=False),
    _core("Service", "services", True, "svc"),
    _grp("apps", "ControllerRevision", "controllerrevisions", True, status=False),
    _grp("apps", "DaemonSet", "daemonsets", True, "ds"),
    _grp("apps", "Deployment", "deployments", True, "deploy"),
    _grp("apps", "ReplicaSet", "replicasets", True, "rs"),
    _grp("apps", "StatefulSet", "statefulsets", True, "sts"),
    _grp("batch", "CronJob", "cronjobs", True, "cj"),
    _grp("batch", "Job", "jobs", True),
    _grp("coordination.k8s.io", "Lease", "leases", True, status=False),
    _grp("discovery.k8s.io", "EndpointSlice", "endpointslices", True, status=False),
    _grp("networking.k8s.io", "IngressClass", "ingressclasses", False, status=False),
    _grp("networking.k8s.io", "Ingress", "ingresses", True, "ing"),
    _grp("networking.k8s.io", "NetworkPolicy", "networkpolicies", True, "netpol", status=False),
    _grp("node.k8s.io", "RuntimeClass", "runtimeclasses", False, status=False),
    _grp("scheduling.k8s.io", "PriorityClass", "priorityclasses", False, "pc", status=False),
    _grp("storage.k8s.io", "StorageClass", "storageclasses", False, "sc", status=False),
    _grp("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", False, "crd", "crds"),
)
_BUILTIN_KEYS = {(r.group, r.version, r.kind) for r in STANDARD}

# The order in which the real apiserver lists its built-in groups in /apis (a subset).
GROUP_ORDER = (
    "apps",
    "batch",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` → (``apps``, ``v1``); ``v1`` → (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def guess_plural(kind: str) -> str:
    """The English plural the CRD generators use (``Policy`` → ``policies``, ``Mesh`` → ``meshes``)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


@dataclass
class ResourceRegistry:
    """Every resource served, looked up by (group, version, plural) or (apiVersion, kind)."""

    types: list[ResourceType] = field(default_factory=lambda: list(STANDARD))

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rtype in self.types:
            if rtype.group == group and rtype.version == version and rtype.plural == plural:
                return rtype
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, version = split_api_version(api_version)
        for rtype in self.types:
            if rtype.group == group and rtype.version == version and rtype.kind == kind:
                return rtype
        return None

    def by_plural(self, plural: str) -> list[ResourceType]:
        return [r for r in self.types if r.plural == plural]

    def add(self, rtype: ResourceType) -> ResourceType:
        existing = self.by_kind(rtype.api_version, rtype.kind)
        if existing is not None:
            return existing
        self.types.append(rtype)
        return rtype

    def add_crd(self, crd: dict[str, object]) -> list[ResourceType]:
        """Register the served versions of a CustomResourceDefinition object."""
        spec = crd.get("spec")
        if not isinstance(spec, dict):
            raise ValueError("CustomResourceDefinition has no spec")
        names = spec.get("names") or {}
        group = spec.get("group")
        kind = names.get("kind") if isinstance(names, dict) else None
        if not isinstance(group, str) or not isinstance(kind, str):
            raise ValueError("CustomResourceDefinition needs spec.group and spec.names.kind")
        plural = names.get("plural") or guess_plural(kind)
        short = tuple(names.get("shortNames") or ())
        categories = tuple(names.get("categories") or ())
        namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        added = []
        for version in spec.get("versions") or []:
            if isinstance(version, dict) and version.get("served", True) and isinstance(version.get("name"), str):
                subresources = version.get("subresources") or {}
                added.append(
                    self.add(
                        ResourceType(
                            group,
                            version["name"],
                            kind,
                            plural,
                            namespaced,
                            short,
                            categories,
                            "status" in subresources,
                        )
                    )
                )
        return added

    def groups(self) -> list[str]:
        """Named groups (not core), built-in ones in apiserver order, then custom ones sorted."""
        present = {r.group for r in self.types if r.group}
        builtin = [g for g in GROUP_ORDER if g in present]
        return builtin + sorted(present - set(builtin))

    def versions(self, group: str) -> list[str]:
        seen: list[str] = []
        for rtype in self.types:
            if rtype.group == group and rtype.version not in seen:
                seen.append(rtype.version)
        return seen

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return sorted((r for r in self.types if r.group == group and r.version == version), key=lambda r: r.plural)

    def all(self) -> Iterable[ResourceType]:
        return iter(self.types)
