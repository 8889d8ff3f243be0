"""Capacity type of a node (on-demand, spot, preemptible, reserved) from cloud and Karpenter labels.

The capacity type is a *dimension* of usage (a record label the price book can price), never a
discount applied to the quantity: vBilling v0.1's ``SPOT_DISCOUNT_PERCENT`` multiplied CPU hours by
a spot fraction, which made the metered quantity depend on a pricing decision. Here an hour on a
spot node is an hour, labelled ``capacity_type=spot``.
"""

from __future__ import annotations

from collections.abc import Mapping

ON_DEMAND = "on-demand"
SPOT = "spot"
PREEMPTIBLE = "preemptible"
RESERVED = "reserved"
CAPACITY_TYPES = (ON_DEMAND, SPOT, PREEMPTIBLE, RESERVED)

_TRUE = {"true", "1", "yes"}
#: Raw label values (lowercased) → canonical type.
_VALUES: dict[str, str] = {
    "on-demand": ON_DEMAND,
    "ondemand": ON_DEMAND,
    "on_demand": ON_DEMAND,
    "normal": ON_DEMAND,
    "regular": ON_DEMAND,
    "standard": ON_DEMAND,
    "dedicated": ON_DEMAND,
    "spot": SPOT,
    "preemptible": PREEMPTIBLE,
    "preemptable": PREEMPTIBLE,
    "reserved": RESERVED,
    "capacity_block": RESERVED,
    "capacity-block": RESERVED,
    "capacity-reservation": RESERVED,
}
#: Labels whose value names the capacity type, most specific first (after the operator's own).
_VALUE_LABELS = (
    "karpenter.sh/capacity-type",
    "eks.amazonaws.com/capacityType",
    "kubernetes.azure.com/scalesetpriority",
    "cloud.google.com/gke-provisioning",
    "node.kubernetes.io/lifecycle",
    "kubernetes.io/lifecycle",
)
#: Labels that mark a type when their value is "true".
_FLAG_LABELS = (
    ("cloud.google.com/gke-spot", SPOT),
    ("cloud.google.com/gke-preemptible", PREEMPTIBLE),
)


def capacity_type(labels: Mapping[str, str], *, override_label: str | None = None) -> tuple[str, str]:
    """(canonical type, raw value it came from). No label at all means on-demand (raw "").

    An unrecognised value is reported as on-demand with its raw value kept, so the caller can
    label the record with it and warn once, instead of inventing a new price dimension."""
    keys = ((override_label,) if override_label else ()) + _VALUE_LABELS
    for key in keys:
        raw = str(labels.get(key) or "").strip()
        if raw:
            return _VALUES.get(raw.lower(), ON_DEMAND), raw
    for key, kind in _FLAG_LABELS:
        raw = str(labels.get(key) or "").strip()
        if raw.lower() in _TRUE:
            return kind, raw
    return ON_DEMAND, ""


def is_recognised(raw: str) -> bool:
    return not raw or raw.lower() in _VALUES or raw.lower() in _TRUE
