"""The pure parts: evaluation grid, aggregation, label naming and the label-join choice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from prom_helpers import H10

from kubetally.config.costmodel import Aggregation, Mappers
from kubetally.sources.prometheus.client import Series
from kubetally.sources.prometheus.evaluate import aggregate, grid, on_grid, range_window
from kubetally.sources.prometheus.join import (
    LabelIndex,
    dimension_labels,
    enrichment_labels,
    join_fields,
    record_label_name,
)
from kubetally.sources.prometheus.project import kube_state_label, project_query

FIVE = timedelta(minutes=5)


def test_grid_is_t_plus_step_to_t_plus_period() -> None:
    points = grid(H10, FIVE)
    assert len(points) == 12  # 60 min / 5 min
    assert points[0] == H10.start + FIVE  # 10:05, standing for (10:00, 10:05]
    assert points[-1] == H10.end  # 11:00, standing for (10:55, 11:00]
    assert range_window(H10, FIVE) == (points[0], points[-1])
    with pytest.raises(ValueError, match="does not divide"):
        grid(H10, timedelta(minutes=7))


def test_on_grid_drops_foreign_points() -> None:
    inside = (H10.start + FIVE, Decimal(1))
    between = (H10.start + FIVE + timedelta(seconds=30), Decimal(2))
    before = (H10.start, Decimal(3))  # 10:00 belongs to the previous hour
    assert list(on_grid([before, inside, between], H10, FIVE)) == [inside]


def test_sum_and_integral() -> None:
    points = [Decimal("0.5")] * 12
    # sum: 12 × 0.5 = 6
    assert aggregate(points, Aggregation.sum, FIVE) == Decimal(6)
    # integral: 12 × 0.5 × 300 s / 3600 = 0.5 unit-hours
    assert aggregate(points, Aggregation.integral, FIVE) == Decimal("0.5")
    # four 5-minute points of 1 = 20 minutes = 1200/3600 h = 0.333333333 (9 places, half-even)
    assert aggregate([Decimal(1)] * 4, Aggregation.integral, FIVE) == Decimal("0.333333333")
    # Prometheus' float strings are summed exactly: 0.1 + 0.2 = 0.3, not 0.30000000000000004
    assert aggregate([Decimal("0.1"), Decimal("0.2")], Aggregation.sum, FIVE) == Decimal("0.3")


def test_label_names() -> None:
    assert record_label_name("label_modelName") == "modelName"
    assert record_label_name("modelName") == "modelName"
    assert record_label_name("label_") == "label_"
    assert enrichment_labels({"label_device": "nvidia", "deviceuuid": "GPU-1", "label_empty": "", "job": "x"}) == {
        "device": "nvidia"
    }
    assert dimension_labels(
        {"modelName": "T4", "label_mode": "spot", "pod": "p"}, ["modelName", "label_mode", "GPU_I_ID"]
    ) == {
        "modelName": "T4",
        "mode": "spot",
    }


def test_kube_state_metrics_label_sanitising() -> None:
    # Rules of kube-state-metrics: [^a-zA-Z0-9_] -> "_", camelCase -> snake_case, lower case.
    assert kube_state_label("cpaas.io/project") == "label_cpaas_io_project"
    assert kube_state_label("eks.amazonaws.com/capacityType") == "label_eks_amazonaws_com_capacity_type"
    assert kube_state_label("node.kubernetes.io/instance-type") == "label_node_kubernetes_io_instance_type"
    assert kube_state_label("label_cpaas_io_project") == "label_cpaas_io_project"
    assert project_query("cpaas.io/project") == (
        'max by (namespace, label_cpaas_io_project) (kube_namespace_labels{label_cpaas_io_project!=""})'
    )


def test_join_fields_need_both_sides() -> None:
    usage = Mappers(name="deviceuuid", namespace="podnamespace")
    assert join_fields(usage, Mappers(name="deviceuuid", namespace="podnamespace")) == ("namespace",)
    assert join_fields(usage, Mappers(name="deviceuuid")) == ()
    assert join_fields(Mappers(name="project", cluster="cluster"), Mappers(name="project", cluster="cluster")) == (
        "cluster",
    )


def _series(labels: dict[str, str], minutes: list[int]) -> Series:
    return Series(labels=labels, points=tuple((H10.start + timedelta(minutes=m), Decimal(1)) for m in minutes))


def test_several_label_series_choose_deterministically() -> None:
    mappers = Mappers(name="uuid", namespace="ns")
    long = _series({"uuid": "g", "ns": "a", "label_model": "T4"}, [5, 10, 15, 20])
    short = _series({"uuid": "g", "ns": "a", "label_model": "stale"}, [5, 10])
    # Same labels from two exporters: one candidate with the union of points (5, 10, 25, 30).
    late_a = _series({"uuid": "h", "ns": "a", "label_model": "B", "instance": "1"}, [5, 10])
    late_b = _series({"uuid": "h", "ns": "a", "label_model": "B", "instance": "2"}, [25, 30])
    early = _series({"uuid": "h", "ns": "a", "label_model": "A"}, [15, 20, 25])
    tie_z = _series({"uuid": "t", "ns": "a", "label_model": "Z"}, [5])
    tie_y = _series({"uuid": "t", "ns": "a", "label_model": "Y"}, [5])
    other_ns = _series({"uuid": "g", "ns": "b", "label_model": "P100"}, [5])
    for order in (
        [long, short, late_a, late_b, early, tie_z, tie_y, other_ns],
        [other_ns, tie_y, tie_z, early, late_b, late_a, short, long],
    ):
        index = LabelIndex(order, mappers, ("namespace",))
        assert index.lookup("g", namespace="a") == {"model": "T4"}  # most points
        assert index.lookup("h", namespace="a") == {"model": "B"}  # 4 points beat 3
        assert index.lookup("t", namespace="a") == {"model": "Y"}  # full tie: smallest labels
        assert index.lookup("g", namespace="b") == {"model": "P100"}
        assert index.lookup("g", namespace="c") == {}
        assert index.ambiguous == [("g", "a"), ("h", "a"), ("t", "a")]
    # Without a namespace in the key a device's labels apply in every namespace.
    device_only = LabelIndex([long], Mappers(name="uuid"), ())
    assert device_only.lookup("g", namespace="anything") == {"model": "T4"}
