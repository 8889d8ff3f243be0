"""From one Kubernetes object to what it holds for whom, and since when: a :class:`Presence`.

This module knows the object shapes (Node, Pod, PVC, Service) and nothing about time passing:
it reads the timestamps the objects carry (creation, container start and finish, condition
transitions, deletion) and says what is billable *now*. The tracker turns successive presences
into journal segments; the meter integrates segments over periods.

Rules, each from the issue and the vBilling v0.2 study:

* A **dedicated node** (assigned to a tenant by label) is billed whole from its capacity: node
  hours, CPU cores, memory GiB and physical GPUs, from ``creationTimestamp`` (a node joining at
  10:17:23 is billed from 10:17:23). Pods on it are not billed again.
* A **tenant pod on a shared node** is billed by its effective requests (the scheduler's rule:
  max of the app containers plus sidecars and of each init container, plus pod overhead) from its
  first container start to its last container finish, so image pulls and pending time are free.
  GPUs are counted as physical GPUs: MIG slices and time-sliced replicas are fractions.
* A **vCluster control-plane pod** is not billed by requests (unless configured) but makes its
  vCluster accrue ``control_plane_hours`` while it is Ready; several replicas count once.
* A **PVC** is billed by its provisioned size while Bound, per storage class.
* A **LoadBalancer Service** is billed from the time it has an ingress address.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from kubetally.config.kubernetes import KubernetesConfig
from kubetally.periods import format_time, parse_time
from kubetally.sources.kubernetes import items as it
from kubetally.sources.kubernetes import provider
from kubetally.sources.kubernetes.capacity import capacity_type, is_recognised
from kubetally.sources.kubernetes.quantity import GIB, QuantityError, parse_quantity
from kubetally.sources.kubernetes.sku import (
    GFD_MEMORY,
    HAMI_CORES,
    HAMI_MEMORY,
    HAMI_MEMORY_PERCENT,
    HAMI_REGISTER,
    NVIDIA_GPU,
    GpuIdentity,
    GpuSharing,
    advertised_gpus,
    gpu_share,
    gpu_sharing,
    hami_devices,
    hami_share,
    identify_gpu,
    is_gpu_resource,
    parse_model,
    physical_gpus_from,
)
from kubetally.sources.kubernetes.tenancy import TenantResolver, labels_of

# Roles: one object can hold several independent presences (a control-plane pod both keeps its
# vCluster "up" and, if configured, holds requests).
HAMI_REGISTER_HINT = "hami.io/"
ROLE_NODE = "node"
ROLE_POD = "pod"
ROLE_CONTROL_PLANE = "control-plane"
ROLE_PVC = "pvc"
ROLE_LB = "lb"
#: The provider's presences of a node (see :mod:`kubetally.sources.kubernetes.provider`).
ROLE_CAPACITY = "capacity"
ROLE_DOWN = "down"
ROLE_CORDONED = "cordoned"

ROLES_BY_KIND = {
    "Node": (ROLE_NODE, ROLE_CAPACITY, ROLE_DOWN, ROLE_CORDONED),
    "Pod": (ROLE_POD, ROLE_CONTROL_PLANE),
    "PersistentVolumeClaim": (ROLE_PVC,),
    "Service": (ROLE_LB,),
}

#: A container's HAMi vGPUs, already turned into physical GPUs (see :func:`sku.hami_share`).
VGPU_KEY = "kubetally.io/vgpu"
#: Pod-level resources (``spec.resources``, Kubernetes >= 1.34) the scheduler honours.
POD_LEVEL_RESOURCES = ("cpu", "memory")

INSTANCE_TYPE_LABELS = (
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "nvidia.com/gpu.machine",
)


class ObjectError(ValueError):
    """An object lacks a field metering needs; the message names the object."""


@dataclass(frozen=True)
class Meter:
    """One metered quantity held per second of presence (e.g. 1/7 GPU, 2 cores, 1 node)."""

    category: str
    item: str
    quantity: Fraction
    dimensions: tuple[tuple[str, str], ...] = ()
    #: Overlapping presences of one record count once (control-plane replicas), not summed.
    union: bool = False
    #: Enrichment labels of this item only (e.g. the raw GPU product on GPU hours).
    labels: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "item": self.item,
            "quantity": f"{self.quantity.numerator}/{self.quantity.denominator}",
            "dimensions": dict(self.dimensions),
            "union": self.union,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Meter:
        return cls(
            data["category"],
            data["item"],
            Fraction(data["quantity"]),
            tuple(sorted(data.get("dimensions", {}).items())),
            bool(data.get("union", False)),
            tuple(sorted(data.get("labels", {}).items())),
        )


@dataclass(frozen=True)
class Billed:
    """The billable attributes of a presence: who pays, for which thing, what per second.

    Two presences with equal ``Billed`` are the same segment continuing; any change (a node
    re-assigned, a pod resized, a PVC expanded) ends one segment and starts another."""

    kind: str
    name: str
    namespace: str
    tenant: str
    project: str
    meters: tuple[Meter, ...]
    labels: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        """The journal's JSON of these attributes (sorted keys, no spaces, ASCII): its bytes are
        hashed into :attr:`signature`, so they never change. Written piece by piece, each
        meter's JSON once per shared tuple of meters (pods of one shape share theirs), because
        the first sync of a large cluster journals every pod; :meth:`reference_json` is the
        ``json.dumps`` it must equal (and what anything but strings falls back to)."""
        try:
            meters = _meters_json(self.meters)
            return (
                f'{{"kind":{_ascii(self.kind)},"labels":{_object(self.labels)},"meters":{meters},'
                f'"name":{_ascii(self.name)},"namespace":{_ascii(self.namespace)},"project":{_ascii(self.project)},'
                f'"tenant":{_ascii(self.tenant)}}}'
            )
        except TypeError:
            return self.reference_json()

    def reference_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "name": self.name,
                "namespace": self.namespace,
                "tenant": self.tenant,
                "project": self.project,
                "meters": [m.to_json() for m in self.meters],
                "labels": dict(self.labels),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Billed:
        data = json.loads(text)
        return cls(
            data["kind"],
            data["name"],
            data["namespace"],
            data["tenant"],
            data["project"],
            tuple(Meter.from_json(m) for m in data["meters"]),
            tuple(sorted(data["labels"].items())),
        )

    @property
    def signature(self) -> str:
        return signature_of(self.to_json())


#: ``json.dumps``'s own encoder of a string (ASCII, escaped); TypeError for anything else.
_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii
#: Meter tuple id → (the tuple, its JSON): holding the tuple keeps its id from being reused.
_METERS_JSON: dict[int, tuple[tuple[Meter, ...], str]] = {}


def _object(pairs: tuple[tuple[str, str], ...]) -> str:
    """``json.dumps(dict(pairs), sort_keys=True, separators=(",", ":"))`` of string pairs."""
    if not pairs:
        return "{}"
    return "{" + ",".join([f"{_ascii(k)}:{_ascii(v)}" for k, v in sorted(dict(pairs).items())]) + "}"


def _meters_json(meters: tuple[Meter, ...]) -> str:
    cached = _METERS_JSON.get(id(meters))
    if cached is not None and cached[0] is meters:
        return cached[1]
    parts = []
    for m in meters:
        if not isinstance(m.union, bool):
            raise TypeError("union")
        q = m.quantity
        parts.append(
            f'{{"category":{_ascii(m.category)},"dimensions":{_object(m.dimensions)},"item":{_ascii(m.item)},'
            f'"labels":{_object(m.labels)},"quantity":"{q.numerator}/{q.denominator}",'
            f'"union":{"true" if m.union else "false"}}}'
        )
    out = "[" + ",".join(parts) + "]"
    if len(_METERS_JSON) >= 10_000:
        _METERS_JSON.clear()
    _METERS_JSON[id(meters)] = (meters, out)
    return out


def signature_of(billed_json: str) -> str:
    """:attr:`Billed.signature` from the JSON already made (the journal writes both)."""
    return hashlib.blake2b(billed_json.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Presence:
    """What an object holds now, and the object's own evidence of when that began and ended.

    ``start_exact``: ``start`` dates *this* billable state (a container start, a Ready
    transition) rather than only the object's creation; the tracker trusts a non-exact start only
    the first time it ever sees the object."""

    role: str
    billed: Billed
    start: datetime | None
    start_exact: bool
    end: datetime | None = None
    #: When the *current* billed attributes took effect, if the object records it and it is
    #: later than ``start`` (a PVC resize written at 10:30): a tracked segment of other
    #: attributes changes there, not when the change is noticed.
    since: datetime | None = None
    #: Earlier closed stretches of the same billed state that the object still records (the
    #: run before a control plane's last restart), oldest first.
    past: tuple[tuple[datetime, datetime], ...] = ()
    #: What the object cannot tell (an earlier size with no trace); said once when the tracker
    #: has nothing of its own to fill the gap with.
    caveat: str = ""


@dataclass(frozen=True)
class NodeInfo:
    """What pods need to know about their node."""

    name: str
    gpu: GpuIdentity
    sharing: GpuSharing
    capacity_type: str
    capacity_raw: str
    instance_type: str
    dedicated_to: str = ""
    #: Memory of one physical GPU (MiB), for HAMi ``gpumem`` shares; None when unknown.
    gpu_memory_mib: int | None = None


_shape_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False).encode


def host_namespace(tenant_id: str) -> str:
    """The namespace a tenant id names (``vcluster/<ns>/<name>``, ``namespace/<ns>``), else ""."""
    kind, _, rest = tenant_id.partition("/")
    if kind == "vcluster":
        return rest.split("/", 1)[0]
    return rest if kind == "namespace" else ""


def _dims(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in values.items() if v))


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _count(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def describe(kind: str, obj: Mapping[str, Any]) -> str:
    """``Pod team-a/trainer-0`` — how messages name an object."""
    m = meta(obj)
    name = m.get("name") or "(no name)"
    return f"{kind} {m['namespace']}/{name}" if m.get("namespace") else f"{kind} {name}"


@dataclass
class Deriver:
    """Derives presences for the objects of one cluster, given tenancy and node knowledge."""

    config: KubernetesConfig
    resolver: TenantResolver
    nodes: Mapping[str, NodeInfo] = field(default_factory=dict)
    #: Receives one message per problem (already naming the object).
    warn: Callable[[str], None] = lambda message: None
    #: (what meters read of the node, pod resources JSON) → meters; see :meth:`_pod_meters`.
    _meters_by_shape: dict[tuple[object, str], tuple[Meter, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # -- helpers ---------------------------------------------------------------------------

    def _time(self, value: Any, what: str, obj_desc: str) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            return parse_time(str(value)).replace(microsecond=0)
        except ValueError:
            self.warn(f"{obj_desc}: {what} is not a time ({value!r}); ignored")
            return None

    def _quantity(self, value: Any, what: str, obj_desc: str) -> Fraction | None:
        try:
            quantity = parse_quantity(value)
        except QuantityError:
            self.warn(f"{obj_desc}: {what} is not a quantity ({value!r}); ignored")
            return None
        if quantity < 0:
            self.warn(f"{obj_desc}: {what} is negative ({value!r}); ignored")
            return None
        return quantity

    def created(self, kind: str, obj: Mapping[str, Any]) -> datetime | None:
        return self._time(meta(obj).get("creationTimestamp"), "metadata.creationTimestamp", describe(kind, obj))

    def deleted(self, kind: str, obj: Mapping[str, Any]) -> datetime | None:
        return self._time(meta(obj).get("deletionTimestamp"), "metadata.deletionTimestamp", describe(kind, obj))

    # -- nodes -----------------------------------------------------------------------------

    def node_info(self, node: Mapping[str, Any]) -> NodeInfo:
        labels = labels_of(node)
        name = str(meta(node).get("name") or "")
        capacity = {str(k): str(v) for k, v in _mapping(_mapping(node.get("status")).get("capacity")).items()}
        gpu = identify_gpu(labels, override_label=self.config.gpu_sku_label)
        devices = hami_devices(_strings(meta(node).get("annotations")))
        if gpu.model is None and not gpu.raw and devices:
            # A HAMi node without GFD labels: HAMi registers each device's model name.
            model = parse_model(devices[0].type, memory_mib=devices[0].memory_mib or None)
            if model is not None:
                gpu = GpuIdentity(model.sku, model, devices[0].type, HAMI_REGISTER)
        kind, raw = capacity_type(labels, override_label=self.config.capacity_type_label)
        if not is_recognised(raw):
            self.warn(
                f"Node {name}: capacity type {raw!r} not recognised; labelled on-demand "
                f"(set {self.config.capacity_type_label} to one of on-demand, spot, preemptible, reserved)"
            )
        tenant, problem = self.resolver.resolve_node(labels)
        if problem:
            self.warn(f"Node {name}: {problem}")
        instance = next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), "")
        return NodeInfo(
            name, gpu, gpu_sharing(labels, capacity), kind, raw, instance, tenant, self._gpu_memory(node, gpu)
        )

    def _gpu_memory(self, node: Mapping[str, Any], gpu: GpuIdentity) -> int | None:
        devices = hami_devices(_strings(meta(node).get("annotations")))
        if devices and devices[0].memory_mib:
            return devices[0].memory_mib
        labels = labels_of(node)
        try:
            return int(str(labels.get(GFD_MEMORY, "")).strip())
        except ValueError:
            return gpu.model.memory_gb * 1024 if gpu.model else None

    def node(self, node: Mapping[str, Any], info: NodeInfo | None = None) -> dict[str, Presence | None]:
        """A dedicated node's whole capacity; shared nodes hold nothing themselves. With
        ``capacity`` configured, every node also holds the provider's capacity presences."""
        info = info or self.node_info(node)
        out = self._provider(node, info)
        out[ROLE_NODE] = self._dedicated(node, info) if info.dedicated_to else None
        return out

    def _provider(self, node: Mapping[str, Any], info: NodeInfo) -> dict[str, Presence | None]:
        roles: dict[str, Presence | None] = {ROLE_CAPACITY: None, ROLE_DOWN: None, ROLE_CORDONED: None}
        if not self.config.capacity:
            return roles
        desc = describe("Node", node)
        capacity = {str(k): str(v) for k, v in _mapping(_mapping(node.get("status")).get("capacity")).items()}
        labels = labels_of(node)
        annotations = _strings(meta(node).get("annotations"))
        mode = dict(billing_mode=it.DEDICATED if info.dedicated_to else it.SHARED, capacity_type=info.capacity_type)
        meters: list[Meter] = []
        physical, _ = physical_gpus_from(
            labels,
            capacity,
            info.gpu.model,
            info.sharing,
            annotations=annotations,
            count_label=self.config.gpu_count_label,
        )
        if info.dedicated_to:
            gpus = {"": Fraction(physical)} if physical else {}
        else:
            gpus = provider.gpu_capacity(capacity, info.gpu.model, info.sharing, annotations, physical)
        for profile, quantity in sorted(gpus.items()):
            dims = _dims(gpu_sku=info.gpu.sku, gpu_profile=profile, **mode)
            meters.append(Meter(it.COMPUTE, it.GPU_HOURS, quantity, dims))
        cpu = self._quantity(capacity.get("cpu"), "status.capacity.cpu", desc) if "cpu" in capacity else None
        if cpu:
            meters.append(Meter(it.COMPUTE, it.CPU_CORE_HOURS, cpu, _dims(**mode)))
        memory = (
            self._quantity(capacity.get("memory"), "status.capacity.memory", desc) if "memory" in capacity else None
        )
        if memory:
            meters.append(Meter(it.COMPUTE, it.MEMORY_GIB_HOURS, memory / GIB, _dims(**mode)))
        if not meters:
            return roles
        enrich = _dims(node_sku=info.instance_type)

        def billed(kind: str) -> Billed:
            return Billed(kind, info.name, "", "", "", tuple(meters), enrich)

        created = self.created("Node", node)
        roles[ROLE_CAPACITY] = Presence(ROLE_CAPACITY, billed(provider.CAPACITY), created, False)
        ready, changed = provider.ready_state(node)
        since = self._time(changed, "Ready condition lastTransitionTime", desc)
        if not ready:
            roles[ROLE_DOWN] = Presence(ROLE_DOWN, billed(provider.DOWN), since or created, since is not None)
        elif since is not None:
            # Ready again: a down stretch still open ends when the condition says it did.
            roles[ROLE_DOWN] = Presence(ROLE_DOWN, billed(provider.DOWN), None, False, end=since)
        cordoned, added = provider.cordon_state(node)
        if cordoned:
            at = self._time(added, "unschedulable taint timeAdded", desc)
            roles[ROLE_CORDONED] = Presence(ROLE_CORDONED, billed(provider.CORDONED), at or created, at is not None)
        return roles

    def _dedicated(self, node: Mapping[str, Any], info: NodeInfo) -> Presence:
        desc = describe("Node", node)
        capacity = {str(k): str(v) for k, v in _mapping(_mapping(node.get("status")).get("capacity")).items()}
        labels = labels_of(node)
        mode = dict(billing_mode=it.DEDICATED, capacity_type=info.capacity_type)
        meters = [
            Meter(it.COMPUTE, it.NODE_HOURS, Fraction(1), _dims(node_sku=info.instance_type or "unknown", **mode))
        ]
        cpu = self._quantity(capacity.get("cpu"), "status.capacity.cpu", desc) if "cpu" in capacity else None
        if cpu:
            meters.append(Meter(it.COMPUTE, it.CPU_CORE_HOURS, cpu, _dims(**mode)))
        memory = (
            self._quantity(capacity.get("memory"), "status.capacity.memory", desc) if "memory" in capacity else None
        )
        if memory:
            meters.append(Meter(it.COMPUTE, it.MEMORY_GIB_HOURS, memory / GIB, _dims(**mode)))
        gpus, source = physical_gpus_from(
            labels,
            capacity,
            info.gpu.model,
            info.sharing,
            annotations=_strings(m.get("annotations")) if (m := meta(node)) else {},
            count_label=self.config.gpu_count_label,
        )
        advertised = advertised_gpus(capacity)
        if advertised and advertised != gpus:
            self.warn(
                f"Node {info.name}: advertises {advertised} GPU devices but has {gpus} physical GPUs "
                f"(from {source}); billed {gpus} to {info.dedicated_to}"
            )
        elif (
            advertised
            and source == "capacity"
            and (labels.get("gpu") == "on" or HAMI_REGISTER_HINT in str(meta(node).get("annotations")))
        ):
            self.warn(
                f"Node {info.name}: advertises {advertised} GPU devices and looks like a HAMi node, but no "
                f"physical GPU count is recorded (nvidia.com/gpu.count, hami.io/node-nvidia-register or "
                f"{self.config.gpu_count_label}); billed {gpus}"
            )
        if gpus:
            meters.append(
                Meter(
                    it.COMPUTE,
                    it.GPU_HOURS,
                    Fraction(gpus),
                    _dims(gpu_sku=info.gpu.sku, **mode),
                    labels=_dims(gpu_product=info.gpu.raw),
                )
            )
        namespace = host_namespace(info.dedicated_to)
        enrich = _dims(capacity_type_raw=info.capacity_raw if not is_recognised(info.capacity_raw) else "")
        billed = Billed(
            it.NODE,
            info.name,
            namespace,
            info.dedicated_to,
            self.resolver.project(info.dedicated_to, namespace),
            tuple(meters),
            enrich,
        )
        return Presence(ROLE_NODE, billed, self.created("Node", node), False)

    # -- pods ------------------------------------------------------------------------------

    def _requests(self, container: Mapping[str, Any], desc: str) -> dict[str, Fraction]:
        resources = _mapping(container.get("resources"))
        requests = dict(_mapping(resources.get("requests")))
        # The apiserver defaults a missing request to the limit (always so for extended
        # resources such as GPUs); do the same for objects that show only limits.
        for key, value in _mapping(resources.get("limits")).items():
            requests.setdefault(key, value)
        out: dict[str, Fraction] = {}
        for key, value in requests.items():
            quantity = self._quantity(value, f"container {container.get('name')!r} request {key}", desc)
            if quantity:
                out[str(key)] = quantity
        return out

    def _vgpu(self, requests: dict[str, Fraction], memory_mib: int | None, desc: str) -> dict[str, Fraction]:
        """A container's HAMi vGPUs as physical GPUs (``VGPU_KEY``): ``nvidia.com/gpu`` devices
        times the share each holds (:func:`sku.hami_share`). The share resources themselves are
        not billed."""
        hami = {key: requests.pop(key) for key in (HAMI_CORES, HAMI_MEMORY, HAMI_MEMORY_PERCENT) if key in requests}
        if not hami or NVIDIA_GPU not in requests:
            return requests
        share, _profile, problem = hami_share(hami, memory_mib)
        if problem:
            self.warn(f"{desc}: {problem}")
        if share is not None:
            requests[VGPU_KEY] = requests.pop(NVIDIA_GPU) * share
        return requests

    def effective_requests(self, pod: Mapping[str, Any], gpu_memory_mib: int | None = None) -> dict[str, Fraction]:
        """The scheduler's effective pod request: max(app containers + sidecars, each init
        container + the sidecars started before it), with pod-level ``spec.resources``
        (Kubernetes >= 1.34) replacing the container sum for the resources it sets, + overhead."""
        spec = _mapping(pod.get("spec"))
        desc = describe("Pod", pod)
        total: dict[str, Fraction] = {}
        for container in _list(spec.get("containers")):
            for key, value in self._vgpu(self._requests(_mapping(container), desc), gpu_memory_mib, desc).items():
                total[key] = total.get(key, Fraction(0)) + value
        sidecars: dict[str, Fraction] = {}
        init_peak: dict[str, Fraction] = {}
        for container in _list(spec.get("initContainers")):
            requests = self._vgpu(self._requests(_mapping(container), desc), gpu_memory_mib, desc)
            if _mapping(container).get("restartPolicy") == "Always":
                for key, value in requests.items():
                    sidecars[key] = sidecars.get(key, Fraction(0)) + value
                continue
            for key in set(requests) | set(sidecars):
                value = requests.get(key, Fraction(0)) + sidecars.get(key, Fraction(0))
                init_peak[key] = max(init_peak.get(key, Fraction(0)), value)
        for key, value in sidecars.items():
            total[key] = total.get(key, Fraction(0)) + value
        effective = {
            key: max(total.get(key, Fraction(0)), init_peak.get(key, Fraction(0)))
            for key in set(total) | set(init_peak)
        }
        # Pod-level resources: the apiserver defaults a missing pod-level request to its limit,
        # and the scheduler then takes the pod-level value instead of the containers' sum.
        pod_level = _mapping(spec.get("resources"))
        pod_requests = dict(_mapping(pod_level.get("requests")))
        for key, value in _mapping(pod_level.get("limits")).items():
            pod_requests.setdefault(key, value)
        for key, value in pod_requests.items():
            if str(key) not in POD_LEVEL_RESOURCES:
                continue
            quantity = self._quantity(value, f"spec.resources request {key}", desc)
            if quantity is not None:
                effective[str(key)] = quantity
        for key, value in _mapping(spec.get("overhead")).items():
            quantity = self._quantity(value, f"spec.overhead {key}", desc)
            if quantity:
                effective[str(key)] = effective.get(str(key), Fraction(0)) + quantity
        return effective

    def run_window(self, pod: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
        """(first container start, last container finish); the finish only once the pod is
        done (phase Succeeded/Failed), since a restarting container still holds its requests."""
        status = _mapping(pod.get("status"))
        desc = describe("Pod", pod)
        statuses = [
            _mapping(s) for s in _list(status.get("containerStatuses")) + _list(status.get("initContainerStatuses"))
        ]
        starts: list[datetime] = []
        finishes: list[datetime] = []
        for cs in statuses:
            state, last = _mapping(cs.get("state")), _mapping(cs.get("lastState"))
            for source, key in (
                (state.get("running"), "startedAt"),
                (state.get("terminated"), "startedAt"),
                (last.get("terminated"), "startedAt"),
            ):
                moment = self._time(_mapping(source).get(key), f"container {cs.get('name')!r} {key}", desc)
                if moment is not None:
                    starts.append(moment)
            finished = self._time(
                _mapping(state.get("terminated")).get("finishedAt"), f"container {cs.get('name')!r} finishedAt", desc
            )
            if finished is not None:
                finishes.append(finished)
        start = min(starts) if starts else None
        restarts = sum(_count(cs.get("restartCount")) for cs in statuses)
        if start is not None and restarts:
            # A restarted container's first start is gone from the status (only the last run and
            # the one before are kept); the pod has held its requests since the kubelet started
            # it, which status.startTime records.
            since = self._time(status.get("startTime"), "status.startTime", desc)
            if since is not None and since < start:
                start = since
        if start is None and status.get("phase") in ("Running", "Succeeded", "Failed"):
            # The pod ran but shows no container status (trimmed or garbage object): bill it from
            # when the kubelet accepted it rather than lose it, and say so.
            start = self._time(status.get("startTime"), "status.startTime", desc)
            if start is not None:
                self.warn(
                    f"{desc}: phase {status.get('phase')} without container start times; billed from status.startTime"
                )
            else:
                self.warn(
                    f"{desc}: phase {status.get('phase')} without container start times or "
                    "status.startTime; not billed until a start time is visible"
                )
        end = None
        if status.get("phase") in ("Succeeded", "Failed") and start is not None:
            if finishes:
                end = max(finishes)
            else:
                transitions = [
                    self._time(_mapping(c).get("lastTransitionTime"), "condition time", desc)
                    for c in _list(status.get("conditions"))
                ]
                known = [t for t in transitions if t is not None]
                end = max(known) if known else None
            if end is not None and end < start:
                end = start
        return start, end

    def _ready(self, pod: Mapping[str, Any]) -> tuple[bool, datetime | None]:
        for condition in _list(_mapping(pod.get("status")).get("conditions")):
            condition = _mapping(condition)
            if condition.get("type") == "Ready":
                moment = self._time(
                    condition.get("lastTransitionTime"), "Ready lastTransitionTime", describe("Pod", pod)
                )
                return condition.get("status") == "True", moment
        return False, None

    def pod(self, pod: Mapping[str, Any]) -> dict[str, Presence | None]:
        out: dict[str, Presence | None] = {ROLE_POD: None, ROLE_CONTROL_PLANE: None}
        m = meta(pod)
        namespace, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        labels = labels_of(pod)
        resolution = self.resolver.resolve(namespace, labels)
        if resolution.problem:
            self.warn(f"{describe('Pod', pod)}: {resolution.problem}")
        if not resolution.tenant:
            return out
        start, end = self.run_window(pod)
        if resolution.control_plane:
            out[ROLE_CONTROL_PLANE] = self._control_plane(pod, resolution.tenant, resolution.project, end)
            if not self.config.tenancy.meter_control_plane:
                return out
        node_name = str(_mapping(pod.get("spec")).get("nodeName") or "")
        node = self.nodes.get(node_name)
        if node is not None and node.dedicated_to:
            if node.dedicated_to != resolution.tenant and start is not None:
                self.warn(
                    f"{describe('Pod', pod)} of tenant {resolution.tenant} runs on node {node_name}, dedicated to "
                    f"tenant {node.dedicated_to}: its time is billed to {node.dedicated_to} (the node), "
                    f"not to {resolution.tenant}"
                )
            return out  # the dedicated node is billed whole; its pods are not billed again
        if start is None:
            return out
        meters = self._pod_meters(pod, node)
        if not meters:
            return out
        enrich = _dims(node=node_name, node_sku=node.instance_type if node else "")
        billed = Billed(it.POD, name, namespace, resolution.tenant, resolution.project, meters, enrich)
        out[ROLE_POD] = Presence(ROLE_POD, billed, start, True, end)
        return out

    def _pod_meters(self, pod: Mapping[str, Any], node: NodeInfo | None) -> tuple[Meter, ...]:
        """A pod's meters, shared by every pod of the same shape on the same kind of node.

        A GPU cloud runs the same few pod specs on many nodes, so deriving requests (quantity
        parsing, exact fractions, GPU shares) once per (resources, kind of node) instead of once per pod
        is most of the derivation's time at 100k pods. A shape whose derivation warns is never
        cached: its warning names the pod, so every such pod is derived (and named) again."""
        spec = _mapping(pod.get("spec"))
        try:
            key = (
                (node.gpu, node.sharing, node.capacity_type, node.gpu_memory_mib) if node else None,
                _shape_json(
                    (spec.get("containers"), spec.get("initContainers"), spec.get("overhead"), spec.get("resources"))
                ),
            )
            cached = self._meters_by_shape.get(key)
        except (TypeError, ValueError):  # not JSON, or an unhashable node: derive it plainly
            return self._pod_meters_of(pod, node)
        if cached is not None:
            return cached
        said: list[str] = []
        warn = self.warn

        def counted(message: str) -> None:
            said.append(message)
            warn(message)

        self.warn = counted
        try:
            meters = self._pod_meters_of(pod, node)
        finally:
            self.warn = warn
        if not said:
            if len(self._meters_by_shape) >= 10_000:
                self._meters_by_shape.clear()
            self._meters_by_shape[key] = meters
        return meters

    def _pod_meters_of(self, pod: Mapping[str, Any], node: NodeInfo | None) -> tuple[Meter, ...]:
        requests = self.effective_requests(pod, node.gpu_memory_mib if node else None)
        capacity = node.capacity_type if node else "on-demand"
        mode = dict(billing_mode=it.SHARED, capacity_type=capacity)
        gpu_totals: dict[tuple[tuple[str, str], ...], Fraction] = {}
        for resource, count in sorted(requests.items()):
            if resource == VGPU_KEY and count > 0:
                dims = _dims(gpu_sku=node.gpu.sku if node else "unknown", gpu_profile="vgpu", **mode)
                gpu_totals[dims] = gpu_totals.get(dims, Fraction(0)) + count
                continue
            if not is_gpu_resource(resource) or count <= 0:
                continue
            if node is None:
                node_name = str(_mapping(pod.get("spec")).get("nodeName") or "")
                self.warn(
                    f"{describe('Pod', pod)}: requests {resource} but its node {node_name or '(none)'} "
                    "is unknown; GPU SKU unknown"
                )
            model = node.gpu.model if node else None
            sharing = node.sharing if node else GpuSharing()
            share, problem = gpu_share(resource, count, model, sharing)
            if problem:
                self.warn(f"{describe('Pod', pod)} on node {node.name if node else '?'}: {problem}")
            dims = _dims(gpu_sku=node.gpu.sku if node else "unknown", gpu_profile=share.profile or "", **mode)
            gpu_totals[dims] = gpu_totals.get(dims, Fraction(0)) + share.gpus
        raw = _dims(gpu_product=node.gpu.raw) if node else ()
        meters = [Meter(it.COMPUTE, it.GPU_HOURS, qty, dims, labels=raw) for dims, qty in sorted(gpu_totals.items())]
        if requests.get("cpu"):
            meters.append(Meter(it.COMPUTE, it.CPU_CORE_HOURS, requests["cpu"], _dims(**mode)))
        if requests.get("memory"):
            meters.append(Meter(it.COMPUTE, it.MEMORY_GIB_HOURS, requests["memory"] / GIB, _dims(**mode)))
        return tuple(meters)

    def _control_plane(
        self, pod: Mapping[str, Any], tenant: str, project: str, pod_end: datetime | None
    ) -> Presence | None:
        m = meta(pod)
        namespace = str(m.get("namespace") or "")
        vcluster = tenant.rsplit("/", 1)[-1]
        billed = Billed(
            it.VIRTUAL_CLUSTER,
            vcluster,
            namespace,
            tenant,
            project,
            (Meter(it.PLATFORM, it.CONTROL_PLANE_HOURS, Fraction(1), union=True),),
        )
        ready, since = self._ready(pod)
        if pod_end is not None:
            return Presence(ROLE_CONTROL_PLANE, billed, None, True, pod_end)
        if ready:
            past, caveat = self._run_before_restart(pod, since)
            return Presence(
                ROLE_CONTROL_PLANE,
                billed,
                since or self.created("Pod", pod),
                since is not None,
                past=past,
                caveat=caveat,
            )
        if since is not None:  # became unready at `since`: ends an open segment exactly there
            return Presence(ROLE_CONTROL_PLANE, billed, None, True, since)
        return None

    def _run_before_restart(
        self, pod: Mapping[str, Any], ready_since: datetime | None
    ) -> tuple[tuple[tuple[datetime, datetime], ...], str]:
        """The run a restarted control plane had before its last restart, as the container
        status keeps it (``lastState.terminated``): up from its start to its finish, down from
        there until Ready again. Only the last restart is kept; earlier outages are a caveat."""
        if ready_since is None:
            return (), ""
        desc = describe("Pod", pod)
        runs: list[tuple[datetime, datetime]] = []
        restarts = 0
        for cs in _list(_mapping(pod.get("status")).get("containerStatuses")):
            cs = _mapping(cs)
            restarts = max(restarts, _count(cs.get("restartCount")))
            last = _mapping(_mapping(cs.get("lastState")).get("terminated"))
            began = self._time(last.get("startedAt"), "lastState.terminated.startedAt", desc)
            ended = self._time(last.get("finishedAt"), "lastState.terminated.finishedAt", desc)
            if began is not None and ended is not None and began <= ended < ready_since:
                runs.append((began, ended))
        if not runs:
            return (), ""
        began, ended = max(runs, key=lambda run: run[1])
        caveat = ""
        if restarts > 1:
            caveat = (
                f"{desc}: restarted {restarts} times; the pod records only its last outage "
                f"({format_time(ended)} to {format_time(ready_since)}), earlier ones are billed as up"
            )
        return ((began, ended),), caveat

    # -- PVCs and Services -----------------------------------------------------------------

    def pvc(self, pvc: Mapping[str, Any]) -> dict[str, Presence | None]:
        m = meta(pvc)
        namespace, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        status, spec = _mapping(pvc.get("status")), _mapping(pvc.get("spec"))
        if status.get("phase") != "Bound":
            return {ROLE_PVC: None}
        resolution = self.resolver.resolve(namespace, labels_of(pvc))
        if resolution.problem:
            self.warn(f"{describe('PersistentVolumeClaim', pvc)}: {resolution.problem}")
        if not resolution.tenant or (resolution.control_plane and not self.config.tenancy.meter_control_plane):
            return {ROLE_PVC: None}
        desc = describe("PersistentVolumeClaim", pvc)
        raw_size = _mapping(status.get("capacity")).get("storage") or _mapping(
            _mapping(spec.get("resources")).get("requests")
        ).get("storage")
        size = self._quantity(raw_size, "status.capacity.storage", desc) if raw_size is not None else None
        if not size:
            if raw_size is None:
                self.warn(f"{desc}: Bound but no status.capacity.storage or spec.resources.requests.storage")
            return {ROLE_PVC: None}
        annotations = _mapping(m.get("annotations"))
        storage_class = str(
            spec.get("storageClassName") or annotations.get("volume.beta.kubernetes.io/storage-class") or "none"
        )
        meters = (Meter(it.STORAGE, it.STORAGE_GIB_HOURS, size / GIB, _dims(storage_class=storage_class)),)
        billed = Billed(it.PVC, name, namespace, resolution.tenant, resolution.project, meters)
        bound = self._status_written(pvc, "PersistentVolumeClaim", "f:phase")
        sized = self._status_written(pvc, "PersistentVolumeClaim", "f:capacity")
        start = bound or self.created("PersistentVolumeClaim", pvc)
        since, caveat = None, ""
        if sized is not None and start is not None and sized > start:
            since = sized
            caveat = (
                f"{desc}: its size changed to {raw_size} at {format_time(sized)} (managedFields); the size "
                f"before is not recorded in the object, so {raw_size} is billed from {format_time(start)}. "
                "Run the agent, or collect every period, to meter resizes exactly"
            )
        return {ROLE_PVC: Presence(ROLE_PVC, billed, start, bound is not None, since=since, caveat=caveat)}

    def _status_written(self, obj: Mapping[str, Any], kind: str, field_name: str) -> datetime | None:
        """When ``status.<field>`` was last written: the time of the managedFields entry that owns
        it (the controller's status update). A field is owned by its last writer only, so this
        dates the current value (the bind for ``f:phase``, the last resize for ``f:capacity``)."""
        for entry in _list(meta(obj).get("managedFields")):
            entry = _mapping(entry)
            status = _mapping(_mapping(entry.get("fieldsV1")).get("f:status"))
            if field_name in status:
                return self._time(entry.get("time"), "managedFields time", describe(kind, obj))
        return None

    def _ingress_since(self, svc: Mapping[str, Any]) -> datetime | None:
        """When the load balancer address was written: the managedFields entry owning
        ``status.loadBalancer.ingress`` (the cloud controller's status update)."""
        for entry in _list(meta(svc).get("managedFields")):
            entry = _mapping(entry)
            fields = _mapping(_mapping(_mapping(entry.get("fieldsV1")).get("f:status")).get("f:loadBalancer"))
            if "f:ingress" in fields:
                return self._time(entry.get("time"), "managedFields time", describe("Service", svc))
        return None

    def service(self, svc: Mapping[str, Any]) -> dict[str, Presence | None]:
        m = meta(svc)
        namespace, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        spec, status = _mapping(svc.get("spec")), _mapping(svc.get("status"))
        ingress = _list(_mapping(status.get("loadBalancer")).get("ingress"))
        if spec.get("type") != "LoadBalancer" or not ingress:
            return {ROLE_LB: None}
        resolution = self.resolver.resolve(namespace, labels_of(svc))
        if resolution.problem:
            self.warn(f"{describe('Service', svc)}: {resolution.problem}")
        if not resolution.tenant or (resolution.control_plane and not self.config.tenancy.meter_control_plane):
            return {ROLE_LB: None}
        billed = Billed(
            it.SERVICE,
            name,
            namespace,
            resolution.tenant,
            resolution.project,
            (Meter(it.NETWORK, it.LB_HOURS, Fraction(1)),),
        )
        since = self._ingress_since(svc)
        start = since or self.created("Service", svc)
        return {ROLE_LB: Presence(ROLE_LB, billed, start, since is not None)}

    # -- dispatch --------------------------------------------------------------------------

    def derive(self, kind: str, obj: Mapping[str, Any]) -> dict[str, Presence | None]:
        if kind == "Node":
            return self.node(obj)
        if kind == "Pod":
            return self.pod(obj)
        if kind == "PersistentVolumeClaim":
            return self.pvc(obj)
        if kind == "Service":
            return self.service(obj)
        raise ValueError(f"no presences for kind {kind}")
