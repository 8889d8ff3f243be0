"""DCGM utilisation joined to the pod that held each GPU, against a real Prometheus and the
simulated Kubernetes API, with both metering paths: the agent (its Kubernetes watch plus its
per-tick Prometheus step) and ``collect`` (hourly Kubernetes runs, then the Prometheus step with
the tenants they recorded). Both write the same records, and ``report --view pods`` gives:

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
  in the cluster: no GPU-hours from Kubernetes, so it is listed unmatched, with the tenant of its
  namespace (``namespace/team-a``, from the Kubernetes tenancy) and counted by its
  profile's share 3/7: measured 12/12 × 3/7 = 0.428571429, busy 0.25 × 3/7 = 0.107142857, idle
  0.428571429 − 0.107142857 = 0.321428572, share 0.107142857 / 0.428571429 = 0.2500.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from k8s_builders import namespace, node, pod, scenario, t
from k8s_paths import CLUSTER, collect_hourly
from k8s_paths import _instants as instants

from kubetally.app.agent import AgentRunner, AgentSettings
from kubetally.app.collect import ledger_tenant_of
from kubetally.config import Config, load_config
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, parse_time
from kubetally.reports.buckets import Per
from kubetally.reports.capacity import efficiency_view, pod_view
from kubetally.sim import SimServer
from kubetally.sources.prometheus.run import collect_prometheus

DAY = "2026-03-02"
HOUR = Period(parse_time(t("10:00:00", DAY)), parse_time(t("11:00:00", DAY)))
END = parse_time(t("11:02:01", DAY))


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


def config(tmp_path: Path) -> Config:
    """The dcgm preset; 3 h of backfill (08:00–11:00) so a first run does not query a week."""
    text = "collection:\n  presets: [dcgm]\n  max_backfill: 3h\n  settle_delay: 2m\n"
    (tmp_path / "kubetally.yaml").write_text(text, encoding="utf-8")
    return load_config([tmp_path / "kubetally.yaml"])


def agent_path(prometheus: Any, tmp_path: Path, ledger: Ledger) -> None:
    """``kubetally agent``: the Kubernetes watch and, every tick, its Prometheus step (which
    takes tenants from the watch), stepped to every event and period end on the sim's clock."""
    settings = AgentSettings(
        config=config(tmp_path), cluster=CLUSTER, db=None, prometheus_url=prometheus.url, destinations=None
    )
    plan = cloud()
    with SimServer(plan) as sim, AgentRunner(settings, ledger, sim.api_client(), clock=lambda: sim.now) as runner:
        assert [step.name for step in runner.steps] == ["prometheus"]
        runner.kubernetes.start()
        try:
            for at in instants(plan, END):
                sim.advance(at)
                runner.kubernetes.pump(timeout=10, until_rv=sim.resource_version)
                runner.tick()
        finally:
            runner.kubernetes.stop()


def collect_path(prometheus: Any, tmp_path: Path, ledger: Ledger) -> None:
    """``kubetally collect --kubernetes`` as an hourly cron job, then its Prometheus step with
    the tenants the Kubernetes source recorded (what ``app.collect`` does), at 11:02:01."""
    collect_hourly(cloud(), ledger, END)
    cfg = config(tmp_path)
    collect_prometheus(
        config=cfg,
        ledger=ledger,
        url=prometheus.url,
        cluster=CLUSTER,
        tenant_of=ledger_tenant_of(ledger, CLUSTER, cfg),
        clock=lambda: END,
    )


def rows(ledger: Ledger) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        (r.tenant, r.pod): (r.sku, r.matched, r.allocated, r.measured, r.busy, r.idle, r.unmeasured, r.share)
        for r in pod_view(ledger, HOUR.start, HOUR.end, Per.day)
    }


def test_utilisation_and_idle_per_pod_are_exact_and_the_same_on_both_paths(prometheus: Any, tmp_path: Path) -> None:
    found, written = {}, {}
    for path, run in (("agent", agent_path), ("collect", collect_path)):
        with Ledger.open(str(tmp_path / f"{path}.db")) as ledger:
            run(prometheus, tmp_path, ledger)
            found[path] = rows(ledger)
            written[path] = {
                (r.id, r.tenant, r.kind, r.item, r.namespace, r.name): r.usage
                for r in ledger.records(start=HOUR.start, end=HOUR.end)
            }
            dcgm = [r for r in ledger.records(start=HOUR.start, end=HOUR.end) if r.item == "GpuUtilization"]
            assert sorted((r.tenant, r.labels["pod"], r.labels["coverage_steps"], r.usage) for r in dcgm) == [
                ("namespace/team-a", "mig-0", "12/12", Decimal("0.25")),  # 0.25 of the instance × 1 h
                ("namespace/team-a", "train-0", "12/12", Decimal("0.5")),  # 0.5 × 1 h
                ("namespace/team-b", "infer-0", "4/12", Decimal("0.25")),  # 0.75 × 4 × 300 / 3600
            ]
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
        ("namespace/team-a", "mig-0"): (
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
    # --view efficiency counts the MIG instance's busy hours as GPU-hours too: 0.25 × 3/7.
    with Ledger.open(str(tmp_path / "agent.db")) as ledger:
        busy = {(r.tenant, r.sku): r.busy for r in efficiency_view(ledger, HOUR.start, HOUR.end, Per.day)}
    assert busy[("namespace/team-a", "nvidia-a100-sxm-40gb")] == D("0.107142857")
    # Every record of the hour, Kubernetes and Prometheus, is the same on both paths.
    assert written["collect"] == written["agent"]

    # The whole day from the command line (JSON), from the agent's ledger. train-0 ran from
    # 08:00 (the agent backfilled from its start): Kubernetes billed 08:00–11:00 = 3 GPU-h.
    # Samples begin at 09:50, so the 09:00 hour has 3 of its 12 steps (09:50, 09:55, 10:00;
    # each step averages the 5 minutes before it): coverage (3 + 12) / 24 = 15/24, measured
    # 15 × 300 / 3600 = 1.25, busy 0.5 × 1.25 = 0.625, idle 1.25 − 0.625 = 0.625, unmeasured
    # 3 − 1.25 = 1.75. mig-0 in the 09:00 hour: measured 3/12 × 3/7 = 0.107142857, busy 0.25 ×
    # 3/12 × 3/7 = 0.026785714, idle 0.080357143; for the day 0.321428572 + 0.080357143 =
    # 0.401785715. infer-0 only ran in the 10:00 hour.
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
        ("namespace/team-a", "train-0"): (D(3), D("1.75"), D("0.625"), "15/24", True),
        ("namespace/team-b", "infer-0"): (D("0.333333333"), D(0), D("0.083333333"), "4/12", True),
        ("namespace/team-a", "mig-0"): (D(0), D(0), D("0.401785715"), "15/24", False),
    }
