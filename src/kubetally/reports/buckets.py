"""Report buckets: UTC days, ISO weeks (Monday start) and calendar months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from kubetally.periods import Period


class Per(StrEnum):
    day = "day"
    week = "week"
    month = "month"

    @classmethod
    def parse(cls, value: str) -> Per:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"--per must be day, week or month, not {value!r}") from None


def is_midnight(moment: datetime) -> bool:
    moment = moment.astimezone(UTC)
    return moment == datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month(moment: datetime) -> datetime:
    start = month_start(moment)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def bucket_start(moment: datetime, per: Per) -> datetime:
    moment = moment.astimezone(UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if per is Per.day:
        return day
    if per is Per.week:
        return day - timedelta(days=day.weekday())
    return month_start(moment)


def bucket_end(start: datetime, per: Per) -> datetime:
    if per is Per.day:
        return start + timedelta(days=1)
    if per is Per.week:
        return start + timedelta(days=7)
    return next_month(start)


def buckets(start: datetime, end: datetime, per: Per) -> list[Period]:
    """The buckets covering ``[start, end)``, clipped to it (a range may start mid-week)."""
    out = []
    cursor = bucket_start(start, per)
    while cursor < end:
        following = bucket_end(cursor, per)
        out.append(Period(max(cursor, start), min(following, end)))
        cursor = following
    return out


def month_starts(start: datetime, end: datetime) -> list[datetime]:
    """Every first-of-month strictly inside ``(start, end)``."""
    out = []
    cursor = next_month(start)
    while cursor < end:
        out.append(cursor)
        cursor = next_month(cursor)
    return out


def bucket_label(period: Period, per: Per) -> str:
    """``2026-11-03`` · ``2026-W45`` · ``2026-11``."""
    start = period.start.astimezone(UTC)
    if per is Per.day:
        return start.strftime("%Y-%m-%d")
    if per is Per.week:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")
