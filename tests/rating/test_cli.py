"""``kubetally report`` and ``kubetally export focus`` on the fixed scenario (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from kubetally.cli import export, report
from kubetally.ledger.store import Ledger
from kubetally.reports.focus import FocusError

from .conftest import DISPLAY, PRICES, scenario_records


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    report.register(app)
    app.add_typer(export.app, name="export")
    return app


def run(cli: typer.Typer, db: str, *args: str) -> object:
    base = ["--db", db, "--prices", str(PRICES), "-c", str(DISPLAY), "--from", "2026-11-01", "--to", "2026-12-01"]
    command = list(args[:2]) if args[0] == "export" else list(args[:1])
    rest = list(args[len(command) :])
    return CliRunner().invoke(cli, [*command, *base, *rest])


def test_report_csv(cli: typer.Typer, scenario: Ledger, ledger_url: str) -> None:
    result = run(cli, ledger_url, "report", "--by", "tenant", "--per", "week", "--format", "csv")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))  # type: ignore[attr-defined]
    assert [(r["period_start"][:10], r["tenant"], r["cost"], r["status"]) for r in rows] == [
        ("2026-11-09", "acme", "30.240000", "priced"),  # W46: 28.08 + 2.16
        ("2026-11-09", "beta", "7.807501", "priced"),  # 7.80 + 0.000001 + 0.0075
        ("2026-11-16", "acme", "27.450000", "priced"),  # W47: 25.20 + 1.44 + 0.81
        ("2026-11-16", "beta", "7.200000", "partly unpriced"),  # 4 × 1.80; B200 unpriced
    ]


def test_report_json_to_file_and_strict(cli: typer.Typer, scenario: Ledger, ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run(cli, ledger_url, "report", "--format", "json", "-o", str(out))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert json.loads(out.read_text())["total"]["cost_micros"] == 72_697_501
    strict = run(cli, ledger_url, "report", "--format", "json", "--strict")
    assert strict.exit_code == 1  # the B200 hours have no price


def test_report_table(cli: typer.Typer, scenario: Ledger, ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    result = run(cli, ledger_url, "report", "--unit", "display", "-o", str(out))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    text = out.read_text()
    assert "Compute / GPU" in text and "72.697501" in text


def test_export_focus_parquet(cli: typer.Typer, scenario: Ledger, ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "focus.parquet"
    failed = run(cli, ledger_url, "export", "focus", "--format", "parquet", "-o", str(out))
    assert isinstance(failed.exception, FocusError)  # type: ignore[attr-defined]
    assert not out.exists()
    result = run(cli, ledger_url, "export", "focus", "--format", "parquet", "-o", str(out), "--skip-unpriced")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    table = pq.read_table(out)
    # Same money as the report: 72.697501 billed, 79.107501 list.
    assert str(sum(table.column("BilledCost").to_pylist())) == "72.697501"
    assert str(sum(table.column("ListCost").to_pylist())) == "79.107501"


def test_export_focus_csv_failure_writes_nothing(
    cli: typer.Typer, scenario: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    """The B200 hours (16th) have no price: the export fails before a byte of CSV is written,
    not after the header and the 15th's rows."""
    failed = run(cli, ledger_url, "export", "focus")
    assert isinstance(failed.exception, FocusError)  # type: ignore[attr-defined]
    assert "nvidia-b200-180gb" in str(failed.exception)  # type: ignore[attr-defined]
    assert failed.stdout == ""  # type: ignore[attr-defined]
    out = tmp_path / "exports" / "focus.csv"
    out.parent.mkdir()
    failed = run(cli, ledger_url, "export", "focus", "-o", str(out))
    assert isinstance(failed.exception, FocusError)  # type: ignore[attr-defined]
    assert failed.stdout == ""  # type: ignore[attr-defined]
    assert list(out.parent.iterdir()) == []  # neither the file nor a temporary one
    ok = run(cli, ledger_url, "export", "focus", "--skip-unpriced", "--rows", "resource")
    assert ok.exit_code == 0, ok.output  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(ok.stdout)))  # type: ignore[attr-defined]
    # 10 records − the unpriced B200 one = 9 resource-days; acme's CPU on the 16th splits
    # into tier 1 (40) and tier 2 (30) → 10 rows; billed 72.697501 as in the report.
    assert len(rows) == 10
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("72.697501")
    ok = run(cli, ledger_url, "export", "focus", "--skip-unpriced")  # --rows sku
    assert ok.exit_code == 0, ok.output  # type: ignore[attr-defined]
    skus = list(csv.DictReader(io.StringIO(ok.stdout)))  # type: ignore[attr-defined]
    # Every tenant-SKU-day has one resource here, so only acme's two CPU tier rows of the 16th merge:
    # 10 − 1 = 9 rows, with the same 72.697501 billed.
    assert [(r["ChargePeriodStart"][:10], r["SubAccountId"], r["SkuId"]) for r in skus] == [
        ("2026-11-15", "acme", "compute/cpu_core_hours"),
        ("2026-11-15", "acme", "compute/gpu_hours/nvidia-h100-sxm-80gb/on-demand"),
        ("2026-11-15", "beta", "VgpuMemory/VgpuMemoryUsed/Tesla P100"),
        ("2026-11-15", "beta", "VgpuMemory/VgpuMemoryUsed/Tesla T4"),
        ("2026-11-15", "beta", "compute/cpu_core_hours"),
        ("2026-11-15", "beta", "compute/gpu_hours/nvidia-h100-sxm-80gb/spot"),
        ("2026-11-16", "acme", "compute/cpu_core_hours"),
        ("2026-11-16", "acme", "compute/gpu_hours/nvidia-h100-sxm-80gb/on-demand"),
        ("2026-11-16", "beta", "compute/gpu_hours/nvidia-h100-sxm-80gb/spot"),
    ]
    # acme's 70 core-hours of the 16th: 40 left in tier 1 at 0.036, 30 in tier 2 at 0.027 → 1.44 + 0.81.
    acme_cpu = skus[6]
    assert (acme_cpu["PricingQuantity"], acme_cpu["BilledCost"], acme_cpu["ListUnitPrice"]) == (
        "70.000000000",
        "2.250000",
        "",
    )
    assert sum(Decimal(r["BilledCost"]) for r in skus) == Decimal("72.697501")
    bad = run(cli, ledger_url, "export", "focus", "--rows", "pod")
    assert bad.exit_code == 1
    assert "--rows must be sku or resource, not 'pod'" in bad.stderr  # type: ignore[attr-defined]


