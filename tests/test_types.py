"""Type checking and the layer contract run with the suite, so CI enforces them.

mypy's settings (strict, and the short ratchet list of modules not clean yet) and the import
contract (cli > app > reports > rating | delivery | sources | sim > ledger | config > record >
periods | redact | errors) live in pyproject.toml; both check this checkout's ``src``."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # This checkout's sources, whatever the installed (editable) package points at.
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_mypy_clean() -> None:
    result = _run("-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_kept() -> None:
    result = _run(
        "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
