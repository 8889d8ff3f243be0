"""The provider's side of a node: its capacity, the part of it that was down or cordoned, and
per period what tenants were billed on it against what sat idle.

These records belong to the provider (``tenant`` empty, kinds in :data:`PROVIDER_KINDS`), not
to a tenant: delivery skips them unless a destination asks for them; reports show them in the
capacity view and FOCUS exports them with null ``Allocated*`` columns.

* **Capacity** (kind ``NodeCapacity``) — every node from its creation, in the same units tenants
  are billed in: GPUs by SKU and sharing profile as :func:`~kubetally.sources.kubernetes.sku.gpu_share`
  values them (whole GPUs; each MIG profile as count × its fraction of a GPU; time-sliced
  replicas ÷ replicas), CPU cores and memory GiB from ``status.capacity``. A dedicated node's
  GPUs are its physical GPUs, exactly what its tenant is billed.
* **Down** (``NodeDown``) — the same quantities while the ``Ready`` condition is not ``True``,
  from its ``lastTransitionTime``; **cordoned** (``NodeCordoned``) while ``spec.unschedulable``,
  from the ``node.kubernetes.io/unschedulable`` taint's ``timeAdded``. Both are parts of the
  capacity, kept apart so downtime is visible and can be credited.
* **Idle** (``NodeIdle``) = capacity − allocated per node, period, item, SKU and profile, where
  allocated is what tenants were billed on that node (pod records labelled ``node``, and the
  dedicated node's own records). Never negative: when tenants were billed more than the node
  has (an over-committed time-sliced node) idle is 0 and the excess is an ``NodeOvercommit``
  record. So Σ tenants + idle − over-commit = capacity, exactly (every term is a record's
  Decimal usage).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from kubetally.periods import Period
from kubetally.record import PROVIDER_KINDS, UsageRecord
from kubetally.sources.kubernetes import items as it
from kubetally.sources.kubernetes.sku import gpu_share, hami_devices, is_gpu_resource

CAPACITY = "NodeCapacity"
DOWN = "NodeDown"
CORDONED = "NodeCordoned"
IDLE = "NodeIdle"
OVERCOMMIT = "NodeOvercommit"
assert frozenset({CAPACITY, DOWN, CORDONED, IDLE, OVERCOMMIT}) == PROVIDER_KINDS

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

_DIMENSIONS = (it.GPU_SKU, it.GPU_PROFILE, it.BILLING_MODE, it.CAPACITY_TYPE)


def gpu_capacity(
    capacity: Mapping[str, str], model: Any, sharing: Any, annotations: Mapping[str, str], physical: int
) -> dict[str, Fraction]:
    """GPUs per sharing profile ("" for whole GPUs), valued like a pod's request of the same
    resource, so a node's capacity and its pods' shares are in one unit per profile."""
    if hami_devices(dict(annotations)):
        return {"vgpu": Fraction(physical)} if physical else {}
    out: dict[str, Fraction] = {}
    for resource, value in sorted(capacity.items()):
        if not is_gpu_resource(resource):
            continue
        try:
            count = Fraction(int(str(value)))
        except ValueError:
            continue
        if count <= 0:
            continue
        share, _problem = gpu_share(resource, count, model, sharing)
        profile = share.profile or ""
        out[profile] = out.get(profile, Fraction(0)) + share.gpus
    return out


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def ready_state(node: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(Ready, when the Ready condition last changed). A node with no Ready condition yet is
    counted as up: the kubelet has not reported, the control plane has not said it is down."""
    status = _mapping(node.get("status"))
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return str(condition.get("status")) == "True", condition.get("lastTransitionTime")
    return True, None


def cordon_state(node: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(cordoned, when the unschedulable taint was added, if recorded)."""
    spec = _mapping(node.get("spec"))
    if not spec.get("unschedulable"):
        return False, None
    for taint in spec.get("taints") or []:
        if isinstance(taint, Mapping) and taint.get("key") == UNSCHEDULABLE_TAINT:
            return True, taint.get("timeAdded")
    return True, None


def slim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    """The node fields capacity reads, without the kubelet's heartbeats (which change every
    few seconds and would make every node update look like a change)."""
    spec, status = _mapping(node.get("spec")), _mapping(node.get("status"))
    out_spec: dict[str, Any] = {}
    if spec.get("unschedulable"):
        out_spec["unschedulable"] = True
        out_spec["taints"] = [
            {k: t[k] for k in ("key", "effect", "timeAdded") if k in t}
            for t in spec.get("taints") or []
            if isinstance(t, Mapping) and t.get("key") == UNSCHEDULABLE_TAINT
        ]
    conditions = [
        {k: c[k] for k in ("type", "status", "lastTransitionTime") if k in c}
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("type") == "Ready"
    ]
    return {"spec": out_spec, "conditions": conditions}


# -- idle and over-commit, per period --------------------------------------------------------------


def _match_key(record: UsageRecord) -> tuple[str, str, str]:
    return (record.item, record.labels.get(it.GPU_SKU, ""), record.labels.get(it.GPU_PROFILE, ""))


def idle_records(records: Iterable[UsageRecord]) -> list[UsageRecord]:
    """Idle and over-commit records of one period from its capacity and tenant records."""
    records = list(records)
    capacity: dict[tuple[str, tuple[str, str, str]], UsageRecord] = {}
    for rec in records:
        if rec.kind == CAPACITY:
            capacity[(rec.name, _match_key(rec))] = rec
    if not capacity:
        return []
    allocated: dict[tuple[str, tuple[str, str, str]], Decimal] = {}
    for rec in records:
        if rec.kind == it.POD:
            node = rec.labels.get(it.NODE_NAME, "")
        elif rec.kind == it.NODE and rec.tenant:
            node = rec.name
        else:
            continue
        key = (node, _match_key(rec))
        if rec.kind == it.NODE and rec.item == it.GPU_HOURS:
            key = (node, (rec.item, rec.labels.get(it.GPU_SKU, ""), ""))  # dedicated: whole GPUs
        if node and key in capacity:
            allocated[key] = allocated.get(key, Decimal(0)) + rec.usage
    out = []
    for key, cap in sorted(capacity.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        used = allocated.get(key, Decimal(0))
        for kind, amount in ((IDLE, cap.usage - used), (OVERCOMMIT, used - cap.usage)):
            if amount > 0:
                out.append(_derived(cap, kind, amount))
    return out


def _derived(cap: UsageRecord, kind: str, usage: Decimal) -> UsageRecord:
    dims = {k: cap.labels[k] for k in _DIMENSIONS if k in cap.labels}
    extra = {k: v for k, v in cap.labels.items() if k not in dims}
    return UsageRecord.measure(
        cluster=cap.cluster,
        kind=kind,
        category=cap.category,
        item=cap.item,
        name=cap.name,
        period_kind=cap.period,
        period=_period_of(cap),
        usage=usage,
        unit=cap.unit,
        dimensions=dims,
        labels=extra,
    )


def _period_of(rec: UsageRecord) -> Period:
    return Period(rec.start, rec.start + rec.period.length)


__all__ = [
    "CAPACITY",
    "CORDONED",
    "DOWN",
    "IDLE",
    "OVERCOMMIT",
    "PROVIDER_KINDS",
    "cordon_state",
    "gpu_capacity",
    "idle_records",
    "ready_state",
    "slim_node",
]
