"""Global ``--log-level``/``--log-format``: diagnostics on stderr (JSON lines parse one by one,
with cluster context), data alone on stdout, ``--version``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kubetally.ledger.store import Ledger

SRC = Path(__file__).parents[2] / "src"
SEEDS = Path(__file__).parents[1] / "data" / "seeds"
RANGE = ["--from", "2026-03-02T10:00:00Z", "--to", "2026-03-02T11:00:00Z"]


def kt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("COLUMNS", None)  # not a terminal, no width: nothing may wrap
    return subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_version() -> None:
    done = kt("--version", cwd=Path.cwd())
    assert done.returncode == 0
    assert done.stdout.startswith("kubetally ") and done.stdout.count("\n") == 1


def test_json_logs_parse_line_by_line_and_data_stays_on_stdout(prometheus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Only the collection ConfigMap: kubetally warns that no display config is loaded.
    args = ["collect", "-c", str(SEEDS / "alauda-collection-configmap.yaml"), "--prometheus", prometheus.url]
    done = kt("--log-format", "json", *args, "--cluster", "gpu-east", "--db", "l.db", *RANGE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["level"] == "warning" and "no display config" in line["message"] for line in lines)
    assert "warning" not in done.stdout and "VgpuCoreUsed" in done.stdout  # the summary table is data
    # An error is one more JSON line, not a coloured text line.
    failed = kt("--log-format", "json", *args, "--cluster", "gpu-east", "--db", "l.db", "--item", "nope", cwd=tmp_path)
    assert failed.returncode == 1
    last = json.loads(failed.stderr.splitlines()[-1])
    assert last["level"] == "error" and "--item 'nope': no such item" in last["message"]


def test_text_logs_do_not_wrap_without_a_terminal(tmp_path: Path) -> None:
    Ledger.open(str(tmp_path / "l.db")).close()
    long_dir = "d" * 150
    done = kt("report", "--db", "l.db", "--prices", "example", "-o", f"{long_dir}/x.csv", cwd=tmp_path)
    assert done.returncode == 1
    [error] = done.stderr.splitlines()  # 190 characters on one line: no wrap at 80 columns
    assert error == f"error: --output {long_dir}/x.csv: folder {long_dir} does not exist"


def test_bad_log_options_are_one_line(tmp_path: Path) -> None:
    for option, value in (("--log-format", "yaml"), ("--log-level", "loud")):
        done = kt(option, value, "records", cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [done.stderr.strip()]
        assert option in done.stderr


def test_help_lists_every_choice_at_80_columns() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "kubetally.cli.main", "deliver", "--help"], env=env, capture_output=True, text=True
    )
    words = " ".join(done.stdout.replace("│", " ").split())
    for kind in ("lago,", "stripe,", "metronome,", "openmeter,", "webhook,", "file,", "kubetally."):
        assert kind in words, words
