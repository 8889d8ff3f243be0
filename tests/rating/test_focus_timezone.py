"""FOCUS export in a billing time zone: ``ChargePeriodStart``/``End`` of hourly rows stay the
records' UTC hours, ``BillingPeriodStart``/``End`` are the local month as UTC instants, and day
and month charge periods are local days and months (a DST day is 23 or 25 hours). On SQLite and
PostgreSQL; every figure is derived next to its assertion."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kubetally.config import Config, load_config
from kubetally.ledger.store import Ledger
from kubetally.periods import Period
from kubetally.rating.pricebook import PriceBook
from kubetally.reports import build_report
from kubetally.reports.focus import FocusBuilder, FocusError, export_focus

from .conftest import hours, record, utc


def zoned(tmp_path: Path, zone: str) -> Config:
    path = tmp_path / f"{zone.replace('/', '-')}.yaml"
    path.write_text(f"billing:\n  timezone: {zone}\n")
    return load_config([path])


def focus_rows(
    ledger: Ledger, book: PriceBook, config: Config, start: datetime, end: datetime, grain: str
) -> list[dict[str, Any]]:
    return [row for batch in FocusBuilder(book, config).rows(ledger, start, end, grain) for row in batch]


def test_utc_plus_8_month_billing_periods_and_charge_periods(
    ledger: Ledger, tiered_pricebook: PriceBook, tmp_path: Path
) -> None:
    config = zoned(tmp_path, "Asia/Shanghai")
    ledger.write(
        [
            record("t", "gpu_hours", Period(utc(2026, 10, 31, 15), utc(2026, 10, 31, 16)), "1"),  # local Oct 31 23:00
            record("t", "gpu_hours", Period(utc(2026, 10, 31, 16), utc(2026, 10, 31, 17)), "2"),  # local Nov 1 00:00
            record("t", "gpu_hours", Period(utc(2026, 11, 30, 15), utc(2026, 11, 30, 16)), "4"),  # local Nov 30 23:00
            record("t", "gpu_hours", Period(utc(2026, 11, 30, 16), utc(2026, 11, 30, 17)), "8"),  # local Dec 1 00:00
            # tiers restart at the local month: 100 core-h in local October, 50 in local November
            record("t", "cpu_core_hours", Period(utc(2026, 10, 31, 15), utc(2026, 10, 31, 16)), "100"),
            record("t", "cpu_core_hours", Period(utc(2026, 10, 31, 16), utc(2026, 10, 31, 17)), "50"),
        ]
    )
    # Local November (UTC+8) = [2026-10-31T16:00Z, 2026-11-30T16:00Z)
    nov, dec = utc(2026, 10, 31, 16), utc(2026, 11, 30, 16)
    hourly = focus_rows(ledger, tiered_pricebook, config, nov, dec, "hour")
    got = {
        (r["x_Item"], r["ChargePeriodStart"], r["ChargePeriodEnd"]): (
            r["BillingPeriodStart"],
            r["BillingPeriodEnd"],
            r["ConsumedQuantity"],
            r["BilledCost"],
        )
        for r in hourly
    }
    assert got == {
        # hourly charge periods are the records' own UTC hours; the billing period is local November
        ("cpu_core_hours", utc(2026, 10, 31, 16), utc(2026, 10, 31, 17)): (
            nov,
            dec,
            Decimal("50.000000000"),
            Decimal("2.000000"),  # 50 × 0.04 (first tier: a fresh local month)
        ),
        ("gpu_hours", utc(2026, 10, 31, 16), utc(2026, 10, 31, 17)): (
            nov,
            dec,
            Decimal("2.000000000"),
            Decimal("4.000000"),
        ),
        ("gpu_hours", utc(2026, 11, 30, 15), utc(2026, 11, 30, 16)): (
            nov,
            dec,
            Decimal("4.000000000"),
            Decimal("8.000000"),
        ),
    }
    monthly = focus_rows(ledger, tiered_pricebook, config, nov, dec, "month")
    assert {(r["x_Item"], r["ChargePeriodStart"], r["ChargePeriodEnd"], r["BilledCost"]) for r in monthly} == {
        ("cpu_core_hours", nov, dec, Decimal("2.000000")),
        ("gpu_hours", nov, dec, Decimal("12.000000")),  # (2 + 4) × 2.00
    }
    assert {(r["BillingPeriodStart"], r["BillingPeriodEnd"]) for r in monthly} == {(nov, dec)}
    # The report over the same local month bills the same 2.00 + 12.00 = 14.00
    report = build_report(ledger, tiered_pricebook, config, nov, dec, by="tenant")
    assert report.total == 14_000_000
    # A UTC midnight is not a local midnight here: day and month exports refuse it by name
    with pytest.raises(FocusError, match=r"--from 2026-11-01T00:00:00Z: must be a Asia/Shanghai midnight"):
        export_focus(ledger, tiered_pricebook, config, utc(2026, 11, 1), dec, io.StringIO())


def test_berlin_fall_back_day_is_25_hours(ledger: Ledger, tiered_pricebook: PriceBook, tmp_path: Path) -> None:
    config = zoned(tmp_path, "Europe/Berlin")
    # 1 GPU-h in every UTC hour from 2026-10-23T00Z to 2026-10-27T23Z
    ledger.write([record("t", "gpu_hours", p, "1") for p in hours(utc(2026, 10, 23, 0), utc(2026, 10, 27, 23))])
    # Local 2026-10-24 (CEST, +2) = [10-23T22Z, 10-24T22Z); 10-25 falls back at 03:00 CEST → 02:00 CET,
    # so it is [10-24T22Z, 10-25T23Z) = 25 h; 10-26 (CET, +1) = [10-25T23Z, 10-26T23Z).
    start, end = utc(2026, 10, 23, 22), utc(2026, 10, 26, 23)
    rows = focus_rows(ledger, tiered_pricebook, config, start, end, "day")
    got = {(r["ChargePeriodStart"], r["ChargePeriodEnd"]): (r["ConsumedQuantity"], r["BilledCost"]) for r in rows}
    assert got == {
        (utc(2026, 10, 23, 22), utc(2026, 10, 24, 22)): (Decimal("24.000000000"), Decimal("48.000000")),
        (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)): (Decimal("25.000000000"), Decimal("50.000000")),
        (utc(2026, 10, 25, 23), utc(2026, 10, 26, 23)): (Decimal("24.000000000"), Decimal("48.000000")),
    }
    # Local October in Berlin = [09-30T22:00Z (CEST), 10-31T23:00Z (CET)): every row's billing period
    assert {(r["BillingPeriodStart"], r["BillingPeriodEnd"]) for r in rows} == {
        (utc(2026, 9, 30, 22), utc(2026, 10, 31, 23))
    }
    # The report's local days agree: 24 + 25 + 24 = 73 GPU-h × 2.00 = 146.00
    report = build_report(ledger, tiered_pricebook, config, start, end, by="tenant", per="day")
    assert [r.cost for r in report.rows] == [48_000_000, 50_000_000, 48_000_000]
    assert report.total == 146_000_000
