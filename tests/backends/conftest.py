"""Fixtures for the fake-backend tests: one running fake per module, reset before each test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from kubetally.testing import MissingPart


def _require_contracts() -> None:
    """Vendor specs live in ``../shared/contracts``; missing → CI failure, local skip."""
    from kubetally.testing.contracts import contracts_dir

    try:
        contracts_dir()
    except MissingPart as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real part missing in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def contracts_available() -> None:
    _require_contracts()


def running_backend(name: str, **options: Any) -> Iterator[Any]:
    _require_contracts()
    from kubetally.testing.backends import start_backend

    with start_backend(name, **options) as backend:
        yield backend


@pytest.fixture(scope="module")
def lago_server() -> Iterator[Any]:
    yield from running_backend("lago")


@pytest.fixture
def lago(lago_server: Any) -> Any:
    lago_server.reset()
    if not lago_server.is_up:
        lago_server.come_up()
    return lago_server


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[Any]:
    yield from running_backend("stripe")


@pytest.fixture
def stripe(stripe_server: Any) -> Any:
    stripe_server.reset()
    if not stripe_server.is_up:
        stripe_server.come_up()
    return stripe_server


@pytest.fixture(scope="module")
def metronome_server() -> Iterator[Any]:
    yield from running_backend("metronome")


@pytest.fixture
def metronome(metronome_server: Any) -> Any:
    metronome_server.reset()
    if not metronome_server.is_up:
        metronome_server.come_up()
    return metronome_server


@pytest.fixture(scope="module")
def openmeter_server() -> Iterator[Any]:
    yield from running_backend("openmeter")


@pytest.fixture
def openmeter(openmeter_server: Any) -> Any:
    openmeter_server.reset()
    if not openmeter_server.is_up:
        openmeter_server.come_up()
    return openmeter_server


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[Any]:
    yield from running_backend("webhook")


@pytest.fixture
def webhook(webhook_server: Any) -> Any:
    webhook_server.reset()
    if not webhook_server.is_up:
        webhook_server.come_up()
    return webhook_server