def test_export_focus_help_names_both_grains(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["export", "focus", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the description, re-joined across the wrapped lines
    assert "By default (--rows sku) one row per charge period × tenant × item × SKU" in text
    assert "--rows resource splits each of those rows by resource" in text
    assert "[default: sku]" in text


def test_export_focus_failure_on_the_command_line(tmp_path: Path) -> None:
    """The real entry point with the built-in example prices (which price neither the vGPU
    memory nor the B200 hours): rc 1, one error line, an empty stdout, no file."""
    db = tmp_path / "ledger.db"
    with Ledger.open(str(db)) as ledger:
        ledger.write(scenario_records())
    base = [
        sys.executable,
        "-m",
        "kubetally.cli.main",
        "export",
        "focus",
        "--db",
        str(db),
        "--prices",
        "example",
        "--from",
        "2026-11-01",
        "--to",
        "2026-12-01",
    ]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "error: unpriced usage in 2026-11-15T00:00:00Z" in proc.stderr
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([*base, "-o", str(out / "focus.csv")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert list(out.iterdir()) == []


def test_command_line_error_is_one_line(tmp_path: Path) -> None:
    """The real entry point: a bad option value exits 1 with a one-line reason."""
    db = tmp_path / "ledger.db"
    Ledger.open(str(db)).close()  # readers refuse a missing ledger; this test is about --by
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetally.cli.main",
            "report",
            "--db",
            str(db),
            "--prices",
            str(PRICES),
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "--by",
            "pod",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "--by: unknown pod" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_range_defaults_are_calendar_months() -> None:
    from kubetally.periods import parse_time

    nov15, dec1 = parse_time("2026-11-15"), parse_time("2026-12-01")
    assert report.resolve_range("2026-11-15", None) == (nov15, dec1)  # to the end of --from's month
    assert report.resolve_range(None, "2026-12-01") == (parse_time("2026-11-01"), dec1)  # its last day's month
    assert report.resolve_range("2026-11-15", "2026-11-20") == (nov15, parse_time("2026-11-20"))


def test_export_focus_per_month_splits_at_a_price_change(
    cli: typer.Typer, scenario: Ledger, ledger_url: str, tmp_path: Path
) -> None:
    # The scenario's price book changes a price on 2026-11-16. A monthly charge period is cut
    # there, so each part is rated at its own price and the month bills what the days bill:
    # 72.697501, as the report does (before the cut it billed 76.177501 at the old price).
    out = tmp_path / "focus.csv"
    result = run(cli, ledger_url, "export", "focus", "--per", "month", "--skip-unpriced", "-o", str(out))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = list(csv.DictReader(out.open()))
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal("72.697501")
    periods = sorted({(r["ChargePeriodStart"], r["ChargePeriodEnd"]) for r in rows})
    assert periods == [
        ("2026-11-01T00:00:00Z", "2026-11-16T00:00:00Z"),
        ("2026-11-16T00:00:00Z", "2026-12-01T00:00:00Z"),
    ]
