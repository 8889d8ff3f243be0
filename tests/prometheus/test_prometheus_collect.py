"""Item × period → records, against the real Prometheus and the series of prom_scenario.py.

Every expected quantity is derived by hand next to its assertion. Reminders:
H10 = [10:00, 11:00), step 5m → 12 grid points; `integral` = Σ point × 300 / 3600.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prom_helpers import H10, H11, SEED_FILES, by_name

from kubetally.config import CollectionItem, load_config
from kubetally.errors import SourceError
from kubetally.periods import Period
from kubetally.record import record_id
from kubetally.sources.prometheus.client import PrometheusClient
from kubetally.sources.prometheus.collector import Collector

T4 = "GPU-2eec4202-80dc-870f-3ca5-25879d96eca7"
SHORT = "GPU-7d3c5a10-2b4e-4f61-9a0c-5d2e8f1b3c47"
MOVED = "GPU-c0c0c0c0-0000-4000-8000-000000000003"
LONELY = "GPU-d0d0d0d0-0000-4000-8000-000000000004"
GIB = 1073741824

ITEMS = """
items:
  - kind: Vgpu
    category: Test
    item: CoreHours
    aggregation: integral
    unit: core-hours
    labels:
      query: vgpu_core_labels
      mappers: {name: deviceuuid, namespace: podnamespace}
    usage:
      query: sum by (deviceuuid, podnamespace) (rate(vgpu_core_usage_seconds_total[5m]))
      step: 5m
      mappers: {name: deviceuuid, namespace: podnamespace}
  - kind: Vgpu
    category: Test
    item: CoreSeconds
    unit: core-seconds
    usage:
      query: sum by (deviceuuid, podnamespace) (increase(vgpu_core_usage_seconds_total[5m]))
      step: 5m
      mappers: {name: deviceuuid, namespace: podnamespace}
  - kind: Pod
    category: Test
    item: BillingMode
    aggregation: integral
    dimensions: [billing_mode]
    usage:
      query: max by (namespace, pod, billing_mode) (max_over_time(test_billing_mode[5m]))
      step: 5m
      mappers: {name: pod, namespace: namespace}
  - kind: Project
    category: Test
    item: ProjectGpuQuota
    aggregation: integral
    usage:
      query: avg by (project, cluster) (avg_over_time(cpaas_project_resourcequota{type="project-hard"}[5m]))
      step: 5m
      mappers: {name: project, namespace: "", cluster: cluster, project: project}
  - kind: Pod
    category: Test
    item: Ratio
    usage:
      query: sum by (namespace, pod) (test_zero) / sum by (namespace, pod) (test_zero)
      step: 5m
      mappers: {name: pod, namespace: namespace}
  - kind: Pod
    category: Test
    item: NoName
    usage:
      query: sum by (namespace) (test_zero)
      step: 5m
      mappers: {name: pod, namespace: namespace}
  - kind: Pod
    category: Test
    item: NoCluster
    usage:
      query: sum by (namespace, pod) (test_zero)
      step: 5m
      mappers: {name: pod, namespace: namespace, cluster: cluster}
  - kind: Service
    category: Test
    item: DailyRequests
    period: Daily
    usage:
      query: sum by (namespace, service) (increase(test_daily_requests_total[1h]))
      step: 1h
      mappers: {name: service, namespace: namespace}
