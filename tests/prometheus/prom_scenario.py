"""Every Prometheus series the tests query, as OpenMetrics text for one TSDB.

Fixed date 2026-03-02 (UTC). Continuous series run from 09:50:00 to 12:10:00, so the hours
H10 = [10:00, 11:00) and H11 = [11:00, 12:00) are fully covered, including the 5-minute
windows on both edges. Scrapes are every 15 s *on the step grid* (…, 10:04:45, 10:05:00, …),
and counters grow at binary-exact constant rates, so ``increase``/``rate`` over every 5-minute
window are exact (see the docstring of ``kubetally.sources.prometheus.evaluate``).

Time shapes used below:

* ``ALWAYS``: 09:50:00 … 12:10:00 (every grid point of H10 and H11 has data);
* ``TWENTY_MINUTES``: a pod created at 10:20:00 and deleted at 10:40:00 — the scrapes at
  10:20:15 … 10:39:45 see it (the 10:20:00 scrape ran as it was being created and did not).
  Its windows are those ending 10:25, 10:30, 10:35 and 10:40: four 5-minute steps = 20 minutes.
  Its counters (CPU seconds, bytes sent) are sampled from 10:20:00, where they read 0, to
  10:40:00, where they read their final value: with a sample on both edges of each of those
  four windows ``rate`` needs no extrapolation and stays float-exact (with samples 15 s inside
  an edge Prometheus scales by 300/285, exact in theory but not in binary floating point).
  The windows ending 10:20 and 10:45 hold one sample each, too few for ``rate``.
* counters restarting "right after a scrape" lose nothing: the new process counts from 0 at
  that instant, so the next sample is rate × 15 s.

Expected values are derived by hand in the tests, next to each assertion.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from kubetally.testing.prometheus import OpenMetrics, Sample

DAY = datetime(2026, 3, 2, tzinfo=UTC)
SCRAPE = 15


def at(hour: int, minute: int = 0, second: int = 0, day: datetime = DAY) -> int:
    return int(day.replace(hour=hour, minute=minute, second=second).timestamp())


START = at(9, 50)
END = at(12, 10)
ALWAYS = (START, END)
TWENTY_MINUTES = (at(10, 20, 15), at(10, 39, 45))
COUNTER_TWENTY_MINUTES = (at(10, 20), at(10, 40))

# GPU and device identities
GPU_T4 = "GPU-2eec4202-80dc-870f-3ca5-25879d96eca7"  # the seed's example device, in yulin-2
GPU_SHORT = "GPU-7d3c5a10-2b4e-4f61-9a0c-5d2e8f1b3c47"  # a 20-minute pod in team-a
GPU_MOVED = "GPU-c0c0c0c0-0000-4000-8000-000000000003"  # namespace `moved` changes project at 10:30
GPU_LONELY = "GPU-d0d0d0d0-0000-4000-8000-000000000004"  # namespace without a project label
DCGM_A100 = "GPU-11111111-1111-4111-8111-111111111111"
DCGM_H100 = "GPU-22222222-2222-4222-8222-222222222222"
DCGM_MIG = "GPU-33333333-3333-4333-8333-333333333333"
DCGM_IDLE = "GPU-44444444-4444-4444-8444-444444444444"
HAMI_NEW = "GPU-55555555-5555-4555-8555-555555555555"
HAMI_OLD = "GPU-66666666-6666-4666-8666-666666666666"

GIB = 1073741824


def times(span: tuple[int, int], step: int = SCRAPE) -> range:
    return range(span[0], span[1] + 1, step)


def gauge(value: int | str, span: tuple[int, int] = ALWAYS) -> list[Sample]:
    return [(t, value) for t in times(span)]


def counter(rate: str, span: tuple[int, int] = ALWAYS, *, restarts: Iterable[int] = ()) -> list[Sample]:
    """A counter growing at ``rate`` per second from 0 at its first sample, restarting from 0
    right after each scrape time in ``restarts``."""
    per_second = Decimal(rate)
    origin = span[0]
    restart_points = sorted(restarts)
    samples: list[Sample] = []
    for t in times(span):
        since = origin
        for restart in restart_points:
            if restart < t:
                since = restart
        samples.append((t, per_second * (t - since)))
    return samples


def _seed(om: OpenMetrics) -> None:
    """The seed's metric shapes (HAMi scheduler style, scraped from kube-system)."""
    scrape = {
        "endpoint": "monitor",
        "instance": "10.3.0.130:9395",
        "ip": "192.168.131.32",
        "job": "hami-scheduler",
        "namespace": "kube-system",
        "node_name": "192.168.131.32",
        "pod": "hami-scheduler-86b7ff47c6-sp7kb",
        "service": "hami-scheduler",
        "zone": "vGPU",
    }
    devices = [
        # uuid, pod namespace, pod name, core rate (core-seconds per second), memory bytes, short, restarts
        (GPU_T4, "yulin-2", "pytorch-cuda12-1-57d9ff4544-bqkvg", "0.5", 2 * GIB, False, [at(10, 32)]),
        (GPU_SHORT, "team-a", "train-short", "0.75", GIB, True, []),
        (GPU_MOVED, "moved", "mover-0", "0.25", GIB // 2, False, []),
        (GPU_LONELY, "lonely", "solo-0", "0.125", None, False, []),
    ]
    for uuid, namespace, podname, rate, memory, short, restarts in devices:
        labels = scrape | {
            "containeridx": "0",
            "deviceuuid": uuid,
            "nodename": "192.168.133.48",
            "podname": podname,
            "podnamespace": namespace,
        }
        om.add(
            "vgpu_core_usage_seconds_total",
            labels,
            counter(rate, COUNTER_TWENTY_MINUTES if short else ALWAYS, restarts=restarts),
            kind="counter",
        )
        if memory is not None:
            om.add("vgpu_memory_usage_bytes", labels, gauge(memory, TWENTY_MINUTES if short else ALWAYS))
    label_series = [
        (GPU_T4, "yulin-2", "Tesla T4", ALWAYS),
        # A stale model name seen only until 10:09:45: two H10 points against twelve; loses.
        (GPU_T4, "yulin-2", "Tesla T4-stale", (START, at(10, 9, 45))),
        # Same device, other namespace (the seed's label example): must not join to yulin-2.
        (GPU_T4, "yulin-1", "Tesla P100-PCIE-16GB", ALWAYS),
        (GPU_SHORT, "team-a", "NVIDIA A100-PCIE-40GB", ALWAYS),
        (GPU_MOVED, "moved", "Tesla T4", ALWAYS),
    ]
    for uuid, namespace, model, span in label_series:
        om.add(
            "vgpu_core_labels",
            {
                "deviceuuid": uuid,
                "podnamespace": namespace,
                "label_device": "nvidia",
                "label_modelName": model,
                "job": "prometheus-rules",
            },
            gauge(1, span),
        )


def _namespaces(om: OpenMetrics) -> None:
    ksm = {"job": "kube-state-metrics", "instance": "10.0.0.5:8080"}
    for namespace, project, span in [
        ("yulin-2", "yulin", ALWAYS),
        ("yulin-1", "yulin", ALWAYS),
        ("team-a", "proj-a", ALWAYS),
        ("team-b", "proj-b", ALWAYS),
        ("moved", "proj-old", (START, at(10, 29, 45))),
        ("moved", "proj-new", (at(10, 30), END)),
    ]:
        om.add(
            "kube_namespace_labels", ksm | {"namespace": namespace, "label_cpaas_io_project": project}, gauge(1, span)
        )
    om.add("kube_namespace_labels", ksm | {"namespace": "lonely"}, gauge(1))


def _dcgm(om: OpenMetrics) -> None:
    """DCGM exporter series in both scrape styles (honorLabels false and true)."""
    exporter = {
        "job": "nvidia-dcgm-exporter",
        "instance": "10.0.1.7:9400",
        "endpoint": "gpu-metrics",
        "service": "nvidia-dcgm-exporter",
        "container": "nvidia-dcgm-exporter",
        "namespace": "gpu-operator",
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
    }
    a100 = exporter | {
        "gpu": "0",
        "UUID": DCGM_A100,
        "pci_bus_id": "00000000:1A:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA A100-SXM4-80GB",
        "Hostname": "gpu-node-1",
        "pod": "nvidia-dcgm-exporter-abcde",
        # honorLabels: false -> the workload is in exported_*
        "exported_namespace": "team-a",
        "exported_pod": "train-0",
        "exported_container": "main",
    }
    om.add("DCGM_FI_DEV_FB_USED", a100, gauge(40000))
    om.add("DCGM_FI_PROF_GR_ENGINE_ACTIVE", a100, gauge("0.5"))
    om.add("DCGM_FI_DEV_GPU_UTIL", a100, gauge(60))  # would give 0.6 if the fallback were used

    h100 = {
        "job": "nvidia-dcgm-exporter",
        "instance": "10.0.1.8:9400",
        "endpoint": "gpu-metrics",
        "service": "nvidia-dcgm-exporter",
        "gpu": "0",
        "UUID": DCGM_H100,
        "pci_bus_id": "00000000:3B:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-node-2",
    }
    # honorLabels: true -> the workload is in namespace/pod while allocated (10:20:15-10:39:45);
    # before and after, the target's own labels fill namespace/pod (the exporter pod).
    busy = h100 | {"namespace": "team-b", "pod": "infer-0", "container": "main"}
    idle = h100 | {
        "namespace": "gpu-operator",
        "pod": "nvidia-dcgm-exporter-fghij",
        "container": "nvidia-dcgm-exporter",
    }
    om.add("DCGM_FI_DEV_FB_USED", busy, gauge(70000, TWENTY_MINUTES))
    om.add("DCGM_FI_DEV_GPU_UTIL", busy, gauge(75, TWENTY_MINUTES))
    before, after = (START, at(10, 20)), (at(10, 40), END)
    for span in (before, after):
        om.add("DCGM_FI_DEV_FB_USED", idle, gauge(0, span))
        om.add("DCGM_FI_DEV_GPU_UTIL", idle, gauge(0, span))

    mig = exporter | {
        "gpu": "1",
        "UUID": DCGM_MIG,
        "pci_bus_id": "00000000:1B:00.0",
        "device": "nvidia1",
        "modelName": "NVIDIA A100-SXM4-40GB",
        "GPU_I_PROFILE": "3g.20gb",
        "GPU_I_ID": "1",
        "Hostname": "gpu-node-1",
        "pod": "nvidia-dcgm-exporter-abcde",
        "exported_namespace": "team-a",
        "exported_pod": "mig-0",
        "exported_container": "main",
    }
    om.add("DCGM_FI_DEV_FB_USED", mig, gauge(9000))
    om.add("DCGM_FI_PROF_GR_ENGINE_ACTIVE", mig, gauge("0.25"))  # no DEV_GPU_UTIL on MIG

    unallocated = exporter | {
        "gpu": "2",
        "UUID": DCGM_IDLE,
        "pci_bus_id": "00000000:1C:00.0",
        "device": "nvidia2",
        "modelName": "NVIDIA A100-SXM4-80GB",
        "Hostname": "gpu-node-1",
        "pod": "nvidia-dcgm-exporter-abcde",
    }
    om.add("DCGM_FI_DEV_FB_USED", unallocated, gauge(0))
    om.add("DCGM_FI_DEV_GPU_UTIL", unallocated, gauge(0))
    om.add("DCGM_FI_PROF_GR_ENGINE_ACTIVE", unallocated, gauge(0))


def _hami(om: OpenMetrics) -> None:
    """HAMi: v2.9+ names (with --legacy-metrics also on) for one device, legacy only for another."""
    scheduler = {
        "job": "hami-scheduler",
        "instance": "10.0.2.3:9395",
        "namespace": "hami-system",
        "container": "vgpu-scheduler-extender",
        "pod": "hami-scheduler-5d8f7",
        "service": "hami-scheduler",
        "zone": "vGPU",
    }
    new = scheduler | {
        "exported_namespace": "team-a",
        "exported_pod": "llm-0",
        "node": "n1",
        "container_index": "0",
        "device_uuid": HAMI_NEW,
    }
    om.add("hami_vgpu_core_allocated_ratio", new, gauge(30))
    om.add("hami_vgpu_memory_allocated_bytes", new, gauge(4 * GIB))
    same_as_legacy = scheduler | {
        "podnamespace": "team-a",
        "podname": "llm-0",
        "nodename": "n1",
        "containeridx": "0",
        "deviceuuid": HAMI_NEW,
    }
    om.add("vGPUCoreAllocated", same_as_legacy, gauge(30))
    om.add("vGPUMemoryAllocated", same_as_legacy, gauge(4 * GIB))
    old = scheduler | {
        "podnamespace": "team-b",
        "podname": "old-0",
        "nodename": "n2",
        "containeridx": "0",
        "deviceuuid": HAMI_OLD,
    }
    om.add("vGPUCorePercentage", old | {"deprecated_version": "v2.8"}, gauge(50))
    om.add("vGPUCoreAllocated", old, gauge(50))
    om.add("vGPUMemoryAllocated", old, gauge(8 * GIB))

    # vGPU monitor (device plugin): new names scraped with honorLabels: true, legacy names plain.
    monitor = {"job": "hami-device-plugin", "instance": "10.0.2.9:9394", "zone": "vGPU"}
    used = monitor | {
        "namespace": "team-a",
        "pod": "llm-0",
        "container": "main",
        "vdevice_index": "0",
        "device_uuid": HAMI_NEW,
    }
    om.add("hami_container_device_utilization_ratio", used, gauge(40))
    om.add("hami_vgpu_memory_used_bytes", used, gauge(2 * GIB))
    used_old = monitor | {
        "podnamespace": "team-b",
        "podname": "old-0",
        "ctrname": "main",
        "vdeviceid": "0",
        "deviceuuid": HAMI_OLD,
    }
    om.add("Device_utilization_desc_of_container", used_old, gauge(20))
    om.add("vGPU_device_memory_usage_in_bytes", used_old, gauge(GIB))

    om.add(
        "hami_gpu_memory_limit_bytes",
        scheduler
        | {"node": "n1", "device_uuid": HAMI_NEW, "device_index": "0", "device_type": "NVIDIA-NVIDIA A100-PCIE-40GB"},
        gauge(40 * GIB),
    )
    om.add(
        "GPUDeviceMemoryLimit",
        scheduler | {"nodeid": "n2", "deviceuuid": HAMI_OLD, "deviceidx": "0", "devicetype": "NVIDIA-Tesla T4"},
        gauge(15 * GIB),
    )


def _cadvisor(om: OpenMetrics) -> None:
    kubelet = {
        "job": "kubelet",
        "metrics_path": "/metrics/cadvisor",
        "endpoint": "https-metrics",
        "service": "kube-prometheus-kubelet",
    }
    web = kubelet | {"node": "n1", "instance": "10.0.0.1:10250", "namespace": "team-a", "pod": "web-1"}
    short = kubelet | {"node": "n2", "instance": "10.0.0.2:10250", "namespace": "team-b", "pod": "batch-1"}

    # Network: pod sandbox series; web-1's sandbox restarts right after the 10:47:30 scrape.
    om.add(
        "container_network_transmit_bytes_total",
        web
        | {
            "interface": "eth0",
            "id": "/kubepods/besteffort/pod-web-1/sandbox",
            "image": "registry.k8s.io/pause:3.9",
            "name": "sandbox-web-1",
        },
        counter("1024", restarts=[at(10, 47, 30)]),
        kind="counter",
    )
    om.add(
        "container_network_transmit_bytes_total",
        short
        | {
            "interface": "eth0",
            "id": "/kubepods/burstable/pod-batch-1/sandbox",
            "image": "registry.k8s.io/pause:3.9",
            "name": "sandbox-batch-1",
        },
        counter("2048", COUNTER_TWENTY_MINUTES),
        kind="counter",
    )
    # Node-level series: no pod, must not count for anyone.
    om.add(
        "container_network_transmit_bytes_total",
        kubelet | {"node": "n1", "instance": "10.0.0.1:10250", "id": "/", "interface": "ens192"},
        counter("100000"),
        kind="counter",
    )

    # CPU and memory: container series count; the pod cgroup (no container label) must not.
    om.add(
        "container_cpu_usage_seconds_total",
        web | {"container": "app", "image": "nginx:1.25", "id": "/kubepods/pod-web-1/app", "cpu": "total"},
        counter("0.25"),
        kind="counter",
    )
    om.add(
        "container_cpu_usage_seconds_total",
        web | {"id": "/kubepods/pod-web-1", "cpu": "total"},
        counter("0.25"),
        kind="counter",
    )
    om.add(
        "container_cpu_usage_seconds_total",
        short | {"container": "worker", "image": "batch:2", "id": "/kubepods/pod-batch-1/worker", "cpu": "total"},
        counter("1.5", COUNTER_TWENTY_MINUTES),
        kind="counter",
    )
    om.add(
        "container_memory_working_set_bytes",
        web | {"container": "app", "image": "nginx:1.25", "id": "/kubepods/pod-web-1/app"},
        gauge(GIB // 2),
    )
    om.add("container_memory_working_set_bytes", web | {"id": "/kubepods/pod-web-1"}, gauge(GIB // 2))
    om.add(
        "container_memory_working_set_bytes",
        short | {"container": "worker", "image": "batch:2", "id": "/kubepods/pod-batch-1/worker"},
        gauge(3 * GIB, TWENTY_MINUTES),
    )


def _kube_state(om: OpenMetrics) -> None:
    ksm = {"job": "kube-state-metrics", "instance": "10.0.0.5:8080"}
    pods = [
        # namespace, pod, container, node, cpu request, memory request, running, span
        ("team-a", "web-1", "app", "n1", "0.5", GIB, 1, ALWAYS),
        ("team-b", "batch-1", "worker", "n2", "1", GIB, 1, TWENTY_MINUTES),
        ("team-a", "done-1", "job", "n1", "2", 2 * GIB, 0, ALWAYS),  # completed: requests, not running
    ]
    for namespace, pod, container, node, cpu, memory, running, span in pods:
        base = ksm | {"namespace": namespace, "pod": pod, "uid": f"uid-{pod}", "container": container}
        om.add(
            "kube_pod_container_resource_requests",
            base | {"node": node, "resource": "cpu", "unit": "core"},
            gauge(cpu, span),
        )
        om.add(
            "kube_pod_container_resource_requests",
            base | {"node": node, "resource": "memory", "unit": "byte"},
            gauge(memory, span),
        )
        om.add("kube_pod_container_status_running", base, gauge(running, span))

    for namespace, claim, size, storage_class, span in [
        ("team-a", "data-0", 10 * GIB, "fast-ssd", ALWAYS),
        ("team-b", "scratch", 3 * GIB, "standard", TWENTY_MINUTES),
    ]:
        base = ksm | {"namespace": namespace, "persistentvolumeclaim": claim}
        om.add("kube_persistentvolumeclaim_resource_requests_storage_bytes", base, gauge(size, span))
        om.add(
            "kube_persistentvolumeclaim_info",
            base | {"storageclass": storage_class, "volumename": f"pvc-{claim}", "volumemode": "Filesystem"},
            gauge(1, span),
        )


def _test_only(om: OpenMetrics) -> None:
    """Series for behaviours no real exporter shows on demand."""
    # A billing mode that changes from spot to on-demand at 10:30 (dimension split).
    om.add(
        "test_billing_mode",
        {"namespace": "team-a", "pod": "p-1", "billing_mode": "spot"},
        gauge(1, (START, at(10, 29, 45))),
    )
    om.add(
        "test_billing_mode",
        {"namespace": "team-a", "pod": "p-1", "billing_mode": "on-demand"},
        gauge(1, (at(10, 30, 15), END)),
    )
    # A value that makes a ratio query NaN (0/0).
    om.add("test_zero", {"namespace": "team-a", "pod": "z-1"}, gauge(0))
    # Alauda's project-quota shape: a platform metric with project and cluster labels.
    om.add(
        "cpaas_project_resourcequota",
        {"project": "proj-a", "cluster": "east", "type": "project-hard", "resource": "requests.nvidia.com/gpu"},
        gauge(4),
    )
    # A whole day (2026-03-01) of requests for a daily item: 0.25 per second from midnight.
    day = datetime(2026, 3, 1, tzinfo=UTC)
    span = (at(0, day=day), at(0, day=DAY))
    om.add(
        "test_daily_requests_total", {"namespace": "team-a", "service": "api"}, counter("0.25", span), kind="counter"
    )


def openmetrics() -> str:
    om = OpenMetrics()
    for part in (_seed, _namespaces, _dcgm, _hami, _cadvisor, _kube_state, _test_only):
        part(om)
    return om.render()


if __name__ == "__main__":  # pragma: no cover - handy for looking at the data
    print(openmetrics(), end="")
