"""Config discovery: ``-c``, else ``$KUBETALLY_CONFIG``, else ``./kubetally.yaml`` — so a
command run where kubetally.yaml lives needs no ``-c``, and a typo in the variable is an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"


def kt(*args: str, cwd: Path, config_variable: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("KUBETALLY_DB", None)
    env.pop("KUBETALLY_CONFIG", None)
    if config_variable is not None:
        env["KUBETALLY_CONFIG"] = config_variable
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_discovery_order(tmp_path: Path) -> None:
    (tmp_path / "kubetally.yaml").write_text("db: from-cwd.db\n")
    (tmp_path / "other.yaml").write_text("db: from-variable.db\n")
    (tmp_path / "explicit.yaml").write_text("db: from-option.db\n")
    assert kt("migrate", cwd=tmp_path).returncode == 0
    assert (tmp_path / "from-cwd.db").exists()
    assert kt("migrate", cwd=tmp_path, config_variable="other.yaml").returncode == 0
    assert (tmp_path / "from-variable.db").exists()
    assert kt("migrate", "-c", "explicit.yaml", cwd=tmp_path, config_variable="other.yaml").returncode == 0
    assert (tmp_path / "from-option.db").exists()
    # report finds its ledger through ./kubetally.yaml too (no -c, no --db)
    report = kt("report", "--prices", "example", "--format", "json", cwd=tmp_path)
    assert report.returncode == 0, report.stderr


def test_a_missing_file_in_the_variable_is_one_line(tmp_path: Path) -> None:
    done = kt("report", "--prices", "example", cwd=tmp_path, config_variable="typo.yaml")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: $KUBETALLY_CONFIG: typo.yaml: no such file"
    assert list(tmp_path.iterdir()) == []