"""


@pytest.fixture
def items(tmp_path: Path) -> dict[str, CollectionItem]:
    path = tmp_path / "items.yaml"
    path.write_text(ITEMS)
    return {item.item: item for item in load_config([path]).items}


@pytest.fixture
def collector(client: PrometheusClient) -> Collector:
    return Collector(client, cluster="gpu-east")


def test_seed_items_collect_exact_records(client: PrometheusClient) -> None:
    config = load_config(SEED_FILES)
    collector = Collector(client, cluster="gpu-east")
    core = by_name(collector.collect(config.item("VgpuCoreUsed"), H10).records)
    # The seed's items have no `aggregation`, so the Alauda default `sum` applies: Σ of the
    # twelve 5-minute rate points.
    assert {k: r.usage for k, r in core.items()} == {
        (T4, "yulin-2"): Decimal(6),  # 12 points × 0.5 (rate steady through the 10:32 restart)
        (SHORT, "team-a"): Decimal(3),  # 20-minute pod: 4 points × 0.75
        (MOVED, "moved"): Decimal(3),  # 12 × 0.25
        (LONELY, "lonely"): Decimal("1.5"),  # 12 × 0.125
    }
    t4 = core[(T4, "yulin-2")]
    assert t4.labels == {"device": "nvidia", "modelName": "Tesla T4"}  # not yulin-1's P100, not "-stale"
    assert (t4.cluster, t4.project, t4.tenant, t4.kind, t4.category, t4.item) == (
        "gpu-east",
        "yulin",
        "yulin",
        "Vgpu",
        "VgpuCore",
        "VgpuCoreUsed",
    )
    assert (t4.start, t4.end, t4.date) == (H10.start, H10.last_second, datetime(2026, 3, 2, tzinfo=UTC))
    assert core[(SHORT, "team-a")].labels == {"device": "nvidia", "modelName": "NVIDIA A100-PCIE-40GB"}
    assert core[(MOVED, "moved")].project == "proj-new"  # the project it belonged to last in H10
    assert (core[(LONELY, "lonely")].project, core[(LONELY, "lonely")].tenant) == ("", "lonely")
    assert core[(LONELY, "lonely")].labels == {}  # no label series for this device

    memory = by_name(collector.collect(config.item("VgpuMemoryUsed"), H10).records)
    assert {k: r.usage for k, r in memory.items()} == {
        (T4, "yulin-2"): Decimal(12 * 2 * GIB),  # 12 points × 2 GiB = 25769803776
        (SHORT, "team-a"): Decimal(4 * GIB),  # 4 points × 1 GiB
        (MOVED, "moved"): Decimal(12 * GIB // 2),  # 12 × 0.5 GiB
        # the lonely device reports no memory: no record, not a 0
    }


def test_integral_gives_unit_hours_and_joins_labels(collector: Collector, items: dict[str, CollectionItem]) -> None:
    records = by_name(collector.collect(items["CoreHours"], H10).records)
    assert {k: r.usage for k, r in records.items()} == {
        (T4, "yulin-2"): Decimal("0.5"),  # 0.5 cores × 1 h
        (SHORT, "team-a"): Decimal("0.25"),  # 0.75 cores × 20 min = 4 × 0.75 × 300 / 3600
        (MOVED, "moved"): Decimal("0.25"),  # 0.25 × 1 h
        (LONELY, "lonely"): Decimal("0.125"),  # 0.125 × 1 h
    }
    assert records[(T4, "yulin-2")].unit == "core-hours"
    assert records[(T4, "yulin-2")].labels == {"device": "nvidia", "modelName": "Tesla T4"}


def test_increase_counts_every_second_through_a_counter_reset(
    collector: Collector, items: dict[str, CollectionItem]
) -> None:
    records = by_name(collector.collect(items["CoreSeconds"], H10).records)
    assert {k: r.usage for k, r in records.items()} == {
        # 0.5/s × 3600 s; the counter restarted right after the 10:32:00 scrape and the window
        # (10:30, 10:35] still reads 0.5 × 300 = 150 (90 − 1200 + the 1260 before the drop).
        (T4, "yulin-2"): Decimal(1800),
        (SHORT, "team-a"): Decimal(900),  # 0.75/s × 1200 s: present 20 minutes, counts 20 minutes
        (MOVED, "moved"): Decimal(900),  # 0.25 × 3600
        (LONELY, "lonely"): Decimal(450),  # 0.125 × 3600
    }
    # The next hour: no reset, the 20-minute pod is gone.
    later = by_name(collector.collect(items["CoreSeconds"], H11).records)
    assert {k: r.usage for k, r in later.items()} == {
        (T4, "yulin-2"): Decimal(1800),
        (MOVED, "moved"): Decimal(900),
        (LONELY, "lonely"): Decimal(450),
    }


def test_dimensions_split_records(collector: Collector, items: dict[str, CollectionItem]) -> None:
    records = collector.collect(items["BillingMode"], H10).records
    by_mode = {r.labels["billing_mode"]: r for r in records}
    # spot until 10:29:45 → points 10:05 … 10:30 (6 × 5 min); on-demand from 10:30:15 → 10:35 … 11:00.
    assert by_mode["spot"].usage == Decimal("0.5")  # 6 × 1 × 300 / 3600
    assert by_mode["on-demand"].usage == Decimal("0.5")
    assert by_mode["spot"].id != by_mode["on-demand"].id
    assert by_mode["spot"].id == record_id(
        cluster="gpu-east",
        kind="Pod",
        category="Test",
        item="BillingMode",
        name="p-1",
        namespace="team-a",
        project="proj-a",
        tenant="proj-a",
        period="hourly",
        start=H10.start,
        dimensions={"billing_mode": "spot"},
    )


def test_cluster_and_project_from_series_labels(collector: Collector, items: dict[str, CollectionItem]) -> None:
    (record,) = collector.collect(items["ProjectGpuQuota"], H10).records
    # Alauda's project-quota shape: name and project from `project`, cluster from `cluster`.
    assert (record.name, record.namespace, record.cluster, record.project, record.tenant) == (
        "proj-a",
        "",
        "east",
        "proj-a",
        "proj-a",
    )
    assert record.usage == Decimal(4)  # a quota of 4 GPUs for 1 h


def test_tenant_of_overrides_project(client: PrometheusClient) -> None:
    tenants = {"team-a": "acme", "yulin-2": "yulin-corp"}
    collector = Collector(client, cluster="gpu-east", tenant_of=tenants.get)
    records = by_name(collector.collect(load_config(SEED_FILES).item("VgpuCoreUsed"), H10).records)
    assert records[(SHORT, "team-a")].tenant == "acme"
    assert records[(T4, "yulin-2")].tenant == "yulin-corp"
    assert records[(MOVED, "moved")].tenant == "proj-new"  # resolver has no answer: the project
    assert records[(LONELY, "lonely")].tenant == "lonely"  # no project either: the namespace
    assert records[(SHORT, "team-a")].project == "proj-a"  # the project is kept as it is


def test_project_label_is_configurable(client: PrometheusClient) -> None:
    config = load_config(SEED_FILES)
    collector = Collector(client, cluster="gpu-east", project_label="example.com/team")
    records = collector.collect(config.item("VgpuCoreUsed"), H10).records
    # No namespace carries label_example_com_team: no project, tenant = namespace.
    assert {(r.namespace, r.project, r.tenant) for r in records} == {
        ("yulin-2", "", "yulin-2"),
        ("team-a", "", "team-a"),
        ("moved", "", "moved"),
        ("lonely", "", "lonely"),
    }


def test_not_a_number_is_dropped_with_a_warning(collector: Collector, items: dict[str, CollectionItem]) -> None:
    collected = collector.collect(items["Ratio"], H10)
    assert collected.records == []
    assert len(collected.warnings) == 12  # 0/0 at every grid point
    assert collected.warnings[0] == (
        'item \'Ratio\': usage.query: dropped NaN at 2026-03-02T10:05:00Z for {namespace="team-a", pod="z-1"}'
    )


def test_unattributable_series_stop_the_item(collector: Collector, items: dict[str, CollectionItem]) -> None:
    with pytest.raises(SourceError) as caught:
        collector.collect(items["NoName"], H10)
    assert str(caught.value) == (
        "item 'NoName': usage.mappers.name: series {namespace=\"team-a\"} has no 'pod' label, so it cannot be "
        "attributed (group the usage.query by 'pod')"
    )
    with pytest.raises(SourceError, match=r"item 'NoCluster': usage.mappers.cluster: series .* has no 'cluster'"):
        collector.collect(items["NoCluster"], H10)


def test_daily_period(collector: Collector, items: dict[str, CollectionItem]) -> None:
    day = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    (record,) = collector.collect(items["DailyRequests"], day).records
    # 24 hourly increases of 0.25/s × 3600 s = 900 each; Σ = 0.25 × 86400 = 21600.
    assert record.usage == Decimal(21600)
    assert (record.period, record.start, record.end) == ("daily", day.start, day.end - timedelta(seconds=1))


def test_a_period_without_data_gives_no_records(collector: Collector, client: PrometheusClient) -> None:
    config = load_config(SEED_FILES)
    empty = Period(datetime(2026, 3, 3, 10, tzinfo=UTC), datetime(2026, 3, 3, 11, tzinfo=UTC))
    assert collector.collect(config.item("VgpuCoreUsed"), empty).records == []


def test_wrong_period_length_is_refused(collector: Collector, items: dict[str, CollectionItem]) -> None:
    day = Period(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="hourly"):
        collector.collect(items["CoreHours"], day)


def test_a_timestamp_sent_as_a_string_is_refused_not_skipped(items: dict[str, CollectionItem]) -> None:
    """A "Prometheus-compatible" server that sends timestamps as strings: every point would be
    off the grid, so skipping them would write no usage at all without a word."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answer = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"deviceuuid": T4, "podnamespace": "team-a"},
                    "values": [[str(int(H10.start.timestamp())), "1"]],
                }
            ],
        },
    }

    class Compatible(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Compatible)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with (
            PrometheusClient(f"http://127.0.0.1:{server.server_port}", timeout=5) as client,
            pytest.raises(SourceError) as caught,
        ):
            Collector(client, cluster="gpu-east").collect(items["CoreSeconds"], H10)
    finally:
        server.shutdown()
    assert "malformed result (TypeError: timestamp '1772445600' is not a number)" in str(caught.value)
    assert "item 'CoreSeconds'" in str(caught.value)
