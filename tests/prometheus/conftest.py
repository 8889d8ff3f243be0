"""Fixtures for the Prometheus tests; the server itself is the session fixture ``prometheus``
(tests/conftest.py): one real ``prometheus`` over every series of ``prom_scenario.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kubetally.sources.prometheus.client import PrometheusClient


@pytest.fixture
def client(prometheus) -> Iterator[PrometheusClient]:  # type: ignore[no-untyped-def]
    with PrometheusClient(prometheus.url, timeout=30) as opened:
        yield opened


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a YAML file into the test's temp dir and return its path."""

    def write(text: str, name: str = "kubetally.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
