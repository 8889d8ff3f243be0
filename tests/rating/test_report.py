"""``build_report`` and its renderings over the fixed scenario (see conftest), on SQLite and
PostgreSQL. Every expected cost is derived by hand next to it; money is in micro-units."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from kubetally.config import Config
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.rating.pricebook import PriceBook
from kubetally.reports import ReportError, build_report, render_csv, render_json, render_table

from .conftest import DEC, NOV, hour, record

EXPECTED_TABLE = Path(__file__).resolve().parent.parent / "data" / "rating" / "report_tenant_item_month.txt"


def costs(report) -> dict[tuple[str, ...], int]:  # type: ignore[no-untyped-def]
    return {(row.period.start.strftime("%Y-%m-%d"), *row.group.values()): row.cost for row in report.rows}


def test_month_by_tenant_and_item(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant,item", per="month")
    assert costs(report) == {
        # acme H100 on-demand, 10 % off: 8 h × 3.90 × 0.9 = 28.08 (15th, old price)
        #                                + 8 h × 3.50 × 0.9 = 25.20 (16th, new price) = 53.28
        ("2026-11-01", "acme", "compute/gpu_hours"): 53_280_000,
        # acme CPU, tiers per month [≤100 @ 0.04, then 0.03], 10 % off:
        #   15th: 60 @ 0.036 = 2.16; 16th: 40 @ 0.036 = 1.44 + 30 @ 0.027 = 0.81 → 4.41
        ("2026-11-01", "acme", "compute/cpu_core_hours"): 4_410_000,
        # beta H100 spot: 4 × 1.95 = 7.80 + 4 × 1.80 = 7.20 → 15.00; the 2 B200 hours are unpriced
        ("2026-11-01", "beta", "compute/gpu_hours"): 15_000_000,
        # beta CPU: 0.0000125 × 0.04 = 0.0000005 = 0.5 micro → ROUND_HALF_UP → 1 micro
        ("2026-11-01", "beta", "compute/cpu_core_hours"): 1,
        # beta vGPU memory: 3 Gi-h T4 × 0.002 = 0.006 + 1.5 Gi-h P100 × 0.001 (default) = 0.0015
        ("2026-11-01", "beta", "VgpuMemory/VgpuMemoryUsed"): 7_500,
    }
    # 53.28 + 4.41 + 15.00 + 0.000001 + 0.0075 = 72.697501
    assert report.total == 72_697_501 == sum(row.cost for row in report.rows)
    # List (no discount): 31.20 + 28.00 + 2.40 + 1.60 + 0.90 + 15.00 + 0.000001 + 0.0075 = 79.107501
    assert report.list_total == 79_107_501
    gpu_beta = next(r for r in report.rows if r.group == {"tenant": "beta", "item": "compute/gpu_hours"})
    assert gpu_beta.usage == Decimal("10")  # 4 + 4 spot + 2 unpriced B200: usage is never dropped
    assert gpu_beta.status == "partly unpriced"
    assert [(u.item, u.usage, u.lines) for u in report.unpriced] == [("gpu_hours", Decimal("2"), 1)]
    assert "nvidia-b200-180gb" in report.unpriced[0].reason


def test_stored_expected_table(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant,item", per="month", unit="display")
    console = Console(width=120, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    render_table(report, console)
    assert console.export_text() == EXPECTED_TABLE.read_text(encoding="utf-8")


def test_per_day_subtotals_add_up(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant", per="day")
    assert costs(report) == {
        # acme 15th: GPU 28.08 + CPU 2.16 = 30.24
        ("2026-11-15", "acme"): 30_240_000,
        # beta 15th: GPU spot 7.80 + CPU 1 micro + vGPU memory 0.0075 = 7.807501
        ("2026-11-15", "beta"): 7_807_501,
        # acme 16th: GPU 25.20 + CPU 1.44 + 0.81 = 27.45
        ("2026-11-16", "acme"): 27_450_000,
        # beta 16th: GPU spot 4 × 1.80 = 7.20 (B200 unpriced)
        ("2026-11-16", "beta"): 7_200_000,
    }
    assert [(p.start.day, cost) for p, cost in report.subtotals()] == [
        (15, 38_047_501),  # 30.24 + 7.807501
        (16, 34_650_000),  # 27.45 + 7.20
    ]
    assert report.total == 72_697_501  # = 38.047501 + 34.65


def test_iso_weeks_start_monday(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant", per="week")
    # Sunday the 15th is in the week of Monday the 9th (W46); Monday the 16th starts W47.
    assert [(p.start.day, p.end.day, c) for p, c in report.subtotals()] == [(9, 16, 38_047_501), (16, 23, 34_650_000)]


def test_range_from_mid_month_still_counts_tiers_from_the_1st(
    scenario: Ledger, pricebook: PriceBook, display_config: Config
) -> None:
    start = parse_time("2026-11-16T00:00:00Z")
    report = build_report(scenario, pricebook, display_config, start, DEC, by="tenant,item", items=["cpu_core_hours"])
    # acme used 60 core-hours on the 15th (outside the range, but in the billing month), so of
    # the 70 on the 16th, 40 are in tier 1 @ 0.036 = 1.44 and 30 in tier 2 @ 0.027 = 0.81 → 2.25
    # (ignoring the 15th would wrongly give 70 × 0.036 = 2.52).
    assert costs(report) == {("2026-11-16", "acme", "compute/cpu_core_hours"): 2_250_000}


def test_group_by_namespace_project_cluster(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="cluster,project,namespace", per="month")
    assert costs(report) == {
        ("2026-11-01", "c1", "p-acme", "ns-acme"): 57_690_000,  # 53.28 + 4.41
        ("2026-11-01", "c1", "p-beta", "ns-beta"): 15_007_501,  # 15.00 + 0.000001 + 0.0075
    }
    assert report.rows[0].usage is None  # a row mixing items has no single usage


def test_revision_reprices(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    build_report(scenario, pricebook, display_config, NOV, DEC)  # rollups folded once
    corrected = record(
        "acme",
        "gpu_hours",
        hour(15, 10),
        "9",
        name="train-0",
        dimensions={"gpu_sku": "nvidia-h100-sxm-80gb", "capacity_type": "on-demand"},
    )
    assert scenario.write([corrected]).revised == 1
    report = build_report(scenario, pricebook, display_config, NOV, DEC, tenants=["acme"], items=["gpu_hours"])
    # 9 h × 3.51 = 31.59 (15th, revised from 8) + 8 h × 3.15 = 25.20 (16th) = 56.79
    assert costs(report) == {("2026-11-01", "acme", "compute/gpu_hours"): 56_790_000}


def test_csv_and_json(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant,item", per="month", unit="display")
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    vgpu = next(r for r in rows if r["item"] == "VgpuMemoryUsed")
    assert vgpu == {
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "tenant": "beta",
        "category": "VgpuMemory",
        "item": "VgpuMemoryUsed",
        "item_name": "VgpuMemory / Used Usage",
        # 3221225472 + 1610612736 = 4831838208 byte-hours = 4.5 Gi-hours
        "usage": "4831838208",
        "unit": "byte-hours",
        "display_usage": "4.5",
        "display_unit": "Gi-hours",
        "list_cost": "0.007500",
        "cost": "0.007500",
        "currency": "USD",
        "status": "priced",
    }
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal("72.697501")
    doc = json.loads(render_json(report))
    assert doc["total"] == {
        "list_cost": "79.107501",
        "list_cost_micros": 79_107_501,
        "cost": "72.697501",
        "cost_micros": 72_697_501,
    }
    assert sum(r["cost_micros"] for r in doc["rows"]) == doc["total"]["cost_micros"]
    assert doc["unpriced"][0]["usage"] == "2"


def test_unpriced_rows_have_no_cost(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    """A row none of whose usage has a price shows no cost (empty in CSV, null in JSON), not 0."""
    # 3 load-balancer hours for beta on the 16th: the price book has no network/lb_hours price.
    scenario.write([record("beta", "lb_hours", hour(16, 13), "3", category="network", kind="Service")])
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant,item", per="month")
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert rows[-1] == {
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "tenant": "beta",
        "category": "network",
        "item": "lb_hours",
        "usage": "3",
        "unit": "h",
        "list_cost": "",
        "cost": "",
        "currency": "USD",
        "status": "unpriced",
    }
    # The partly unpriced GPU row keeps the cost of its priced part (4 + 4 spot hours = 15.00).
    gpu = next(r for r in rows if r["tenant"] == "beta" and r["item"] == "gpu_hours")
    assert (gpu["list_cost"], gpu["cost"], gpu["status"]) == ("15.000000", "15.000000", "partly unpriced")
    doc = json.loads(render_json(report))
    assert doc["rows"][-1] == {
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "tenant": "beta",
        "category": "network",
        "item": "lb_hours",
        "usage": "3",
        "unit": "h",
        "list_cost": None,
        "cost": None,
        "currency": "USD",
        "status": "unpriced",
        "list_cost_micros": None,
        "cost_micros": None,
    }
    # Totals and the month's subtotal are still integer sums of the priced lines (as without
    # the LB hours), and the JSON lists what they leave out: the 3 LB hours and the 2 B200 hours.
    assert doc["total"] == {
        "list_cost": "79.107501",
        "list_cost_micros": 79_107_501,
        "cost": "72.697501",
        "cost_micros": 72_697_501,
    }
    assert doc["subtotals"] == [
        {
            "period_start": "2026-11-01T00:00:00Z",
            "period_end": "2026-12-01T00:00:00Z",
            "cost": "72.697501",
            "cost_micros": 72_697_501,
        }
    ]
    assert sum(r["cost_micros"] or 0 for r in doc["rows"]) == 72_697_501
    assert [(u["category"], u["item"], u["usage"], u["lines"]) for u in doc["unpriced"]] == [
        ("compute", "gpu_hours", "2", 1),
        ("network", "lb_hours", "3", 1),
    ]
    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    render_table(report, console)
    lb = next(line for line in console.export_text().splitlines() if "network/lb_hours" in line)
    assert lb.split() == ["beta", "network/lb_hours", "3.0000", "h", "unpriced"]  # no list cost, no 0


def test_table_at_80_columns(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    """The stored table at 80 columns: quantities to 4 places in display units, money to the
    cent (ROUND_HALF_UP, the rating's rule), nothing wraps and nothing is cut off.

    Usage: 130, 16, 3 + 1.5 = 4.5 Gi-h, 0.0000125 → 0.0000, 10 (4 + 4 + 2 unpriced).
    List: 2.40 + 2.50 = 4.90; 31.20 + 28.00 = 59.20; 0.0075 → 0.01; 0.000001 → 0.00; 15.00.
    Totals: 79.107501 → 79.11 and 72.697501 → 72.70; the exact total is printed below.
    The partly unpriced row is marked on its item name, so the cost decimals stay aligned."""
    report = build_report(scenario, pricebook, display_config, NOV, DEC, by="tenant,item", per="month", unit="display")
    console = Console(width=80, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    render_table(report, console)
    text = console.export_text()
    assert text.split("unpriced: ")[0] == (
        "         Cost report 2026-11-01 – 2026-12-01 (USD) · Period 2026-11         \n" + " " * 76 + "\n"
        "  Tenant   Item                         Usage   Unit          List    Cost  \n"
        " " + "━" * 74 + " \n"
        "  acme     Compute / CPU             130.0000   core-hours    4.90    4.41  \n"
        "  acme     Compute / GPU              16.0000   GPU-hours    59.20   53.28  \n"
        "  beta     VgpuMemory / Used Usage     4.5000   Gi-hours      0.01    0.01  \n"
        "  beta     Compute / CPU               0.0000   core-hours    0.00    0.00  \n"
        "  beta     Compute / GPU*             10.0000   GPU-hours    15.00   15.00  \n" + " " * 76 + "\n"
        "  Total                                                      79.11   72.70  \n" + " " * 76 + "\n"
        "* part of this row's usage has no price (listed below); the cost is of the priced part\n"
        "exact total (every micro-unit; CSV and JSON carry them all): 72.697501 USD\n"
    )
    assert "…" not in text


def test_raw_day_table_at_80_columns_keeps_item_names_whole(
    scenario: Ledger, pricebook: PriceBook, display_config: Config
) -> None:
    """Too wide for 80 columns: each unit moves below its number, the identifier columns wrap
    (here only the Namespace header), and the raw item names — which have no spaces — are never
    broken. Raw units: hours to 4 places, byte-hours whole (3221225472 + 1610612736 = 4831838208).
    Day costs: see test_per_day_subtotals_add_up, to the cent (38.047501 → 38.05)."""
    report = build_report(
        scenario, pricebook, display_config, NOV, DEC, by="tenant,namespace,item", per="day", unit="raw"
    )
    console = Console(width=80, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    render_table(report, console)
    unit_line = " " * 65 + "h" + " " * 14 + "\n"
    assert console.export_text().split("* part")[0] == (
        "                   Cost report 2026-11-01 – 2026-12-01 (USD)                    \n"
        "                    Namespa                                                     \n"
        "Period      Tenant  ce       Item                            Usage   List   Cost\n" + "━" * 80 + "\n"
        "2026-11-15  acme    ns-acme  compute/cpu_core_hours        60.0000   2.40   2.16\n"
        + unit_line
        + "2026-11-15  acme    ns-acme  compute/gpu_hours              8.0000  31.20  28.08\n"
        + unit_line
        + "2026-11-15  beta    ns-beta  VgpuMemory/VgpuMemoryUsed  4831838208   0.01   0.01\n"
        "                                                        byte-hours              \n"
        "2026-11-15  beta    ns-beta  compute/cpu_core_hours         0.0000   0.00   0.00\n"
        + unit_line
        + "2026-11-15  beta    ns-beta  compute/gpu_hours              4.0000   7.80   7.80\n"
        + unit_line
        + "2026-11-15                   Subtotal                               41.41  38.05\n"
        + " " * 80
        + "\n"
        "2026-11-16  acme    ns-acme  compute/cpu_core_hours        70.0000   2.50   2.25\n"
        + unit_line
        + "2026-11-16  acme    ns-acme  compute/gpu_hours              8.0000  28.00  25.20\n"
        + unit_line
        + "2026-11-16  beta    ns-beta  compute/gpu_hours*             6.0000   7.20   7.20\n"
        + unit_line
        + "2026-11-16                   Subtotal                               37.70  34.65\n"
        + " " * 80
        + "\n"
        "Total                                                               79.11  72.70\n"
    )


def test_money_to_the_minor_unit_of_each_currency() -> None:
    from kubetally.rating.money import format_money_minor, money_places

    # 1234.5675 → USD 1234.57 (half-up), JPY 1235, KWD (3 places) 1234.568; 0.000001 → 0.00
    assert [format_money_minor(1_234_567_500, money_places(c)) for c in ("USD", "JPY", "KWD", "CNY")] == [
        "1234.57",
        "1235",
        "1234.568",
        "1234.57",
    ]
    assert format_money_minor(1, 2) == "0.00" and format_money_minor(5_000, 2) == "0.01"  # 0.005 half-up


def test_long_tenant_ids_are_never_truncated(ledger: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    tenant = "vcluster/vcluster-team-a/team-a"
    ledger.write(
        [
            record(tenant, "cpu_core_hours", hour(15, 10), "230.026666667", namespace="ns-a", project="p-a"),
            record(
                tenant,
                "gpu_hours",
                hour(15, 10),
                "8",
                namespace="ns-a",
                project="p-a",
                dimensions={"gpu_sku": "nvidia-h100-sxm-80gb", "capacity_type": "spot"},
            ),
        ]
    )
    report = build_report(ledger, pricebook, display_config, NOV, DEC, by="tenant,item", per="day", unit="display")
    console = Console(width=80, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    render_table(report, console)
    text = console.export_text()
    assert text.count(tenant) == 2 and "…" not in text
    assert "· Period 2026-11-15" in text and "Period " not in text.splitlines()[1]  # no Period column
    assert [(row.group["item"], row.cost) for row in report.rows] == [
        # tiers [≤100 @ 0.04, then 0.03]: 4.00 + 130.026666667 × 0.03 = 7.90080000001 → 7.900800
        ("compute/cpu_core_hours", 7_900_800),
        ("compute/gpu_hours", 15_600_000),  # 8 spot hours × 1.95 (the 15th, old price)
    ]
    # the table: core-hours to 4 places (230.026666667 → 230.0267), money to the cent
    assert "230.0267" in text and "7.90" in text and "15.60" in text
    # 7.9008 + 15.60 = 23.5008 → 23.50 in the table, and the exact total below it
    assert text.splitlines()[-2].split() == ["Total", "23.50"]
    assert text.splitlines()[-1].endswith(": 23.5008 USD")


def test_chinese_names(scenario: Ledger, pricebook: PriceBook, display_config: Config) -> None:
    report = build_report(scenario, pricebook, display_config, NOV, DEC, unit="display", lang="zh")
    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    render_table(report, console)
    text = console.export_text()
    assert "费用报表" in text and "计算 / GPU" in text and "卡时" in text and "Vgpu 显存 / 使用量" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "tenant,pod"}, "unknown pod"),
        ({"per": "year"}, "day, week or month"),
        ({"start": parse_time("2026-11-01T10:00:00Z")}, "whole UTC days"),
        ({"end": NOV}, "must be after"),
        ({"unit": "gb"}, "raw or display"),
    ],
)
def test_bad_requests(ledger: Ledger, pricebook: PriceBook, kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    args = {"start": NOV, "end": DEC, "by": "tenant", "per": "month"} | kwargs
    with pytest.raises(ReportError, match=message):
        build_report(ledger, pricebook, None, args.pop("start"), args.pop("end"), **args)
