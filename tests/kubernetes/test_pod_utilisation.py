"""DCGM utilisation joined to the pod that held each GPU, against a real Prometheus and the
simulated Kubernetes API, with both metering paths (agent and hourly ``collect``).

Prometheus serves the series of ``tests/prometheus/prom_scenario.py`` (hour 10:00–11:00 on
2026-03-02, 5-minute steps, 12 per hour). The cluster below holds the pods those series name:

* ``train-0`` (team-a) holds 1 A100 80GB on ``gpu-node-1`` all hour. Kubernetes bills 1 GPU-h.
  DCGM (``exported_pod``, honorLabels false): GR_ENGINE_ACTIVE 0.5 in 12/12 steps → measured
  12 × 300 / 3600 = 1 GPU-h, busy 0.5, idle 1 − 0.5 = 0.5, unmeasured 0, share 0.5.
* ``infer-0`` (team-b) holds 1 H100 on ``gpu-node-2`` 10:20–10:40. Kubernetes bills
  1200 / 3600 = 0.333333333 GPU-h. DCGM (``pod``, honorLabels true; no profiling metric, so
  GPU_UTIL 75 % / 100) in 4/12 steps → measured 4 × 300 / 3600 = 0.333333333, busy 0.75 × 4 ×
  300 / 3600 = 0.25, idle 0.333333333 − 0.25 = 0.083333333, unmeasured 0, share 0.25 /
  0.333333333 = 0.7500 (4 places). The other 40 minutes of the hour are not "0 % busy".
* ``mig-0`` (team-a namespace) is in DCGM's series (a 3g.20gb instance of an A100 40GB) but not
  in the cluster: no GPU-hours from Kubernetes, so it is listed unmatched, with its own tenant
  (the namespace's project ``proj-a``, as the Prometheus source resolves it) and counted by its
  profile's share 3/7: measured 12/12 × 3/7 = 0.428571429, busy 0.25 × 3/7 = 0.107142857, idle
  0.428571429 − 0.107142857 = 0.321428572, share 0.107142857 / 0.428571429 = 0.2500.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from k8s_builders import namespace, node, pod, scenario, t
from k8s_paths import CLUSTER, collect_hourly, run_agent

from kubetally.config import load_config
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, parse_time
from kubetally.reports.buckets import Per
from kubetally.reports.capacity import pod_view
from kubetally.sources.prometheus.client import PrometheusClient
from kubetally.sources.prometheus.collector import Collector

DAY = "2026-03-02"
HOUR = Period(parse_time(t("10:00:00", DAY)), parse_time(t("11:00:00", DAY)))


def cloud() -> Any:
    tenant = {"kubetally.io/tenant": "true"}
    a100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.count": "8"}
    h100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}
    return scenario(
        t("09:00:00", DAY),
        [
            namespace("team-a", tenant),
            namespace("team-b", tenant),
            node("gpu-node-1", labels=a100, gpus={"nvidia.com/gpu": "8"}),
            node("gpu-node-2", labels=h100, gpus={"nvidia.com/gpu": "8"}),
            pod(
                "train-0",
                "team-a",
                node_name="gpu-node-1",
                requests={"nvidia.com/gpu": "1"},
                started=t("08:00:00", DAY),
            ),
            pod(
                "infer-0",
                "team-b",
                node_name="gpu-node-2",
                requests={"nvidia.com/gpu": "1"},
                started=t("10:20:00", DAY),
                finished=t("10:40:00", DAY),
            ),
        ],
    )


def utilisation(prometheus: Any, tmp_path: Path) -> list[Any]:
    (tmp_path / "dcgm.yaml").write_text("collection:\n  presets: [dcgm]\n", encoding="utf-8")
    config = load_config([tmp_path / "dcgm.yaml"])
    with PrometheusClient(prometheus.url, timeout=30) as client:
        return Collector(client, cluster=CLUSTER).collect(config.item("GpuUtilization"), HOUR).records


def rows(ledger: Ledger) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        (r.tenant, r.pod): (r.sku, r.matched, r.allocated, r.measured, r.busy, r.idle, r.unmeasured, r.share)
        for r in pod_view(ledger, HOUR.start, HOUR.end, Per.day)
    }


def test_utilisation_and_idle_per_pod_are_exact_and_the_same_on_both_paths(prometheus: Any, tmp_path: Path) -> None:
    dcgm = utilisation(prometheus, tmp_path)
    assert sorted((r.namespace, r.labels["pod"], r.labels["coverage_steps"]) for r in dcgm) == [
        ("team-a", "mig-0", "12/12"),
        ("team-a", "train-0", "12/12"),
        ("team-b", "infer-0", "4/12"),
    ]
    end = parse_time(t("11:02:01", DAY))
    found = {}
    for path in ("agent", "collect"):
        with Ledger.open(str(tmp_path / f"{path}.db")) as ledger:
            if path == "agent":
                run_agent(cloud(), ledger, end)
            else:
                collect_hourly(cloud(), ledger, end)
            ledger.write(dcgm)
            found[path] = rows(ledger)
    D = Decimal
    assert found["agent"] == {
        ("namespace/team-a", "train-0"): ("nvidia-a100-sxm-80gb", True, D(1), D(1), D("0.5"), D("0.5"), D(0), D("0.5")),
        ("namespace/team-b", "infer-0"): (
            "nvidia-h100-sxm-80gb",
            True,
            D("0.333333333"),
            D("0.333333333"),
            D("0.25"),
            D("0.083333333"),
            D(0),
            D("0.75"),
        ),
        ("proj-a", "mig-0"): (
            "nvidia-a100-sxm-40gb",
            False,
            D(0),
            D("0.428571429"),
            D("0.107142857"),
            D("0.321428572"),
            D(0),
            D("0.25"),
        ),
    }
    assert found["collect"] == found["agent"]
    # The whole day from the command line (JSON), from the agent's ledger: train-0 ran from
    # 08:00 (the agent backfilled from its start), so Kubernetes billed 08:00–11:00 = 3 GPU-h,
    # of which only 10:00–11:00 (1 GPU-h) has DCGM data here: unmeasured 3 − 1 = 2, idle still 0.5.
    import json

    from typer.testing import CliRunner

    from kubetally.cli.main import app

    args = ["report", "--db", str(tmp_path / "agent.db"), "--prices", "example", "--view", "pods"]
    result = CliRunner().invoke(app, [*args, "--from", DAY, "--to", "2026-03-03", "--format", "json"])
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.output.splitlines() if x.startswith("[")]  # after the example-prices warning
    shown = {(r["tenant"], r["pod"]): r for r in json.loads(line, parse_float=Decimal)}
    assert {
        k: (r["allocated"], r["unmeasured"], r["idle"], r["coverage_steps"], r["matched"]) for k, r in shown.items()
    } == {
        ("namespace/team-a", "train-0"): (D(3), D(2), D("0.5"), "12/12", True),
        ("namespace/team-b", "infer-0"): (D("0.333333333"), D(0), D("0.083333333"), "4/12", True),
        ("proj-a", "mig-0"): (D(0), D(0), D("0.321428572"), "12/12", False),
    }
