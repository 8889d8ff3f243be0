"""Report buckets: days, ISO weeks (Monday start) and calendar months in the billing time zone.

Every function takes the billing zone (``billing.timezone``, default UTC) and returns UTC
instants: a day in ``Asia/Shanghai`` is ``[16:00Z, 16:00Z)``, and a day on which a DST change
happens is 23 or 25 hours long. The ledger and its records stay in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

from kubetally.periods import (
    Period,
    is_local_midnight,
    local_midnight,
    local_month_start,
    next_local_midnight,
    next_local_month,
)


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


def is_midnight(moment: datetime, zone: tzinfo = UTC) -> bool:
    return is_local_midnight(moment, zone)


def month_start(moment: datetime, zone: tzinfo = UTC) -> datetime:
    return local_month_start(moment, zone)


def next_month(moment: datetime, zone: tzinfo = UTC) -> datetime:
    return next_local_month(moment, zone)


def bucket_start(moment: datetime, per: Per, zone: tzinfo = UTC) -> datetime:
    day = local_midnight(moment, zone)
    if per is Per.day:
        return day
    if per is Per.week:
        weekday = day.astimezone(zone).weekday()
        return local_midnight(day.astimezone(zone) - timedelta(days=weekday), zone)
    return local_month_start(moment, zone)


def bucket_end(start: datetime, per: Per, zone: tzinfo = UTC) -> datetime:
    if per is Per.day:
        return next_local_midnight(start, zone)
    if per is Per.week:
        local = start.astimezone(zone)
        return local_midnight(local + timedelta(days=7, hours=12), zone)
    return next_local_month(start, zone)


def buckets(start: datetime, end: datetime, per: Per, zone: tzinfo = UTC) -> list[Period]:
    """The buckets covering ``[start, end)``, clipped to it (a range may start mid-week)."""
    out = []
    cursor = bucket_start(start, per, zone)
    while cursor < end:
        following = bucket_end(cursor, per, zone)
        out.append(Period(max(cursor, start), min(following, end)))
        cursor = following
    return out


def month_starts(start: datetime, end: datetime, zone: tzinfo = UTC) -> list[datetime]:
    """Every first-of-month (local midnight) strictly inside ``(start, end)``."""
    out = []
    cursor = next_local_month(start, zone)
    while cursor < end:
        out.append(cursor)
        cursor = next_local_month(cursor, zone)
    return out


def bucket_label(period: Period, per: Per, zone: tzinfo = UTC) -> str:
    """``2026-11-03`` · ``2026-W45`` · ``2026-11`` (the local date the bucket starts on)."""
    start = period.start.astimezone(zone)
    if per is Per.day:
        return start.strftime("%Y-%m-%d")
    if per is Per.week:
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m")
