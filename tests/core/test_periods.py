from datetime import UTC, datetime, timedelta

import pytest

from kubetally.periods import Period, PeriodKind, floor_to, parse_duration, parse_time, periods_between


def t(text: str) -> datetime:
    return parse_time(text)


def test_parse_duration_forms() -> None:
    assert parse_duration("5m") == timedelta(minutes=5)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("90s") == timedelta(seconds=90)
    with pytest.raises(ValueError, match="not a duration: '5 minutes'"):
        parse_duration("5 minutes")


def test_parse_time_is_utc_and_naive_means_utc() -> None:
    assert t("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert t("2026-11-01T12:00:00+02:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert t("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)


def test_period_kind_accepts_alauda_spelling() -> None:
    assert PeriodKind.parse("Hourly") is PeriodKind.hourly
    assert PeriodKind.parse("Daily") is PeriodKind.daily
    with pytest.raises(ValueError, match="Hourly or Daily"):
        PeriodKind.parse("weekly")


def test_periods_between_only_whole_periods() -> None:
    # 10:17 rounds up to 11:00; 14:30 rounds down to 14:00 -> 11, 12, 13
    got = list(periods_between(t("2026-11-01T10:17:00Z"), t("2026-11-01T14:30:00Z"), timedelta(hours=1)))
    assert [p.start.hour for p in got] == [11, 12, 13]
    assert got[0].last_second == t("2026-11-01T11:59:59Z")
    assert got[0].seconds == 3600
    assert got[0].day == t("2026-11-01T00:00:00Z")


def test_daily_period_and_floor() -> None:
    p = Period.containing(t("2026-11-01T23:59:59Z"), PeriodKind.daily.length)
    assert (p.start, p.end) == (t("2026-11-01T00:00:00Z"), t("2026-11-02T00:00:00Z"))
    assert floor_to(t("2026-11-01T10:17:23Z"), timedelta(minutes=5)) == t("2026-11-01T10:15:00Z")
