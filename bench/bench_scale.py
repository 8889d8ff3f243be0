"""Benchmark: ``collect --kubernetes`` at provider scale, time and peak memory against the floor.

For each cluster size (pods; nodes and tenants follow, see :mod:`kubetally.sim.generate`) this
generates a vCluster GPU cloud with churn (pods starting and finishing inside periods, nodes
joining), a MIG node pool and dedicated nodes, serves it with ``kubetally sim serve`` (its own
process, frozen clock) and measures, in the same run:

* **list floor** — the same objects LISTed page by page (500 per page) as raw JSON with httpx and
  kept, in a child process: what any collector pays to read the cluster once;
* **collect 1 h / 48 h** — ``kubetally collect --kubernetes --from … --to …`` into a fresh ledger,
  in a child process.

Time is wall-clock; peak RSS is the child's ``ru_maxrss`` (``os.wait4``). The ledger is SQLite
(a file under ``bench/.data``) or a throwaway PostgreSQL (``--backend postgresql``)::

    python bench/bench_scale.py --pods 1000 10000
    python bench/bench_scale.py --pods 100000 --windows 1 48
    python bench/bench_scale.py --pods 10000 --backend postgresql

The ledger write path alone (records/s into either ledger, the same rows) is ``--write-only``.
Not part of the test suite (pytest never collects ``bench/``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubetally.periods import format_time, parse_time
from kubetally.sim.generate import generate_cluster

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
NOW = parse_time("2026-11-04T00:05:00Z")
END = NOW.replace(minute=0)
PATHS = (
    "/api/v1/namespaces",
    "/apis/apps/v1/statefulsets?labelSelector=app%3Dvcluster",
    "/apis/apps/v1/deployments?labelSelector=app%3Dvcluster",
    "/api/v1/nodes",
    "/api/v1/pods",
    "/api/v1/persistentvolumeclaims",
    "/api/v1/services",
)

#: The list floor: every metered and tenancy resource, page by page, parsed and kept.
FLOOR = r"""
import json, sys, httpx
base, paths = sys.argv[1], sys.argv[2:]
kept = []
with httpx.Client(base_url=base, timeout=300) as client:
    for path in paths:
        token = None
        while True:
            sep = "&" if "?" in path else "?"
            url = f"{path}{sep}limit=500" + (f"&continue={token}" if token else "")
            body = json.loads(client.get(url).content)
            kept.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                break
