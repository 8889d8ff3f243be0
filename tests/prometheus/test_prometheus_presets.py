"""Every built-in preset collects exact, hand-derived values from the real-exporter-shaped series
of prom_scenario.py. H10 = [10:00, 11:00): 12 five-minute points; integral = Σ point × 300/3600."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from prom_helpers import H10, H11

from kubetally.config import Config, load_config
from kubetally.config.loader import preset_names
from kubetally.sources.prometheus.check import check_queries
from kubetally.sources.prometheus.client import PrometheusClient
from kubetally.sources.prometheus.collector import Collector

GIB = 1073741824
A100 = "GPU-11111111-1111-4111-8111-111111111111"
H100 = "GPU-22222222-2222-4222-8222-222222222222"
MIG = "GPU-33333333-3333-4333-8333-333333333333"
HAMI_NEW = "GPU-55555555-5555-4555-8555-555555555555"
HAMI_OLD = "GPU-66666666-6666-4666-8666-666666666666"


@pytest.fixture
def preset(write_config: Callable[..., Path]) -> Callable[[str], Config]:
    def load(name: str) -> Config:
        return load_config([write_config(f"collection:\n  presets: [{name}]\n", f"{name}.yaml")])

    return load


def collect(client: PrometheusClient, config: Config, item: str, period=H10) -> dict:  # type: ignore[no-untyped-def]
    records = Collector(client, cluster="gpu-east").collect(config.item(item), period).records
    return {(r.name, r.namespace): r for r in records}


def usage(records: dict) -> dict:  # type: ignore[type-arg]
    return {key: record.usage for key, record in records.items()}


def test_presets_are_the_shipped_set() -> None:
    assert preset_names() == ["compute", "dcgm", "hami", "network", "storage"]


def test_every_preset_query_is_valid_promql(prometheus, write_config) -> None:  # type: ignore[no-untyped-def]
    config = load_config([write_config("collection:\n  presets: [compute, dcgm, hami, network, storage]\n")])
    assert len(config.items) == 14  # compute 6, dcgm 2, hami 4, network 1, storage 1
    assert check_queries(config, prometheus.url) == []


def test_dcgm_whole_gpu_allocation(client: PrometheusClient, preset) -> None:  # type: ignore[no-untyped-def]
    records = collect(client, preset("dcgm"), "GpuAllocation")
    assert usage(records) == {
        # exported_namespace (honorLabels: false) → team-a, the whole hour: 12 × 1 × 300/3600 = 1 GPU-hour
        (A100, "team-a"): Decimal(1),
        # namespace/pod of the workload (honorLabels: true) for 20 minutes: 4 × 300/3600 = 0.333333333
        (H100, "team-b"): Decimal("0.333333333"),
        # not billed: the MIG instance (not a whole GPU), the unallocated GPU, and the H100 while it
        # showed only the exporter's own pod
    }
    a100 = records[(A100, "team-a")]
    assert a100.labels == {"modelName": "NVIDIA A100-SXM4-80GB"}
    assert (a100.unit, a100.project, a100.tenant) == ("GPU-hours", "proj-a", "proj-a")
    assert records[(H100, "team-b")].labels == {"modelName": "NVIDIA H100 80GB HBM3"}


def test_dcgm_utilisation_prefers_profiling_and_never_invents_zero(client: PrometheusClient, preset) -> None:  # type: ignore[no-untyped-def]
    config = preset("dcgm")
    records = collect(client, config, "GpuUtilization")
    assert usage(records) == {
        (A100, "team-a"): Decimal("0.5"),  # GR_ENGINE_ACTIVE 0.5 × 1 h (GPU_UTIL's 60 % is the fallback only)
        (H100, "team-b"): Decimal("0.25"),  # no profiling metric: GPU_UTIL 75 % → 0.75 × 20 min
        (MIG, "team-a"): Decimal("0.25"),  # GR_ENGINE_ACTIVE 0.25 of the MIG instance × 1 h
    }
    assert records[(MIG, "team-a")].labels == {
        "modelName": "NVIDIA A100-SXM4-40GB",
        "GPU_I_PROFILE": "3g.20gb",
        "GPU_I_ID": "1",
        "pod": "mig-0",  # exported_pod (honorLabels: false): the pod that held the instance
        "coverage": "1",  # samples in all 12 five-minute steps of the hour
        "coverage_steps": "12/12",
    }
    # Missing samples are missing, not 0 % busy: team-b's H100 reported for 20 minutes only,
    # 4 of the 12 steps → coverage 4/12 = 0.3333; its busy 0.25 GPU-h is over those 20 minutes.
    coverage = {k: (r.labels["coverage"], r.labels["coverage_steps"]) for k, r in records.items()}
    assert coverage == {
        (A100, "team-a"): ("1", "12/12"),
        (H100, "team-b"): ("0.3333", "4/12"),
        (MIG, "team-a"): ("1", "12/12"),
    }
    # The pod that held each GPU: exported_pod (honorLabels: false) or pod (honorLabels: true).
    assert {k: r.labels["pod"] for k, r in records.items()} == {
        (A100, "team-a"): "train-0",
        (H100, "team-b"): "infer-0",
        (MIG, "team-a"): "mig-0",
    }
    # In H11 team-b has no GPU: no record at all, rather than a 0.
    assert (H100, "team-b") not in collect(client, config, "GpuUtilization", H11)


def test_hami_new_and_legacy_names_without_double_counting(client: PrometheusClient, preset) -> None:  # type: ignore[no-untyped-def]
    config = preset("hami")
    core_request = collect(client, config, "HamiVgpuCoreRequest")
    assert usage(core_request) == {
        # hami_vgpu_core_allocated_ratio 30 (also emitted as vGPUCoreAllocated 30: counted once)
        # → 12 × 30 × 300/3600 = 30 percent-hours = 0.3 GPU-hours after the divisor 100
        (HAMI_NEW, "team-a"): Decimal(30),
        # legacy only (vGPUCoreAllocated and vGPUCorePercentage both 50: counted once) → 50
        (HAMI_OLD, "team-b"): Decimal(50),
    }
    assert core_request[(HAMI_NEW, "team-a")].labels == {"modelName": "NVIDIA A100-PCIE-40GB"}
    assert core_request[(HAMI_OLD, "team-b")].labels == {"modelName": "Tesla T4"}
    assert usage(collect(client, config, "HamiVgpuMemoryRequest")) == {
        (HAMI_NEW, "team-a"): Decimal(4 * GIB),  # 4 GiB for 1 h = 4294967296 byte-hours
        (HAMI_OLD, "team-b"): Decimal(8 * GIB),
    }
    assert usage(collect(client, config, "HamiVgpuCoreUsage")) == {
        (HAMI_NEW, "team-a"): Decimal(40),  # 40 % SM for 1 h
        (HAMI_OLD, "team-b"): Decimal(20),  # legacy Device_utilization_desc_of_container 20 %
    }
    assert usage(collect(client, config, "HamiVgpuMemoryUsage")) == {
        (HAMI_NEW, "team-a"): Decimal(2 * GIB),
        (HAMI_OLD, "team-b"): Decimal(GIB),  # legacy vGPU_device_memory_usage_in_bytes
    }
    display = config.display_for("HamiVgpuCoreRequest")
    assert display is not None and display.divisor == Decimal(100)


def test_network_egress_is_the_exact_counter_increase(client: PrometheusClient, preset) -> None:  # type: ignore[no-untyped-def]
    config = preset("network")
    assert usage(collect(client, config, "NetworkEgressBytes")) == {
        # 1024 B/s × 3600 s, through the sandbox restart right after 10:47:30
        ("web-1", "team-a"): Decimal(3686400),
        # 2048 B/s for the 20 minutes the pod existed: 2048 × 1200
        ("batch-1", "team-b"): Decimal(2457600),
        # the node-level series (id="/", no pod) belongs to nobody
    }
    assert usage(collect(client, config, "NetworkEgressBytes", H11)) == {("web-1", "team-a"): Decimal(3686400)}


def test_storage_requested_bytes(client: PrometheusClient, preset) -> None:  # type: ignore[no-untyped-def]
    records = collect(client, preset("storage"), "StorageRequest")
    assert usage(records) == {
        ("data-0", "team-a"): Decimal(10 * GIB),  # 10 GiB × 1 h = 10737418240 byte-hours
        ("scratch", "team-b"): Decimal(GIB),  # 3 GiB × 20 min = 1 GiB-hour
    }
    assert records[("data-0", "team-a")].labels == {"storageclass": "fast-ssd"}
    assert records[("scratch", "team-b")].labels == {"storageclass": "standard"}


def test_cpu_and_memory_request_usage_effective(client: PrometheusClient, preset) -> None:  # type: ignore[no-untyped-def]
    config = preset("compute")
    assert usage(collect(client, config, "CpuRequest")) == {
        ("web-1", "team-a"): Decimal("0.5"),  # 0.5 core × 1 h
        ("batch-1", "team-b"): Decimal("0.333333333"),  # 1 core × 20 min
        # done-1 requests 2 cores but is not running: nothing
    }
    assert usage(collect(client, config, "CpuUsage")) == {
        ("web-1", "team-a"): Decimal("0.25"),  # rate 0.25 × 1 h; the pod-level cgroup is not added
        ("batch-1", "team-b"): Decimal("0.5"),  # rate 1.5 × 20 min
    }
    assert usage(collect(client, config, "CpuEffective")) == {
        ("web-1", "team-a"): Decimal("0.5"),  # max(0.5 request, 0.25 usage) per step
        ("batch-1", "team-b"): Decimal("0.5"),  # max(1, 1.5) × 20 min
    }
    assert usage(collect(client, config, "MemoryRequest")) == {
        ("web-1", "team-a"): Decimal(GIB),  # 1 GiB × 1 h
        ("batch-1", "team-b"): Decimal("357913941.333333333"),  # 1 GiB × 20 min = 1073741824 / 3
    }
    assert usage(collect(client, config, "MemoryUsage")) == {
        ("web-1", "team-a"): Decimal(GIB // 2),  # 0.5 GiB working set × 1 h
        ("batch-1", "team-b"): Decimal(GIB),  # 3 GiB × 20 min
    }
    assert usage(collect(client, config, "MemoryEffective")) == {
        ("web-1", "team-a"): Decimal(GIB),  # max(1 GiB, 0.5 GiB)
        ("batch-1", "team-b"): Decimal(GIB),  # max(1 GiB, 3 GiB) × 20 min
    }


@pytest.mark.parametrize("name", ["compute", "dcgm", "hami", "network", "storage"])
def test_preset_display_is_complete(preset, name: str) -> None:  # type: ignore[no-untyped-def]
    config = preset(name)
    assert config.items and config.display
    for item in config.items:
        entry = config.display_for(item.item)
        assert entry is not None and entry.category.name == item.category
        assert entry.category.displayname.zh and entry.category.displayname.en
        assert entry.method.displayname.zh and entry.method.displayname.en
        assert entry.method.unit.zh and entry.method.unit.en
        assert item.unit, f"{name}: {item.item} has no raw unit"
