"""Billing periods: closed, UTC-aligned windows that every source measures over.

A period is half-open ``[start, start + length)``. Records show the last second as ``end``
(``HH:59:59Z``) because that is the shape billing systems and the Alauda record use; the
arithmetic here always works with the exclusive end so that adjacent periods never overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class PeriodKind(StrEnum):
    hourly = "hourly"
    daily = "daily"
    # Short windows for agents that stream near-real-time usage (vBilling meters 60 s windows).
    # Their value is the duration itself so a record's ``period`` says exactly what it covers.
    minutes_1 = "1m"
    minutes_5 = "5m"
    minutes_15 = "15m"

    @classmethod
    def parse(cls, value: str) -> PeriodKind:
        """Accept ``Hourly``/``Daily`` as written in Alauda ConfigMaps as well as lower case."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"period must be Hourly or Daily (or 1m, 5m, 15m), not {value!r}") from None

    @classmethod
    def for_length(cls, length: timedelta) -> PeriodKind:
        """The kind whose windows are ``length`` long (``1h`` → hourly)."""
        for kind in cls:
            if kind.length == length:
                return kind
        raise ValueError(f"no period kind is {format_duration(length)} long (use 1m, 5m, 15m, 1h or 1d)")

    @property
    def length(self) -> timedelta:
        return _PERIOD_LENGTHS[self.value]


_PERIOD_LENGTHS = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse Prometheus-style durations (``5m``, ``1h30m``, ``90s``, ``7d``)."""
    try:
        if isinstance(text, bool):
            raise ValueError
        if isinstance(text, int | float):
            return timedelta(seconds=text)
        match = _DURATION.match(str(text).strip())
        if not match or not any(match.groups()):
            raise ValueError
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long: {text!r} (at most {timedelta.max.days} days)") from None
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 5m, 1h, 7d)") from None


def format_duration(delta: timedelta) -> str:
    """Inverse of :func:`parse_duration`, in the form PromQL range selectors accept."""
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted. Nothing local ever leaks in."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


#: Times kubetally accepts: Unix time onwards, and far enough before ``datetime.max`` that a
#: month, a billing time zone or a backfill added to any accepted time never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_time(text: str, zone: tzinfo = UTC) -> datetime:
    """Parse RFC 3339 / ISO 8601 (``2026-11-01``, ``2026-11-01T10:00:00Z``) into UTC.

    A time without an offset (a bare date included) is local time in ``zone``, the billing
    time zone: ``2026-11-01`` in ``Asia/Shanghai`` is ``2026-10-31T16:00:00Z``."""
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    try:
        naive = datetime.fromisoformat(value)
        parsed = utc(naive if naive.tzinfo is not None else naive.replace(tzinfo=zone))
    except (ValueError, OverflowError):
        raise ValueError(f"not a time: {text!r} (expected RFC 3339, e.g. 2026-11-01T10:00:00Z)") from None
    if not EARLIEST <= parsed < LATEST:
        raise ValueError(f"out of range: {text!r} (kubetally handles times from {EARLIEST.year} to {LATEST.year - 1})")
    return parsed


def format_time(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(value: datetime, length: timedelta) -> datetime:
    """Floor to a multiple of ``length`` since the Unix epoch (UTC midnight for days)."""
    value = utc(value)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    step = int(length.total_seconds())
    seconds = int((value - epoch).total_seconds())
    return epoch + timedelta(seconds=seconds - seconds % step)


@dataclass(frozen=True, order=True)
class Period:
    """One closed billing window ``[start, end)``."""

    start: datetime
    end: datetime

    @classmethod
    def containing(cls, instant: datetime, length: timedelta) -> Period:
        start = floor_to(instant, length)
        return cls(start, start + length)

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def seconds(self) -> int:
        return int(self.length.total_seconds())

    @property
    def last_second(self) -> datetime:
        return self.end - timedelta(seconds=1)

    @property
    def day(self) -> datetime:
        return floor_to(self.start, timedelta(days=1))

    def __str__(self) -> str:
        return f"[{format_time(self.start)}, {format_time(self.end)})"


def periods_between(start: datetime, end: datetime, length: timedelta) -> Iterator[Period]:
    """Every whole period of ``length`` that lies inside ``[start, end)``.

    ``start`` is rounded up and ``end`` down to period boundaries, so a partial period at
    either edge is never produced: it is not closed yet, or belongs to an earlier run.
    """
    first = floor_to(start, length)
    if first < utc(start):
        first += length
    cursor = first
    end = utc(end)
    while cursor + length <= end:
        yield Period(cursor, cursor + length)
        cursor += length


def closed_until(now: datetime, settle: timedelta) -> datetime:
    """The latest instant up to which data is considered final (``now - settle``)."""
    return utc(now) - settle


def billing_zone(name: str) -> tzinfo:
    """The IANA zone ``name`` (``Asia/Shanghai``), via :mod:`zoneinfo`; ``UTC`` is the default.

    Billing days and months start at local midnight in this zone; records and the ledger stay
    in UTC. Fixed offsets (``+08:00``) are refused: they have no DST rules, and an operator who
    writes one almost always means a region whose rules will change under them.
    """
    text = str(name).strip()
    if text.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as UTC, Asia/Shanghai or Europe/Berlin)"
        ) from None


def zone_name(zone: tzinfo) -> str:
    """The IANA name a zone was made from (``UTC`` for :data:`datetime.UTC`)."""
    return "UTC" if zone is UTC else str(getattr(zone, "key", zone))


def local_midnight(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """The UTC instant of local midnight, in ``zone``, of the local day ``moment`` falls in."""
    local = utc(moment).astimezone(zone)
    return datetime(local.year, local.month, local.day, tzinfo=zone).astimezone(UTC)


def next_local_midnight(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """The next local midnight after the local day of ``moment`` (23 or 25 h later on DST days)."""
    local = utc(moment).astimezone(zone)
    following = datetime(local.year, local.month, local.day) + timedelta(days=1)
    return following.replace(tzinfo=zone).astimezone(UTC)


def local_month_start(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """The UTC instant the local calendar month of ``moment`` starts (local midnight of the 1st)."""
    local = utc(moment).astimezone(zone)
    return datetime(local.year, local.month, 1, tzinfo=zone).astimezone(UTC)


def next_local_month(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """The UTC instant the local month after the one ``moment`` falls in starts."""
    local = utc(moment).astimezone(zone)
    year, month = local.year + local.month // 12, local.month % 12 + 1
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


def is_local_midnight(moment: datetime, zone: tzinfo = UTC) -> bool:
    return local_midnight(moment, zone) == utc(moment)
