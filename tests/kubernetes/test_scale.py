"""Collection at scale: memory follows the cluster, not the window; a killed backfill resumes.

Both run ``kubetally collect --kubernetes`` in a child process (the CLI as an operator runs it)
against a generated cluster served by the simulator in this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from test_streaming import GENERATED_NOW, dump, summary

from kubetally.ledger.store import Ledger
from kubetally.periods import format_time
from kubetally.sim import Scenario, SimServer
from kubetally.sim.generate import generate_cluster
from kubetally.sources.kubernetes.items import ITEMS, SOURCE

SRC = Path(__file__).resolve().parents[2] / "src"
DATA = Path(__file__).resolve().parent.parent / "data" / "scale"
END = GENERATED_NOW.replace(minute=0)

#: Runs the CLI with its address space capped (argv[1] bytes, 0: no cap) and prints its peak
#: virtual size (VmPeak, kB) as the last line of stderr.
CHILD = r"""
import resource, runpy, sys
cap = int(sys.argv.pop(1))
if cap:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
sys.argv[0] = "kubetally"
try:
    runpy.run_module("kubetally.cli.main", run_name="__main__")
finally:
    peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmPeak")]
    print(f"VmPeak {peak[0]}", file=sys.stderr)
"""


def cli(kubeconfig: Path, db: str, *args: str, cap: int = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = ["collect", "--kubernetes", "--kubeconfig", str(kubeconfig), "--cluster", "gpu-east", "--db", db]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(cap), *command, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def window(hours: int) -> tuple[str, str]:
    return ("--from", format_time(END - timedelta(hours=hours)), "--to", format_time(END))


def finish(process: subprocess.Popen[str]) -> int:
    """Peak virtual size (kB) of a child that must have succeeded."""
    _out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    return int(err.strip().splitlines()[-1].split()[1])


def test_a_48_hour_collect_needs_no_more_memory_than_one_hour(tmp_path: Path) -> None:
    """500 generated pods: 48 periods are ~48× the records of one. Collected in one piece (as
    before streaming) they took ~145 MB more than one period; streamed, a few MB. The 48-hour run
    gets the 1-hour run's peak + 80 MB as a hard cap (RLIMIT_AS): per-window memory fails it.
    Checked on the one-transaction collector: it dies of MemoryError under this cap."""
    scenario = Scenario.from_dict(generate_cluster(500, now=GENERATED_NOW, hours=48))
    with SimServer(scenario) as sim:
        kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
        one_hour = finish(cli(kubeconfig, str(tmp_path / "one.db"), *window(1)))
        cap = (one_hour + 80 * 1024) * 1024
        finish(cli(kubeconfig, str(tmp_path / "two-days.db"), *window(48), cap=cap))
    with Ledger.open(str(tmp_path / "two-days.db")) as ledger:
        assert all(ledger.watermark(SOURCE, "gpu-east", item) == END for item in ITEMS)


def test_a_backfill_killed_halfway_and_run_again_writes_the_uninterrupted_ledger(
    ledger_url: str, tmp_path: Path
) -> None:
    """SIGKILL once 24 of 48 periods are committed; the rerun (no --from: from the watermark)
    gives exactly the ledger of one uninterrupted run (baseline-generated, captured before
    streaming)."""
    scenario = Scenario.from_dict(generate_cluster(300, now=GENERATED_NOW, hours=48))
    halfway = END - timedelta(hours=24)
    with SimServer(scenario) as sim, Ledger.open(ledger_url) as ledger:
        kubeconfig = sim.kubeconfig(tmp_path / "kubeconfig")
        # A killed writer's lease blocks the next one until it expires: 2 s here, not 3 min.
        config = tmp_path / "kubetally.yaml"
        config.write_text("kubernetes:\n  writer_lease: 2s\n")
        process = cli(kubeconfig, ledger_url, "-c", str(config), *window(48))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            mark = ledger.watermark(SOURCE, "gpu-east", "gpu_hours")
            if mark is not None and mark >= halfway:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, "the backfill finished before it could be killed"
        interrupted = ledger.watermark(SOURCE, "gpu-east", "gpu_hours")
        assert interrupted is not None and halfway <= interrupted < END
        time.sleep(2.5)
        finish(cli(kubeconfig, ledger_url, "-c", str(config)))  # resumes from the watermark
        assert summary(dump(ledger)) == (DATA / "baseline-generated.txt").read_text()
