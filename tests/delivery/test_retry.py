"""Backoff with jitter and the servers' wait hints."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from kubetally.delivery.retry import RetryPolicy, retry_after_from


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=8), jitter=0.2, rng=random.Random(7))
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        delays = [policy.delay(failures) for _ in range(200)]
        assert min(delays) >= base * 0.8
        assert max(delays) <= base


def test_server_hint_wins_when_longer_and_is_capped() -> None:
    policy = RetryPolicy(initial=timedelta(seconds=1), jitter=0.0, max_hint=timedelta(seconds=30))
    assert policy.delay(1, 5.0) == 5.0
    assert policy.delay(1, 0.2) == 1.0
    assert policy.delay(1, 3600.0) == 30.0


def test_retry_after_headers_of_every_vendor() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_from({"Retry-After": "3"}) == 3.0
    assert retry_after_from({"retry-after": "Sun, 01 Nov 2026 12:00:10 GMT"}, now) == 10.0
    assert retry_after_from({"retry-after-ms": "250", "Retry-After": "1"}) == 0.25
    assert retry_after_from({"X-RateLimit-Reset": "7"}) == 7.0
    assert retry_after_from({"Retry-After": "soon"}) is None
    assert retry_after_from({}) is None
