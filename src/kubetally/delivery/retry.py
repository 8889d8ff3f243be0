"""Exponential backoff with jitter, honouring the backend's own "come back later" hints.

Backends say when to retry in different headers (``Retry-After`` seconds or HTTP date, Lago's
``X-RateLimit-Reset`` seconds, Metronome's ``retry-after-ms``); :func:`retry_after_from` reads
them all. Jitter spreads retries of several replicas so they do not hammer a recovering
backend in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


@dataclass
class RetryPolicy:
    """``delay(n)`` for the n-th consecutive failure (n ≥ 1): ``initial · multiplier^(n-1)``,
    capped at ``maximum``, with up to ``jitter`` of it randomised; a server hint wins when it is
    longer (and is itself capped at ``max_hint`` so a bogus header cannot stall us for days)."""

    initial: timedelta = timedelta(milliseconds=500)
    maximum: timedelta = timedelta(seconds=60)
    multiplier: float = 2.0
    jitter: float = 0.2
    max_hint: timedelta = timedelta(minutes=10)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, failures: int, hint: float | None = None) -> float:
        base = self.initial.total_seconds() * self.multiplier ** max(0, failures - 1)
        base = min(base, self.maximum.total_seconds())
        seconds = base * (1 - self.jitter * self.rng.random())
        if hint is not None and hint > 0:
            seconds = max(seconds, min(hint, self.max_hint.total_seconds()))
        return seconds


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def retry_after_from(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, from whichever header it used; None if none."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        ms = _number(lower["retry-after-ms"].strip())
        if ms is not None:
            return ms / 1000
    if "retry-after" in lower:
        text = lower["retry-after"].strip()
        seconds = _number(text)
        if seconds is not None:
            return seconds
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    if "x-ratelimit-reset" in lower:
        return _number(lower["x-ratelimit-reset"].strip())
    return None
