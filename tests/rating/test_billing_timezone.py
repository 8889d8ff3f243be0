"""``billing.timezone``: report days and months (and tier months) start at local midnight in the
billing time zone, while the ledger and its hourly records stay in UTC. On SQLite and
PostgreSQL. Money is in micro-units; every figure is derived next to its assertion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubetally.app.report import resolve_range
from kubetally.config import load_config
from kubetally.errors import ConfigError
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, billing_zone
from kubetally.rating.pricebook import PriceBook
from kubetally.reports import ReportError, build_report
from kubetally.reports.buckets import bucket_label

from .conftest import hours, record, utc

SHANGHAI = billing_zone("Asia/Shanghai")  # UTC+8, no DST
BERLIN = billing_zone("Europe/Berlin")  # CET/CEST: 2026-03-29 is 23 h long, 2026-10-25 is 25 h


def usage(report) -> dict[tuple[str, str], object]:  # type: ignore[no-untyped-def]
    return {(bucket_label(r.period, report.per, report.zone), r.group["tenant"]): r.usage for r in report.rows}


def test_a_utc_plus_8_month_is_the_hours_from_local_midnight_to_local_midnight(
    ledger: Ledger, tiered_pricebook: PriceBook
) -> None:
    # "every-hour": 1 GPU-h in each UTC hour from 2026-10-31T00Z to 2026-12-01T23Z.
    every = [record("every-hour", "gpu_hours", p, "1") for p in hours(utc(2026, 10, 31, 0), utc(2026, 12, 1, 23))]
    # "edges": one record on each side of both local (UTC+8) and UTC month boundaries.
    edges = [
        record("edges", "gpu_hours", Period(utc(2026, 10, 31, 15), utc(2026, 10, 31, 16)), "1"),  # local Oct 31 23:00
        record("edges", "gpu_hours", Period(utc(2026, 10, 31, 16), utc(2026, 10, 31, 17)), "2"),  # local Nov 1 00:00
        record("edges", "gpu_hours", Period(utc(2026, 11, 30, 15), utc(2026, 11, 30, 16)), "4"),  # local Nov 30 23:00
        record("edges", "gpu_hours", Period(utc(2026, 11, 30, 16), utc(2026, 11, 30, 17)), "8"),  # local Dec 1 00:00
    ]
    ledger.write(every + edges)
    # Local November in Asia/Shanghai = [2026-10-31T16:00Z, 2026-11-30T16:00Z).
    since, until = resolve_range("2026-11-01", "2026-12-01", SHANGHAI)
    assert (since, until) == (utc(2026, 10, 31, 16), utc(2026, 11, 30, 16))
    local = build_report(ledger, tiered_pricebook, None, since, until, by="tenant", per="month", zone=SHANGHAI)
    # every-hour: 30 days × 24 h = 720 GPU-h; edges: 2 + 4 = 6 GPU-h (1 is October, 8 December)
    assert usage(local) == {("2026-11", "edges"): 6, ("2026-11", "every-hour"): 720}
    # 726 GPU-h × 2.00 = 1452.00
    assert local.total == 1_452_000_000
    # The same ledger in UTC: the UTC month, edges 4 + 8 = 12 (rollups rebuilt for the zone).
    plain = build_report(ledger, tiered_pricebook, None, utc(2026, 11, 1), utc(2026, 12, 1), by="tenant", per="month")
    assert usage(plain) == {("2026-11", "edges"): 12, ("2026-11", "every-hour"): 720}
    # And back: the local report is the same again after the rebuild.
    again = build_report(ledger, tiered_pricebook, None, since, until, by="tenant", per="month", zone=SHANGHAI)
    assert usage(again) == usage(local) and again.total == local.total
    # Local days too: 2026-11-01 in Shanghai holds edges' 2 and 24 hours of every-hour.
    days = build_report(
        ledger, tiered_pricebook, None, since, since + timedelta(days=1), by="tenant", per="day", zone=SHANGHAI
    )
    assert usage(days) == {("2026-11-01", "edges"): 2, ("2026-11-01", "every-hour"): 24}


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        # Spring forward: local 2026-03-29 is [03-28T23:00Z, 03-29T22:00Z) = 23 h.
        ("2026-03-28", {"2026-03-28": 24, "2026-03-29": 23, "2026-03-30": 24}),
        # Fall back: local 2026-10-25 is [10-24T22:00Z, 10-25T23:00Z) = 25 h.
        ("2026-10-24", {"2026-10-24": 24, "2026-10-25": 25, "2026-10-26": 24}),
    ],
)
def test_dst_days_are_23_and_25_hours(
    ledger: Ledger, tiered_pricebook: PriceBook, first: str, expected: dict[str, int]
) -> None:
    day = datetime.fromisoformat(first).replace(tzinfo=UTC)
    # 1 GPU-h in every UTC hour from two days before to two days after the three local days
    ledger.write([record("t", "gpu_hours", p, "1") for p in hours(day - timedelta(days=2), day + timedelta(days=5))])
    # three local days: from local midnight of the first to local midnight three dates later
    since = resolve_range(first, None, BERLIN)[0]
    until = resolve_range((day + timedelta(days=3)).date().isoformat(), None, BERLIN)[0]
    report = build_report(ledger, tiered_pricebook, None, since, until, by="tenant", per="day", zone=BERLIN)
    assert {label: u for (label, _), u in usage(report).items()} == expected
    # 71 or 73 GPU-h × 2.00
    assert report.total == sum(expected.values()) * 2_000_000


def test_graduated_tiers_restart_at_the_local_month_start(ledger: Ledger, tiered_pricebook: PriceBook) -> None:
    ledger.write(
        [
            # local 2026-10-31 23:00 in Shanghai: October
            record("t", "cpu_core_hours", Period(utc(2026, 10, 31, 15), utc(2026, 10, 31, 16)), "100"),
            # local 2026-11-01 00:00: November, a fresh tier month
            record("t", "cpu_core_hours", Period(utc(2026, 10, 31, 16), utc(2026, 10, 31, 17)), "50"),
        ]
    )
    nov = resolve_range("2026-11-01", None, SHANGHAI)
    # 50 core-h all in the first tier: 50 × 0.04 = 2.00
    assert build_report(ledger, tiered_pricebook, None, *nov, by="tenant", zone=SHANGHAI).total == 2_000_000
    # In UTC both hours are in October: 100 × 0.04 + 50 × 0.03 = 4.00 + 1.50 = 5.50
    october = build_report(ledger, tiered_pricebook, None, utc(2026, 10, 1), utc(2026, 11, 1), by="tenant")
    assert october.total == 5_500_000


def test_range_must_be_local_midnights_and_offsets_are_honoured(ledger: Ledger, tiered_pricebook: PriceBook) -> None:
    # An explicit offset is taken as written: +08:00 midnight is Shanghai's local midnight.
    assert resolve_range("2026-11-01T00:00:00+08:00", "2026-11-02T00:00:00+08:00", SHANGHAI) == (
        utc(2026, 10, 31, 16),
        utc(2026, 11, 1, 16),
    )
    with pytest.raises(ReportError, match=r"--from 2026-11-01T00:00:00Z: reports cover whole Asia/Shanghai days"):
        build_report(ledger, tiered_pricebook, None, utc(2026, 11, 1), utc(2026, 11, 2), zone=SHANGHAI)


def test_billing_timezone_is_read_from_the_config_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "kubetally.yaml"
    good.write_text("billing:\n  timezone: Asia/Shanghai\n")
    assert load_config([good]).settings.billing.zone == SHANGHAI
    bad = tmp_path / "bad.yaml"
    bad.write_text("billing:\n  timezone: Mars/Olympus_Mons\n")
    with pytest.raises(ConfigError) as caught:
        load_config([bad])
    [problem] = caught.value.problems
    assert "billing.timezone" in problem and "unknown time zone 'Mars/Olympus_Mons'" in problem
    assert str(bad) in problem
