"""The meter (intervals ∩ period → exact hours), quantities and capacity types, without a cluster."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from kubetally.periods import Period, PeriodKind, parse_time
from kubetally.sources.kubernetes.capacity import capacity_type
from kubetally.sources.kubernetes.lifetimes import Billed, Meter
from kubetally.sources.kubernetes.meter import Segment, exact_hours, meter_period
from kubetally.sources.kubernetes.quantity import QuantityError, parse_count, parse_quantity

HOUR = Period(parse_time("2026-11-02T10:00:00Z"), parse_time("2026-11-02T11:00:00Z"))


def at(hhmmss: str) -> object:
    return parse_time(f"2026-11-02T{hhmmss}Z")


def billed(name: str, *meters: Meter, tenant: str = "vcluster/ns/a") -> Billed:
    return Billed("Pod", name, "ns", tenant, "", tuple(meters))


def gpu(quantity: Fraction, **dims: str) -> Meter:
    return Meter("compute", "gpu_hours", quantity, tuple(sorted(dims.items())))


def test_exact_hours_rounds_half_even_once() -> None:
    assert exact_hours(3600) == Decimal("1")
    assert exact_hours(1) == Decimal("0.000277778")  # 1/3600 = 0.000277777…8 → up
    # 1/7 GPU for one hour = 0.142857142857… h → 0.142857143
    assert exact_hours(Fraction(3600, 7)) == Decimal("0.142857143")
    # Exactly half a unit in the last place rounds to even: 0.0000000005 h = 1.8e-6 s.
    assert exact_hours(Fraction(18, 10**7)) == Decimal("0")
    assert exact_hours(Fraction(54, 10**7)) == Decimal("0.000000002")


def test_segments_are_integrated_to_the_second_and_split_never_drifts() -> None:
    slice_ = gpu(Fraction(1, 7), gpu_sku="nvidia-h100-sxm-80gb", gpu_profile="1g.10gb")
    whole = [Segment("u1", "pod", billed("p", slice_), at("10:00:00"), at("10:59:59"))]
    # The same lifetime cut into three segments (e.g. re-attributions with the same attributes).
    pieces = [
        Segment("u1", "pod", billed("p", slice_), at("10:00:00"), at("10:20:00")),
        Segment("u1", "pod", billed("p", slice_), at("10:20:00"), at("10:40:01")),
        Segment("u1", "pod", billed("p", slice_), at("10:40:01"), at("10:59:59")),
    ]
    a = meter_period(whole, HOUR, cluster="c", period_kind=PeriodKind.hourly)
    b = meter_period(pieces, HOUR, cluster="c", period_kind=PeriodKind.hourly)
    # 3599 s × 1/7 GPU / 3600 = 0.142817460317… h → 0.142817460
    assert [r.usage for r in a] == [Decimal("0.142817460")]
    assert [(r.id, r.usage) for r in a] == [(r.id, r.usage) for r in b]


def test_open_segments_run_to_the_period_end_and_outside_time_is_ignored() -> None:
    two = gpu(Fraction(2), gpu_sku="x")
    segments = [
        Segment("u1", "pod", billed("p1", two), at("09:30:00"), None),  # 3600 s × 2 = 2 h
        Segment("u2", "pod", billed("p2", two), at("10:59:30"), at("11:30:00")),  # 30 s × 2 = 0.016666667 h
        Segment("u3", "pod", billed("p3", two), at("08:00:00"), at("10:00:00")),
    ]  # none
    usage = {r.name: r.usage for r in meter_period(segments, HOUR, cluster="c", period_kind=PeriodKind.hourly)}
    assert usage == {"p1": Decimal("2"), "p2": Decimal("0.016666667")}


def test_union_meter_counts_overlapping_replicas_once() -> None:
    up = Meter("platform", "control_plane_hours", Fraction(1), union=True)
    b = Billed("VirtualCluster", "alpha", "ns", "vcluster/ns/alpha", "", (up,))
    segments = [
        Segment("pod-0", "control-plane", b, at("09:00:00"), at("10:30:00")),
        Segment("pod-1", "control-plane", b, at("10:15:00"), at("10:40:00")),
        Segment("pod-2", "control-plane", b, at("10:50:00"), None),
    ]
    # Covered: 10:00–10:40 (2400 s) + 10:50–11:00 (600 s) = 3000 s → 0.833333333 h (not 1.25 h summed)
    records = meter_period(segments, HOUR, cluster="c", period_kind=PeriodKind.hourly)
    assert [(r.item, r.usage) for r in records] == [("control_plane_hours", Decimal("0.833333333"))]


def test_record_shape_follows_the_contract() -> None:
    meter = gpu(Fraction(1), gpu_sku="nvidia-l40s-48gb", billing_mode="shared", capacity_type="spot")
    segment = Segment(
        "u", "pod", Billed("Pod", "p", "ns", "vcluster/ns/a", "ml", (meter,), (("node", "n1"),)), at("10:00:00"), None
    )
    (record,) = meter_period([segment], HOUR, cluster="c1", period_kind=PeriodKind.hourly)
    assert (record.kind, record.category, record.item, record.unit, record.period) == (
        "Pod",
        "compute",
        "gpu_hours",
        "h",
        PeriodKind.hourly,
    )
    assert (record.start, record.end) == (at("10:00:00"), at("10:59:59"))
    assert record.labels == {
        "gpu_sku": "nvidia-l40s-48gb",
        "billing_mode": "shared",
        "capacity_type": "spot",
        "node": "n1",
    }
    assert (record.tenant, record.project, record.namespace, record.cluster) == ("vcluster/ns/a", "ml", "ns", "c1")


def test_short_windows() -> None:
    five = Period(at("10:05:00"), at("10:10:00"))
    segment = Segment("u", "pod", billed("p", gpu(Fraction(1))), at("10:02:30"), at("10:13:10"))
    (record,) = meter_period([segment], five, cluster="c", period_kind=PeriodKind.minutes_5)
    assert (record.usage, str(record.period), record.end) == (Decimal("0.083333333"), "5m", at("10:09:59"))
    assert PeriodKind.minutes_5.length == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1Gi", Fraction(2**30)),
        ("32777408Ki", Fraction(32777408 * 1024)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("1e3", Fraction(1000)),
        ("100M", Fraction(10**8)),
        ("250u", Fraction(1, 4000)),
        (".5", Fraction(1, 2)),
        (8, Fraction(8)),
    ],
)
def test_quantities_are_exact(text: object, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_bad_quantities_are_errors_and_counts_are_forgiving() -> None:
    for bad in ("", "1.2.3", "12XB", "lots", True):
        with pytest.raises(QuantityError):
            parse_quantity(bad)
    assert (parse_count("8"), parse_count("0.5"), parse_count("junk")) == (8, 0, 0)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, ("on-demand", "")),
        ({"karpenter.sh/capacity-type": "spot"}, ("spot", "spot")),
        ({"karpenter.sh/capacity-type": "reserved"}, ("reserved", "reserved")),
        ({"eks.amazonaws.com/capacityType": "SPOT"}, ("spot", "SPOT")),
        ({"eks.amazonaws.com/capacityType": "ON_DEMAND"}, ("on-demand", "ON_DEMAND")),
        ({"eks.amazonaws.com/capacityType": "CAPACITY_BLOCK"}, ("reserved", "CAPACITY_BLOCK")),
        ({"cloud.google.com/gke-spot": "true"}, ("spot", "true")),
        ({"cloud.google.com/gke-preemptible": "true"}, ("preemptible", "true")),
        ({"kubernetes.azure.com/scalesetpriority": "spot"}, ("spot", "spot")),
        ({"node.kubernetes.io/lifecycle": "spot"}, ("spot", "spot")),
        # Karpenter is more specific than the managed node group label.
        (
            {"karpenter.sh/capacity-type": "on-demand", "eks.amazonaws.com/capacityType": "SPOT"},
            ("on-demand", "on-demand"),
        ),
        ({"kubetally.io/capacity-type": "reserved", "karpenter.sh/capacity-type": "spot"}, ("reserved", "reserved")),
        ({"karpenter.sh/capacity-type": "weird"}, ("on-demand", "weird")),
    ],
)
def test_capacity_type_labels(labels: dict[str, str], expected: tuple[str, str]) -> None:
    assert capacity_type(labels, override_label="kubetally.io/capacity-type") == expected
