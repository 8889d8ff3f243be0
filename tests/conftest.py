"""Shared fixtures: real parts (PostgreSQL, Prometheus …) started once per session.

A missing real part fails the test under ``CI=true`` and is skipped, with the install hint,
elsewhere: CI must never pass by silently not testing something.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetally.testing import MissingPart

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
_db_counter = itertools.count()

# pytest-xdist workers start with COLUMNS=80 and LINES=24 in their environment; the CLI's rich
# consoles, made at import, would keep that width for the whole worker and ignore the COLUMNS a
# test passes (CliRunner env). A test that wants a width sets it, as in a serial run.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


#: Modules whose tests take the longest (mypy over the whole tree; CLI runs killed and re-run).
#: They are collected first so that, with ``-n auto`` (scripts/test), they start at once on
#: their own workers instead of being handed out last and leaving one worker busy alone.
LONG_POLES = (
    "tests/test_types.py",
    "tests/safety/test_collect_sigkill.py",
    "tests/kubernetes/test_scale.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_POLES.index(path) if path in LONG_POLES else len(LONG_POLES)

    items.sort(key=rank)  # stable: every other test keeps its order


def require(part_factory):  # type: ignore[no-untyped-def]
    """Call ``part_factory``; turn MissingPart into a CI failure or a local skip."""
    try:
        return part_factory()
    except MissingPart as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"real part missing in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """An in-process ``kubetally agent`` (CliRunner) points SIGTERM/SIGINT at its runner and
    leaves them there: afterwards Ctrl-C, a timeout's SIGTERM or an xdist shutdown would only
    stop a finished runner, and the suite would go on. Each test gets the handlers back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        if handler is not None:
            signal.signal(signum, handler)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    from kubetally.testing.postgres import postgres_server

    cm = require(postgres_server)
    with cm as server:
        yield server


@pytest.fixture
def pg_url(pg_server) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty PostgreSQL database for one test."""
    return pg_server.create_database(f"kt_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[object]:
    from kubetally.ledger.store import Ledger

    with Ledger.open(ledger_url) as opened:
        yield opened


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The product's shared documents (``../shared`` beside the repository)."""
    override = os.environ.get("KUBETALLY_SHARED")
    path = Path(override) if override else REPO.parent / "shared"
    if not path.is_dir():
        pytest.fail(f"shared documents not found at {path} (set KUBETALLY_SHARED)")
    return path


@pytest.fixture(scope="session")
def prometheus() -> Iterator[object]:
    """One real Prometheus per session, over a TSDB of every test series
    (``tests/prometheus/prom_scenario.py``); ``.url`` is its loopback base URL."""
    import importlib.util

    from kubetally.testing.prometheus import PrometheusServer

    path = Path(__file__).resolve().parent / "prometheus" / "prom_scenario.py"
    spec = importlib.util.spec_from_file_location("kubetally_prom_scenario", path)
    assert spec is not None and spec.loader is not None
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)
    server = require(lambda: PrometheusServer.start(scenario.openmetrics()))
    yield server
    server.stop()


# -- contract-validating fake billing backends (tests/backends, tests/delivery) --------------

BACKENDS = ("lago", "stripe", "metronome", "openmeter", "webhook")


@pytest.fixture(scope="session")
def contracts_available() -> None:
    """Vendor specs live in ``../shared/contracts``; missing → CI failure, local skip."""
    from kubetally.testing.contracts import contracts_dir

    require(contracts_dir)


def _backend_fixtures(name: str):  # type: ignore[no-untyped-def]
    """``<name>_server``: one running fake per module; ``<name>``: that fake, up and reset."""

    @pytest.fixture(scope="module", name=f"{name}_server")
    def server(contracts_available: None) -> Iterator[object]:
        from kubetally.testing.backends import start_backend

        with start_backend(name) as backend:
            yield backend

    @pytest.fixture(name=name)
    def fresh(request: pytest.FixtureRequest) -> object:
        backend = request.getfixturevalue(f"{name}_server")
        if not backend.is_up:
            backend.come_up()
        backend.reset()
        return backend

    return server, fresh


for _name in BACKENDS:
    globals()[f"_{_name}_server"], globals()[f"_{_name}_fresh"] = _backend_fixtures(_name)
