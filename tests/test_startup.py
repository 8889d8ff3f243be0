"""``kubetally --help`` and each command's ``--help`` import only the command line itself.

Start-up used to take 1.5–2.5 s because every command module imported its whole part (the
pydantic models, SQLAlchemy and Alembic, the simulator with FastAPI, the Kubernetes client). The
times are measured by bench/bench_startup.py; this test keeps the cause from coming back by
checking which modules a ``--help`` loads, which does not depend on the machine's speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kubetally

#: Heavy libraries a --help must not load (each costs 50–500 ms). pydantic itself is not listed:
#: typer imports it (typer._adapters) to run any sub-command; our models are checked below.
HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "kubernetes", "httpx", "pyarrow", "yaml")
#: The only parts of kubetally a --help needs besides the command line.
# kubetally.logs: the global --log-level/--log-format set-up (stdlib logging and json only)
LIGHT = {
    "kubetally",
    "kubetally.periods",
    "kubetally.errors",
    "kubetally.config",
    "kubetally.config.names",
    "kubetally.logs",
}


def imported(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(kubetally.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "kubetally.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    "command", [[], ["collect"], ["agent"], ["deliver"], ["report"], ["export", "focus"], ["sim", "serve"]]
)
def test_help_imports_no_heavy_library(command: list[str]) -> None:
    modules = imported(*command, "--help")
    assert "kubetally.cli.agent" in modules  # the command line itself was loaded
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    ours = {m for m in modules if m.split(".")[0] == "kubetally" and not m.startswith("kubetally.cli")}
    assert sorted(ours - LIGHT) == []
    if not command:
        assert "pydantic" not in modules