print(len(kept))
"""


def env(src: Path = SRC) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def run_child(command: list[str], src: Path = SRC) -> tuple[float, float, str]:
    """(seconds, peak RSS GB, stdout): waits with ``os.wait4`` to get this child's own rusage.
    The child's CPU seconds (user + system) are added to the output as ``cpu-seconds N``."""
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out_file, tempfile.TemporaryFile(mode="w+") as err_file:
        process = subprocess.Popen(command, env=env(src), stdout=out_file, stderr=err_file, text=True)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command[:8])} … failed:\n{err_file.read()[-3000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return seconds, usage.ru_maxrss / 1024 / 1024, f"{out_file.read()}{err_file.read()}\ncpu-seconds {cpu}\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/api", timeout=30).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def served(scenario: Path, workdir: Path) -> Iterator[tuple[str, Path]]:
    """``kubetally sim serve`` in its own process; (base URL, kubeconfig)."""
    port = free_port()
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    command = [sys.executable, "-m", "kubetally.cli.main", "sim", "serve", "-s", str(scenario)]
    command += ["--port", str(port), "--speed", "0", "--kubeconfig", str(kubeconfig)]
    process = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 1800
        url = f"http://127.0.0.1:{port}"
        while not kubeconfig.exists() or not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sim serve did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(1)
        yield url, kubeconfig
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a 100k-object server on a loaded machine can be slow to stop
            process.kill()
            process.wait()


def cpu_of(out: str) -> float:
    return float(out.rsplit("cpu-seconds ", 1)[1].split()[0])


def collect(kubeconfig: Path, db: str, hours: int, src: Path = SRC) -> tuple[float, float, int, float]:
    command = [sys.executable, "-m", "kubetally.cli.main", "collect", "--kubernetes", "--kubeconfig", str(kubeconfig)]
    command += ["--cluster", "bench", "--db", db]
    command += ["--from", format_time(END - timedelta(hours=hours)), "--to", format_time(END)]
    seconds, rss, out = run_child(command, src)
    records = 0
    for line in out.splitlines():
        if " new, " in line:  # "kubernetes: N period(s) …: X new, Y revised, Z unchanged record(s)"
            records = int(line.split(": ")[-1].split(" new")[0].replace(",", ""))
    return seconds, rss, records, cpu_of(out)


def fresh_db(stack: ExitStack, backend: str, workdir: Path, name: str) -> str:
    if backend == "postgresql":
        server = stack.enter_context(_postgres())
        return str(server.create_database(f"bench_{name}_{os.getpid()}"))
    path = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return str(path)


_PG: list[Any] = []  # [context manager, server]: one throwaway PostgreSQL for the whole run


@contextmanager
def _postgres() -> Iterator[Any]:
    if not _PG:
        from kubetally.testing.postgres import postgres_server

        manager = postgres_server()
        _PG.extend([manager, manager.__enter__()])
    yield _PG[1]


def scale(
    pods: int, windows: list[int], backend: str, workdir: Path, before: Path | None = None
) -> list[dict[str, Any]]:
    scenario = workdir / f"cluster-{pods}.json"
    if not scenario.exists():
        scenario.write_text(json.dumps(generate_cluster(pods, now=NOW, hours=max(windows))))
    rows = []
    with ExitStack() as stack, served(scenario, workdir) as (url, kubeconfig):
        seconds, rss, out = run_child([sys.executable, "-c", FLOOR, url, *PATHS])
        objects, cpu = int(out.split()[0]), cpu_of(out)
        rows.append(
            {"pods": pods, "what": "list floor", "objects": objects, "seconds": seconds, "cpu": cpu, "rss_gb": rss}
        )
        print(f"{pods} pods: list floor {objects} objects {seconds:.1f} s ({cpu:.1f} CPU-s) {rss:.2f} GB", flush=True)
        runs = [(hours, SRC, "") for hours in windows]
        if before is not None:  # the same windows with another tree's code, against the same server
            runs = [run for hours in windows for run in ((hours, before, " (before)"), (hours, SRC, ""))]
        for hours, src, tag in runs:
            db = fresh_db(stack, backend, workdir, f"collect-{pods}-{hours}{tag.strip(' ()')}")
            seconds, rss, records, cpu = collect(kubeconfig, db, hours, src)
            rows.append(
                {
                    "pods": pods,
                    "what": f"collect {hours} h{tag}",
                    "records": records,
                    "seconds": seconds,
                    "cpu": cpu,
                    "rss_gb": rss,
                }
            )
            print(
                f"{pods} pods: collect {hours} h{tag} {records} records {seconds:.1f} s ({cpu:.1f} CPU-s) {rss:.2f} GB "
                f"({records / seconds:,.0f} records/s)",
                flush=True,
            )
    return rows


def write_path(count: int, backend: str, workdir: Path) -> None:
    """Records/s of ``Ledger.write`` alone: ``count`` generated-cluster-shaped records written in
    batches of one period (the streamed collector's unit) into a fresh ledger, then the same
    records again (every one found unchanged: the revision check alone)."""
    from kubetally.ledger.store import Ledger
    from kubetally.periods import Period, PeriodKind
    from kubetally.record import UsageRecord

    per_period = 20_000
    batches = []
    for hour in range(max(1, count // per_period)):
        period = Period(END - timedelta(hours=hour + 1), END - timedelta(hours=hour))
        batches.append(
            [
                UsageRecord.measure(
                    cluster="bench",
                    kind="Pod",
                    category="gpu",
                    item="gpu_hours",
                    name=f"train-{i:06d}-x-vc-t{i % 200:04d}-x-t{i % 200:04d}",
                    namespace=f"vc-t{i % 200:04d}",
                    tenant=f"vcluster/vc-t{i % 200:04d}/t{i % 200:04d}",
                    period_kind=PeriodKind.hourly,
                    period=period,
                    usage=f"{i % 7}.{i:09d}"[:11],
                    unit="hours",
                    dimensions={"gpu_sku": "nvidia-h100-sxm-80gb", "billing_mode": "shared"},
                    labels={"node": f"h100-{i % 1000:05d}", "gpu_product": "NVIDIA-H100-80GB-HBM3"},
                )
                for i in range(per_period)
            ]
        )
    total = sum(len(b) for b in batches)
    with ExitStack() as stack:
        db = fresh_db(stack, backend, workdir, "write-path")
        with Ledger.open(db) as ledger:
            for label in ("new", "unchanged"):
                started = time.perf_counter()
                cpu = time.process_time()
                for batch in batches:
                    ledger.write(batch)
                seconds = time.perf_counter() - started
                print(
                    f"write path ({backend}), {label}: {total:,} records in {seconds:.1f} s = "
                    f"{total / seconds:,.0f} records/s ({total / (time.process_time() - cpu):,.0f} per CPU-s "
                    "of this process)",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 48], help="collect windows in hours")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workdir", type=Path, default=HERE / ".data" / "scale")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--before-src",
        type=Path,
        help="also run each collect with this source tree (e.g. `git archive <rev> src | tar -x -C DIR`; "
        "pass DIR/src), against the same server and floor",
    )
    parser.add_argument("--write-only", type=int, metavar="RECORDS", help="only time Ledger.write of RECORDS")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.write_only:
        write_path(args.write_only, args.backend, args.workdir)
        return
    rows = []
    for pods in args.pods:
        rows += scale(pods, args.windows, args.backend, args.workdir, args.before_src)
    print()
    print(f"| pods | what | records/objects | time | CPU | peak RSS |  ({args.backend})")
    print("|---|---|---|---|---|---|")
    for row in rows:
        count = row.get("records", row.get("objects"))
        print(
            f"| {row['pods']:,} | {row['what']} | {count:,} | {row['seconds']:.1f} s | {row['cpu']:.1f} s "
            f"| {row['rss_gb']:.2f} GB |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
