"""Start-up time of ``kubetally --help`` and of a sub-command's ``--help``.

Runs each command ``--runs`` times in fresh interpreters (like hyperfine) with this checkout's
``src`` first on the path, or with ``--src DIR`` (e.g. an older checkout extracted with
``git archive``), interleaving the trees given so machine load hits them alike, and prints
min/median/mean wall time and how many modules the command imported (``-X importtime``)::

    python bench/bench_startup.py --runs 20
    python bench/bench_startup.py --runs 20 --src old/src --src src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = [["--help"], ["collect", "--help"], ["report", "--help"]]


def run(src: Path, args: list[str], *, importtime: bool = False) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    flags = ["-X", "importtime"] if importtime else []
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-m", "kubetally.cli.main", *args], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{src}: kubetally {' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--src", type=Path, action="append", help="source tree(s) to compare (default: ./src)")
    options = parser.parse_args()
    trees = [p.resolve() for p in options.src or [REPO / "src"]]
    for args in COMMANDS:
        times: dict[Path, list[float]] = {tree: [] for tree in trees}
        for tree in trees:
            run(tree, args)  # warm the file cache and byte-code
        for _ in range(options.runs):
            for tree in trees:
                times[tree].append(run(tree, args)[0])
        for tree in trees:
            modules = sum(1 for line in run(tree, args, importtime=True)[1].splitlines() if "import time:" in line)
            values = times[tree]
            print(
                f"kubetally {' '.join(args):<16} {tree}: min {min(values):.2f}s  median "
                f"{statistics.median(values):.2f}s  mean {statistics.mean(values):.2f}s  "
                f"({len(values)} runs, {modules - 1} modules imported)"
            )


if __name__ == "__main__":
    main()
