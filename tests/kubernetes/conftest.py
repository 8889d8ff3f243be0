"""Fixtures of the Kubernetes source tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries keep their logic, not their production pauses (0.5 s, 1 s …)."""
    monkeypatch.setattr("kubetally.sources.kubernetes.client.RETRY_BACKOFF", 0.01)
