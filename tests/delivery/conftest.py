"""Fakes of the billing backends (one per module, reset before each test) and quick ledgers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetally.ledger.store import Ledger
from kubetally.testing import MissingPart


def _backend(name: str, **options: Any) -> Iterator[Any]:
    from kubetally.testing.contracts import contracts_dir

    try:
        contracts_dir()
    except MissingPart as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real part missing in CI: {exc}")
        pytest.skip(str(exc))
    from kubetally.testing.backends import start_backend

    with start_backend(name, **options) as backend:
        yield backend


def _fresh(backend: Any) -> Any:
    backend.come_up()
    backend.reset()
    return backend


@pytest.fixture(scope="module")
def _lago() -> Iterator[Any]:
    yield from _backend("lago")


@pytest.fixture
def lago(_lago: Any) -> Any:
    return _fresh(_lago)


@pytest.fixture(scope="module")
def _stripe() -> Iterator[Any]:
    yield from _backend("stripe")


@pytest.fixture
def stripe(_stripe: Any) -> Any:
    return _fresh(_stripe)


@pytest.fixture(scope="module")
def _metronome() -> Iterator[Any]:
    yield from _backend("metronome")


@pytest.fixture
def metronome(_metronome: Any) -> Any:
    return _fresh(_metronome)


@pytest.fixture(scope="module")
def _openmeter() -> Iterator[Any]:
    yield from _backend("openmeter")


@pytest.fixture
def openmeter(_openmeter: Any) -> Any:
    return _fresh(_openmeter)


@pytest.fixture(scope="module")
def _webhook() -> Iterator[Any]:
    yield from _backend("webhook")


@pytest.fixture
def webhook(_webhook: Any) -> Any:
    return _fresh(_webhook)


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(str(tmp_path / "ledger.db")) as opened:
        yield opened
