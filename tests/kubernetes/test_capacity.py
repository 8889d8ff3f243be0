"""The provider's side of each node: capacity, down/cordoned time, idle and over-commit, exact.

One cluster (``provider_cloud``), the hour 10:00–11:00 on 2026-11-02, metered by the agent and
by ``collect`` (hourly, as a cron job) with ``capacity: true``. Truth per node, by hand (every
quantity is GPU-seconds × fraction ÷ 3600, rounded half-even to 1e-9 h, per record):

* ``h100-half`` — 8 H100, shared; team-a holds 3 GPUs and team-b 1 GPU all hour.
  capacity 8, allocated 3 + 1 = 4, idle 8 − 4 = 4.
* ``a100-mig`` — 2 A100 80GB in MIG mixed mode, per GPU 2×1g + 1×2g + 1×3g:
  capacity 1g.10gb: 4 × 1/7 = 0.571428571; 2g.20gb: 2 × 2/7 = 0.571428571;
  3g.40gb: 2 × 3/7 = 0.857142857 (Σ 2.0 GPUs, one record each).
  team-a holds one 1g (1/7 = 0.142857143), team-b one 2g (0.285714286) and one 3g (0.428571429).
  idle 1g: 0.571428571 − 0.142857143 = 0.428571428; 2g: 0.571428571 − 0.285714286 = 0.285714285;
  3g: 0.857142857 − 0.428571429 = 0.428571428.
* ``h100-dedicated`` — 8 H100 dedicated to team-c: capacity 8, allocated 8 (the node's own
  record), idle 0 (no idle record).
* ``h100-flaky`` — 8 H100, NotReady 10:20:00–10:40:00; team-a holds 2 GPUs all hour.
  capacity 8, down 8 × 1200 s = 2.666666667, allocated 2, idle 6.
* ``t4-oversold`` — 1 T4 time-sliced 4 ways (``nvidia.com/gpu: 4``), six team-b pods of one
  replica each (the device plugin advertised more earlier): capacity 4 × 1/4 = 1 GPU,
  allocated 6 × 1/4 = 1.5, idle 0, over-commit 0.5.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from k8s_builders import namespace, node, pod, scenario, t
from k8s_paths import collect_hourly, run_agent

from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.record import UsageRecord
from kubetally.sim import Scenario

TEAM_A, TEAM_B, TEAM_C = "namespace/team-a", "namespace/team-b", "namespace/team-c"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}
HOUR_START, HOUR_END = parse_time(t("10:00:00")), parse_time(t("11:00:00"))


def _ready(obj: dict[str, Any], status: str, since: str) -> dict[str, Any]:
    out = {**obj, "status": {**obj["status"]}}
    out["status"]["conditions"] = [
        {"type": "Ready", "status": status, "reason": "KubeletReady", "lastTransitionTime": since}
    ]
    return out


def provider_cloud() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tenant = {"kubetally.io/tenant": "true"}
    flaky = node("h100-flaky", labels=H100, gpus={"nvidia.com/gpu": "8"})
    objects = [
        namespace("team-a", tenant),
        namespace("team-b", tenant),
        namespace("team-c", tenant),
        node("h100-half", labels=H100, gpus={"nvidia.com/gpu": "8"}),
        node(
            "a100-mig",
            labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/mig.strategy": "mixed"},
            gpus={"nvidia.com/mig-1g.10gb": "4", "nvidia.com/mig-2g.20gb": "2", "nvidia.com/mig-3g.40gb": "2"},
        ),
        node(
            "h100-dedicated", labels={**H100, "kubetally.io/tenant": "namespace.team-c"}, gpus={"nvidia.com/gpu": "8"}
        ),
        flaky,
        node(
            "t4-oversold",
            labels={
                "nvidia.com/gpu.product": "Tesla-T4-SHARED",
                "nvidia.com/gpu.replicas": "4",
                "nvidia.com/gpu.count": "1",
                "nvidia.com/gpu.sharing-strategy": "time-slicing",
            },
            gpus={"nvidia.com/gpu": "4"},
        ),
    ]
    started = "2026-11-02T09:00:00Z"

    def gpu_pod(name: str, ns: str, node_name: str, resource: str, count: str) -> dict[str, Any]:
        return pod(name, ns, node_name=node_name, requests={resource: count}, started=started, created=started)

    objects += [
        gpu_pod("train-a", "team-a", "h100-half", "nvidia.com/gpu", "3"),
        gpu_pod("train-b", "team-b", "h100-half", "nvidia.com/gpu", "1"),
        gpu_pod("mig-a-1g", "team-a", "a100-mig", "nvidia.com/mig-1g.10gb", "1"),
        gpu_pod("mig-b-2g", "team-b", "a100-mig", "nvidia.com/mig-2g.20gb", "1"),
        gpu_pod("mig-b-3g", "team-b", "a100-mig", "nvidia.com/mig-3g.40gb", "1"),
        gpu_pod("flaky-a", "team-a", "h100-flaky", "nvidia.com/gpu", "2"),
        *(gpu_pod(f"ts-b-{i}", "team-b", "t4-oversold", "nvidia.com/gpu", "1") for i in range(6)),
    ]
    events = [
        {"at": t("10:20:00"), "type": "MODIFIED", "object": _ready(flaky, "False", t("10:20:00"))},
        {"at": t("10:40:00"), "type": "MODIFIED", "object": _ready(flaky, "True", t("10:40:00"))},
    ]
    return objects, events


def provider_scenario() -> Scenario:
    objects, events = provider_cloud()
    return scenario(t("10:00:00"), objects, events)


def gpu_hours(records: list[UsageRecord]) -> dict[tuple[str, str, str, str], Decimal]:
    """(node, kind, tenant, gpu_profile) → GPU-hours of 10:00–11:00."""
    out: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    for r in records:
        if r.item != "gpu_hours" or r.start != HOUR_START:
            continue
        node_name = r.labels.get("node", r.name)
        out[(node_name, r.kind, r.tenant, r.labels.get("gpu_profile", ""))] += r.usage
    return dict(out)


EXPECTED = {
    ("h100-half", "NodeCapacity", "", ""): Decimal(8),
    ("h100-half", "Pod", TEAM_A, ""): Decimal(3),
    ("h100-half", "Pod", TEAM_B, ""): Decimal(1),
    ("h100-half", "NodeIdle", "", ""): Decimal(4),
    ("a100-mig", "NodeCapacity", "", "1g.10gb"): Decimal("0.571428571"),
    ("a100-mig", "NodeCapacity", "", "2g.20gb"): Decimal("0.571428571"),
    ("a100-mig", "NodeCapacity", "", "3g.40gb"): Decimal("0.857142857"),
    ("a100-mig", "Pod", TEAM_A, "1g.10gb"): Decimal("0.142857143"),
    ("a100-mig", "Pod", TEAM_B, "2g.20gb"): Decimal("0.285714286"),
    ("a100-mig", "Pod", TEAM_B, "3g.40gb"): Decimal("0.428571429"),
    ("a100-mig", "NodeIdle", "", "1g.10gb"): Decimal("0.428571428"),
    ("a100-mig", "NodeIdle", "", "2g.20gb"): Decimal("0.285714285"),
    ("a100-mig", "NodeIdle", "", "3g.40gb"): Decimal("0.428571428"),
    ("h100-dedicated", "NodeCapacity", "", ""): Decimal(8),
    ("h100-dedicated", "Node", TEAM_C, ""): Decimal(8),
    ("h100-flaky", "NodeCapacity", "", ""): Decimal(8),
    ("h100-flaky", "NodeDown", "", ""): Decimal("2.666666667"),
    ("h100-flaky", "Pod", TEAM_A, ""): Decimal(2),
    ("h100-flaky", "NodeIdle", "", ""): Decimal(6),
    ("t4-oversold", "NodeCapacity", "", "shared-4"): Decimal(1),
    ("t4-oversold", "Pod", TEAM_B, "shared-4"): Decimal("1.5"),
    ("t4-oversold", "NodeOvercommit", "", "shared-4"): Decimal("0.5"),
}


def _sums_hold(got: dict[tuple[str, str, str, str], Decimal]) -> None:
    """Σ tenants + idle − over-commit = capacity, exactly, per node and profile."""
    nodes = {(n, p) for n, k, _, p in got if k == "NodeCapacity"}
    for name, profile in nodes:
        capacity = got[(name, "NodeCapacity", "", profile)]
        tenants = sum(v for (n, k, tn, p), v in got.items() if n == name and p == profile and tn)
        idle = got.get((name, "NodeIdle", "", profile), Decimal(0))
        over = got.get((name, "NodeOvercommit", "", profile), Decimal(0))
        assert tenants + idle - over == capacity, (name, profile)


def _records(ledger: Ledger) -> list[UsageRecord]:
    return list(ledger.records(start=HOUR_START, end=HOUR_END))


@pytest.mark.parametrize("path", ["agent", "collect"])
def test_capacity_allocated_and_idle_per_node_exact(path: str, tmp_path: Path) -> None:
    stop = parse_time(t("11:02:01"))
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        if path == "agent":
            run_agent(provider_scenario(), ledger, stop, capacity=True)
        else:
            collect_hourly(provider_scenario(), ledger, stop, capacity=True)
        got = gpu_hours(_records(ledger))
    expected = dict(EXPECTED)
    if path == "collect":
        # collect reads state once per hour (10:02 and 11:02): the node was Ready both times,
        # so the 20 minutes down in between leave no trace it could read.
        del expected[("h100-flaky", "NodeDown", "", "")]
    assert got == expected
    _sums_hold(got)


def test_capacity_records_are_off_unless_configured(tmp_path: Path) -> None:
    stop = parse_time(t("11:02:01"))
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        run_agent(provider_scenario(), ledger, stop)
        kinds = {r.kind for r in _records(ledger)}
    assert kinds == {"Pod", "Node"}


def test_cpu_and_memory_capacity_and_idle(tmp_path: Path) -> None:
    """h100-half: 96 cores and 1056768 Mi = 1032 GiB (the builder's defaults); its pods request
    no CPU or memory, so all of it is idle: 96 core-h and 1032 GiB-h."""
    stop = parse_time(t("11:02:01"))
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        run_agent(provider_scenario(), ledger, stop, capacity=True)
        half = [r for r in _records(ledger) if r.name == "h100-half" and r.item != "gpu_hours"]
    got = {(r.kind, r.item): r.usage for r in half}
    assert got == {
        ("NodeCapacity", "cpu_core_hours"): Decimal(96),
        ("NodeIdle", "cpu_core_hours"): Decimal(96),
        ("NodeCapacity", "memory_gib_hours"): Decimal(1032),
        ("NodeIdle", "memory_gib_hours"): Decimal(1032),
    }
    assert all(r.tenant == "" for r in half)


PRICES = """
currency: USD
prices:
  - category: compute
    item: gpu_hours
    labels: [gpu_sku]
    groups:
      - {name: h100, match: {gpu_sku: [nvidia-h100-sxm-80gb]}, price: "2.00"}
      - {name: a100, match: {gpu_sku: [nvidia-a100-sxm-80gb]}, price: "1.50"}
      - {name: t4, match: {gpu_sku: [nvidia-t4-16gb]}, price: "0.40"}
"""


def test_capacity_view_per_sku_priced(tmp_path: Path) -> None:
    """10:00–11:00 by SKU (agent path), values at list price:

    * H100: capacity 8 (half) + 8 (dedicated) + 8 (flaky) = 24; dedicated 8; shared 3 + 1 + 2 = 6;
      idle 4 + 6 = 10; down 2.666666667; rate 14/24 = 0.5833; sold 14 × 2.00 = 28.00,
      idle 10 × 2.00 = 20.00.
    * A100: capacity 0.571428571 + 0.571428571 + 0.857142857 = 1.999999999; shared 0.142857143 +
      0.285714286 + 0.428571429 = 0.857142858; idle 0.428571428 + 0.285714285 + 0.428571428 =
      1.142857141; rate 0.857142858 / 1.999999999 = 0.4286; sold at 1.50 per line, half-up to the
      micro-unit: 0.214286 + 0.428571 + 0.642857 = 1.285714; idle 0.642857 + 0.428571 + 0.642857
      = 1.714285.
    * T4: capacity 1, shared 1.5, over-commit 0.5, rate 1.5; sold 1.5 × 0.40 = 0.60, idle 0.
    """
    from kubetally.rating.pricebook import PriceBook
    from kubetally.reports.buckets import Per
    from kubetally.reports.capacity import capacity_view

    (tmp_path / "prices.yaml").write_text(PRICES)
    pricebook = PriceBook.load(tmp_path / "prices.yaml")
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        run_agent(provider_scenario(), ledger, parse_time(t("11:02:01")), capacity=True)
        rows = capacity_view(ledger, pricebook, None, HOUR_START, HOUR_END, Per.day)
    got = {
        r.sku: (r.capacity, r.dedicated, r.shared, r.idle, r.down, r.overcommit, r.allocation_rate, r.sold_value)
        for r in rows
    }
    idle_values = {r.sku: r.idle_value for r in rows}
    D = Decimal
    assert got == {
        "nvidia-a100-sxm-80gb": (
            D("1.999999999"),
            D(0),
            D("0.857142858"),
            D("1.142857141"),
            D(0),
            D(0),
            D("0.4286"),
            1_285_714,
        ),
        "nvidia-h100-sxm-80gb": (D(24), D(8), D(6), D(10), D("2.666666667"), D(0), D("0.5833"), 28_000_000),
        "nvidia-t4-16gb": (D(1), D(0), D("1.5"), D(0), D(0), D("0.5"), D("1.5000"), 600_000),
    }
    assert idle_values == {"nvidia-a100-sxm-80gb": 1_714_285, "nvidia-h100-sxm-80gb": 20_000_000, "nvidia-t4-16gb": 0}
    for r in rows:
        assert r.dedicated + r.shared + r.idle - r.overcommit == r.capacity


def test_focus_exports_idle_as_the_unallocated_remainder(tmp_path: Path) -> None:
    """FOCUS, resource rows, hour 10:00: h100-half's idle 4 GPU-h is one row with no tenant and
    null Allocated* (the unallocated remainder), next to its two tenant rows that name the node
    as a split; capacity, down and over-commit rows are not costs and are not exported. Idle is
    priced like usage: 4 × 2.00 = 8.00 list cost."""
    import csv
    import io

    from kubetally.rating.pricebook import PriceBook
    from kubetally.reports.focus import export_focus

    (tmp_path / "prices.yaml").write_text(PRICES)
    pricebook = PriceBook.load(tmp_path / "prices.yaml")
    out = io.StringIO()
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        run_agent(provider_scenario(), ledger, parse_time(t("11:02:01")), capacity=True)
        export_focus(
            ledger, pricebook, None, HOUR_START, HOUR_END, out, grain="hour", rows="resource", skip_unpriced=True
        )
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["x_Kind"] for r in rows} == {"Pod", "Node", "NodeIdle"}
    half = [r for r in rows if "h100-half" in (r["ResourceId"] or "") and r["x_Item"] == "gpu_hours"]
    by_kind = {(r["x_Kind"], r["SubAccountId"]): r for r in half}
    idle = by_kind[("NodeIdle", "")]
    assert (idle["ConsumedQuantity"], idle["ListCost"]) == ("4.000000000", "8.000000")
    assert all(idle[c] == "" for c in ("AllocatedMethodId", "AllocatedResourceId", "AllocatedMethodDetails"))
    tenant_rows = [r for (kind, _), r in by_kind.items() if kind == "Pod"]
    assert len(tenant_rows) == 2 and all(r["AllocatedMethodId"] for r in tenant_rows)


def test_efficiency_joins_dcgm_busy_hours_to_what_the_tenant_was_billed(tmp_path: Path) -> None:
    """10:00–11:00 (agent path) plus DCGM utilisation records as the dcgm preset writes them:
    team-a held 3 H100 on h100-half and 2 on h100-flaky = 5 GPU-h; DCGM measured 1.25 busy
    GPU-h on one GPU with samples all hour and 0.5 on another with 20 minutes of samples
    (coverage 0.3333): busy 1.75, share 1.75 / 5 = 0.35, one partial record; its 1g MIG slice
    (1/7 = 0.142857143 GPU-h) has no DCGM data: busy 0, share 0. team-b: H100 1, A100 MIG
    0.285714286 + 0.428571429 = 0.714285715, T4 1.5 GPU-h, no DCGM data. team-c: 8 dedicated."""
    from kubetally.periods import Period, PeriodKind
    from kubetally.reports.buckets import Per
    from kubetally.reports.capacity import efficiency_view

    def busy(gpu: str, usage: str, coverage: str, steps: str) -> UsageRecord:
        return UsageRecord.measure(
            cluster="gpu-east",
            kind="Gpu",
            category="Gpu",
            item="GpuUtilization",
            name=gpu,
            namespace="team-a",
            tenant=TEAM_A,
            period_kind=PeriodKind.hourly,
            period=Period(HOUR_START, HOUR_END),
            usage=usage,
            unit="busy-GPU-hours",
            dimensions={"modelName": "NVIDIA H100 80GB HBM3"},
            labels={"coverage": coverage, "coverage_steps": steps},
        )

    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        run_agent(provider_scenario(), ledger, parse_time(t("11:02:01")), capacity=True)
        ledger.write([busy("GPU-1", "1.25", "1", "12/12"), busy("GPU-2", "0.5", "0.3333", "4/12")])
        rows = efficiency_view(ledger, HOUR_START, HOUR_END, Per.day)
    got = {(r.tenant, r.sku): (r.dedicated, r.shared, r.busy, r.share, r.partial) for r in rows}
    D = Decimal
    assert got == {
        (TEAM_A, "nvidia-a100-sxm-80gb"): (D(0), D("0.142857143"), D(0), D(0), 0),
        (TEAM_A, "nvidia-h100-sxm-80gb"): (D(0), D(5), D("1.75"), D("0.35"), 1),
        (TEAM_B, "nvidia-a100-sxm-80gb"): (D(0), D("0.714285715"), D(0), D(0), 0),
        (TEAM_B, "nvidia-h100-sxm-80gb"): (D(0), D(1), D(0), D(0), 0),
        (TEAM_B, "nvidia-t4-16gb"): (D(0), D("1.5"), D(0), D(0), 0),
        (TEAM_C, "nvidia-h100-sxm-80gb"): (D(8), D(0), D(0), D(0), 0),
    }


def test_report_view_capacity_on_the_command_line(tmp_path: Path) -> None:
    """The whole day as the agent metered it: it started at 10:00 and backfilled 6 h, so the
    hours 04:00–11:00 (7 h) are in the ledger. H100: 3 nodes × 8 GPUs × 7 h = 168 capacity,
    dedicated 8 × 7 = 56, shared (3 + 1 + 2) × 2 h (pods started 09:00) = 12, idle 168 − 68 =
    100, down 2.666666667, rate 68 / 168 = 0.4048, sold 68 × 2.00 = 136, idle 100 × 2.00 = 200."""
    import json

    from typer.testing import CliRunner

    from kubetally.cli.main import app

    (tmp_path / "prices.yaml").write_text(PRICES)
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db) as ledger:
        run_agent(provider_scenario(), ledger, parse_time(t("11:02:01")), capacity=True)
    args = ["report", "--db", db, "--prices", str(tmp_path / "prices.yaml"), "--from", "2026-11-02"]
    result = CliRunner().invoke(app, [*args, "--to", "2026-11-03", "--view", "capacity", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["gpu_sku"]: r for r in json.loads(result.output, parse_float=Decimal)}
    h100 = rows["nvidia-h100-sxm-80gb"]
    assert {k: h100[k] for k in ("capacity", "allocated_dedicated", "allocated_shared", "idle", "down")} == {
        "capacity": 168,
        "allocated_dedicated": 56,
        "allocated_shared": 12,
        "idle": 100,
        "down": Decimal("2.666666667"),
    }
    assert (h100["allocation_rate"], h100["sold_value_micros"], h100["idle_value_micros"]) == (
        Decimal("0.4048"),
        136_000_000,
        200_000_000,
    )
    bad = CliRunner().invoke(app, [*args, "--to", "2026-11-03", "--view", "nope"])
    assert bad.exit_code == 1 and "--view must be usage, capacity, efficiency or pods" in bad.output
