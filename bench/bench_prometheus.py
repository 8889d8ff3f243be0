"""Benchmark: ``collect --prometheus`` at provider scale against the query floor.

Builds a TSDB of ``--devices`` HAMi vGPU devices (the seed's metric shapes: a core-seconds
counter and a memory gauge per device, a ``vgpu_core_labels`` series per device, namespaces
with a project label from kube-state-metrics) over ``--hours`` hours, scraped every ``--scrape``
seconds on the step grid (as ``tests/prometheus/prom_scenario.py`` does), with ``promtool``; it is
cached under ``bench/.data/prometheus`` keyed by those parameters, so reruns start at once.
A real ``prometheus`` serves it (compaction off, so the server does no background work while
measuring) and, in the same run, each in its own child process:

* **floor** — the very range queries the collector issues (the seed's two items: usage and
  label query per item and period, the namespace → project query once per period), posted with
  httpx one after another, each answer parsed with the standard ``json`` module and every point
  summed as a float: what any collector pays to ask Prometheus and read the answers;
* **collect** — ``kubetally collect --prometheus … -c <seed ConfigMap> --from … --to …`` into a
  fresh ledger (SQLite under ``bench/.data``, or ``--backend postgresql``).

Wall time, CPU (the child's user + system seconds; Prometheus's own CPU is not in it) and
peak RSS (``ru_maxrss``) of each child::

    python bench/bench_prometheus.py --devices 1000 --hours 4
    python bench/bench_prometheus.py                      # 10 000 devices × 24 h
    python bench/bench_prometheus.py --before-src /tmp/old/src   # also the old collector

Not part of the test suite (pytest never collects ``bench/``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SEED = HERE.parent / "tests" / "data" / "seeds" / "alauda-collection-configmap.yaml"
#: The metered day starts here (a fixed past date, 2h-aligned for TSDB blocks).
DAY = datetime(2026, 3, 2, tzinfo=UTC)
DEVICES_PER_NAMESPACE = 50
NAMESPACES_PER_PROJECT = 4
MODELS = ("Tesla T4", "NVIDIA A100-PCIE-40GB", "NVIDIA H100 80GB HBM3", "Tesla P100-PCIE-16GB")
GIB = 1 << 30
BLOCK = 7200  # promtool's (and Prometheus's) 2-hour block

#: The floor: the same range queries, one after another, answers parsed and every point summed.
FLOOR = r"""
import json, sys, httpx
base, plan = sys.argv[1], json.load(open(sys.argv[2]))
points = 0
total = 0.0
with httpx.Client(timeout=600) as client:
    for form in plan:
        body = json.loads(client.post(base + "/api/v1/query_range", data=form).content)
        assert body["status"] == "success", body
        for series in body["data"]["result"]:
            for _ts, value in series["values"]:
                total += float(value)
                points += 1
print(points, total)
"""


def env(src: Path = SRC) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def run_child(command: list[str], src: Path = SRC) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak RSS GB, output) of one child, its rusage from ``os.wait4``."""
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
        return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024 / 1024, out_file.read()


# -- the data ------------------------------------------------------------------------------------


def _uuid(i: int) -> str:
    return f"GPU-{i:08x}-5a10-4e61-9a0c-{i * 2654435761 % (1 << 48):012x}"


def _series(devices: int) -> list[tuple[str, str, str, str, int, int]]:
    """Per device: (usage label text, label-series label text, uuid, namespace, counter rate
    numerator (/64 core-seconds per second), memory base)."""
    rows = []
    for i in range(devices):
        uuid = _uuid(i)
        namespace = f"tenant-{i // DEVICES_PER_NAMESPACE:04d}"
        usage = (
            f'containeridx="0",deviceuuid="{uuid}",job="hami-scheduler",nodename="gpu-node-{i // 8:05d}",'
            f'podname="train-{i:06d}-7d9ff4544-bqkvg",podnamespace="{namespace}"'
        )
        labels = (
            f'deviceuuid="{uuid}",job="prometheus-rules",label_device="nvidia",'
            f'label_modelName="{MODELS[i % len(MODELS)]}",podnamespace="{namespace}"'
        )
        rows.append((usage, labels, uuid, namespace, 1 + i % 64, (1 + i % 16) * GIB // 4))
    return rows


def _chunk(
    path: Path, devices: list[tuple[str, str, str, str, int, int]], origin: int, lo: int, hi: int, scrape: int
) -> None:
    """OpenMetrics for samples at ``lo <= t < hi``: families contiguous, series in time order.

    A line is ``<name>{<labels>} <value> <t>``; the ``<value> <t>`` tails depend only on a
    device's rate or memory base (a few dozen kinds), so each kind's tails are made once per
    chunk and every series is written as ``prefix + prefix.join(tails)`` (C speed: 10 000
    devices × 24 h at 15 s are 173 M lines)."""
    times = range(lo + (-(lo - origin)) % scrape, hi, scrape)
    if not times:
        return
    namespaces = sorted({d[3] for d in devices})
    ones = [f" 1 {t}\n" for t in times]
    counters: dict[int, list[str]] = {}
    memories: dict[int, list[str]] = {}

    def write(out: Any, prefix: str, tails: list[str]) -> None:
        out.write(prefix)
        out.write(prefix.join(tails))

    with path.open("w", encoding="utf-8", buffering=1 << 22) as out:
        out.write("# TYPE kube_namespace_labels gauge\n")
        for namespace in namespaces:
            project = f"project-{int(namespace.rsplit('-', 1)[1]) // NAMESPACES_PER_PROJECT:04d}"
            prefix = (
                f'kube_namespace_labels{{instance="10.0.0.5:8080",job="kube-state-metrics",'
                f'label_cpaas_io_project="{project}",namespace="{namespace}"}}'
            )
            write(out, prefix, ones)
        out.write("# TYPE vgpu_core_labels gauge\n")
        for _usage, labels, *_ in devices:
            write(out, f"vgpu_core_labels{{{labels}}}", ones)
        out.write("# TYPE vgpu_core_usage_seconds counter\n")
        for usage, _labels, _uuid, _ns, rate, _memory in devices:
            tails = counters.get(rate)
            if tails is None:
                # rate/64 per second from 0 at the origin: exact in binary floats, so rate() is exact.
                tails = counters[rate] = [f" {(t - origin) * rate / 64!r} {t}\n" for t in times]
            write(out, f"vgpu_core_usage_seconds_total{{{usage}}}", tails)
        out.write("# TYPE vgpu_memory_usage_bytes gauge\n")
        for usage, _labels, _uuid, _ns, _rate, memory in devices:
            tails = memories.get(memory)
            if tails is None:
                tails = memories[memory] = [f" {memory + (t // scrape % 7) * 1048576} {t}\n" for t in times]
            write(out, f"vgpu_memory_usage_bytes{{{usage}}}", tails)
        out.write("# EOF\n")


def build_tsdb(devices: int, hours: int, scrape: int, workdir: Path) -> Path:
    """The cached TSDB directory for these parameters (built in 2-hour chunks, generating the
    next chunk while ``promtool`` imports the previous one)."""
    from kubetally.testing.prometheus import binaries

    target = workdir / f"tsdb-d{devices}-h{hours}-s{scrape}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _, promtool = binaries()
    origin = int(DAY.timestamp()) - 600  # 10 minutes of history before the first period's windows
    until = int(DAY.timestamp()) + hours * 3600 + 600
    rows = _series(devices)
    started = time.perf_counter()
    pending: tuple[subprocess.Popen[bytes], Path] | None = None
    lo = origin
    while lo < until:
        hi = min(until, (lo // BLOCK + 1) * BLOCK)
        path = workdir / f"chunk-{lo}.om"
        _chunk(path, rows, origin, lo, hi, scrape)
        if not path.exists():
            lo = hi
            continue
        if pending is not None:
            _finish(*pending)
        command = [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path), str(target)]
        pending = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), path)
        print(f"  TSDB: chunk {(lo - origin) / 3600:.1f}–{(hi - origin) / 3600:.1f} h generated", flush=True)
        lo = hi
    if pending is not None:
        _finish(*pending)
    (target / ".complete").write_text(f"{devices} devices, {hours} h, {scrape} s\n")
    print(f"  TSDB built in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def _finish(process: subprocess.Popen[bytes], path: Path) -> None:
    out, _ = process.communicate()
    path.unlink(missing_ok=True)
    if process.returncode != 0:
        raise SystemExit(f"promtool failed on {path.name}: {out.decode(errors='replace')[-2000:]}")


@contextmanager
def served(data: Path) -> Iterator[str]:
    """A real ``prometheus`` over ``data`` with compaction off (min = max block duration)."""
    from kubetally.testing.net import free_port
    from kubetally.testing.prometheus import TEST_RETENTION, binaries

    prometheus, _ = binaries()
    root = Path(tempfile.mkdtemp(prefix="bench-prom-"))
    config = root / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 1h\nscrape_configs: []\n", encoding="utf-8")
    port = free_port()
    command = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={TEST_RETENTION}",
        "--storage.tsdb.min-block-duration=2h",
        "--storage.tsdb.max-block-duration=2h",
        f"--web.listen-address=127.0.0.1:{port}",
        "--query.max-samples=500000000",
        "--log.level=warn",
    ]
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"prometheus did not start: {(root / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


# -- the queries ---------------------------------------------------------------------------------


def query_plan(hours: int) -> list[dict[str, str]]:
    """The range queries ``collect`` issues for the window, in its order (same forms)."""
    from kubetally.config import load_config
    from kubetally.periods import periods_between
    from kubetally.sources.prometheus.client import _timestamp
    from kubetally.sources.prometheus.evaluate import range_window
    from kubetally.sources.prometheus.project import project_query

    config = load_config([SEED])
    plan = []
    for period in periods_between(DAY, DAY + timedelta(hours=hours), timedelta(hours=1)):
        asked_projects = False
        for item in config.items:
            start, end = range_window(period, item.usage.step)
            form = {
                "start": _timestamp(start),
                "end": _timestamp(end),
                "step": f"{int(item.usage.step.total_seconds())}s",
            }
            form["timeout"] = "60s"
            plan.append({"query": item.usage.query, **form})
            if item.labels is not None:
                plan.append({"query": item.labels.query, **form})
            if not asked_projects:
                plan.append({"query": project_query(config.settings.collection.project_label), **form})
                asked_projects = True
    return plan


def fresh_db(stack: ExitStack, backend: str, workdir: Path, name: str) -> str:
    if backend == "postgresql":
        from kubetally.testing.postgres import postgres_server

        server = stack.enter_context(postgres_server())
        return str(server.create_database(f"bench_{name}_{os.getpid()}"))
    path = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return str(path)


def ledger_digest(db: str) -> tuple[int, str]:
    """(rows, digest over every row's id, revision, usage, labels): two runs that wrote the same
    ledger have the same digest."""
    import hashlib

    from sqlalchemy import text

    from kubetally.ledger.store import Ledger

    digest = hashlib.blake2b(digest_size=16)
    count = 0
    with Ledger.open(db) as ledger, ledger.engine.connect() as conn:
        for row in conn.execute(text("SELECT id, revision, usage, labels, tenant FROM records ORDER BY id, revision")):
            digest.update(repr(tuple(str(v) for v in row)).encode())
            count += 1
    return count, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--scrape", type=int, default=15, help="scrape interval in seconds (divides 300)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workdir", type=Path, default=HERE / ".data" / "prometheus")
    parser.add_argument("--before-src", type=Path, help="also run collect with this source tree (DIR/src)")
    parser.add_argument("--repeat", type=int, default=1, help="measure floor and collect this many times each")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[4],
        help="collect once per value of prometheus.max_concurrent_queries (the new collector)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = build_tsdb(args.devices, args.hours, args.scrape, args.workdir)
    plan_file = args.workdir / f"plan-h{args.hours}.json"
    plan_file.write_text(json.dumps(query_plan(args.hours)))
    end = DAY + timedelta(hours=args.hours)
    rows: list[dict[str, Any]] = []
    digests = {}

    def show(row: dict[str, Any]) -> None:
        rows.append(row)
        print(
            f"{row['what']}: {row['count']:,} {row['unit']} {row['seconds']:.1f} s wall, {row['cpu']:.1f} CPU-s, "
            f"{row['rss_gb']:.2f} GB",
            flush=True,
        )

    with ExitStack() as stack, served(data) as url:
        runs: list[tuple[str, Path, list[str]]] = []
        if args.before_src is not None:
            runs.append(("collect (before)", args.before_src, []))
        for bound in args.concurrency:
            settings = args.workdir / f"concurrency-{bound}.yaml"
            settings.write_text(f"prometheus:\n  max_concurrent_queries: {bound}\n", encoding="utf-8")
            runs.append((f"collect, {bound} at once", SRC, ["-c", str(settings)]))
        for round_ in range(args.repeat):
            seconds, cpu, rss, out = run_child([sys.executable, "-c", FLOOR, url, str(plan_file)])
            show(
                {
                    "what": "floor",
                    "count": int(out.split()[0]),
                    "unit": "points",
                    "seconds": seconds,
                    "cpu": cpu,
                    "rss_gb": rss,
                }
            )
            for what, src, extra in runs:
                db = fresh_db(stack, args.backend, args.workdir, f"collect-{args.devices}-{args.hours}-{round_}")
                command = [sys.executable, "-m", "kubetally.cli.main", "collect", "--prometheus", url, "-c", str(SEED)]
                command += extra
                command += ["--cluster", "bench", "--db", db, "--from", DAY.isoformat(), "--to", end.isoformat()]
                seconds, cpu, rss, out = run_child(command, src)
                count, digest = ledger_digest(db)
                digests[what] = digest
                show({"what": what, "count": count, "unit": "records", "seconds": seconds, "cpu": cpu, "rss_gb": rss})
    if len(set(digests.values())) > 1:
        print(f"LEDGERS DIFFER: {digests}")
    floors = [r for r in rows if r["what"] == "floor"]
    floor_wall = min(r["seconds"] for r in floors)
    floor_cpu = min(r["cpu"] for r in floors)
    print()
    print(
        f"{args.devices:,} devices × {args.hours} h, scrape {args.scrape} s, {args.backend}; ledger digest(s) {digests}"
    )
    print("| run | points / records | wall | CPU | peak RSS | vs floor (wall / CPU) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['what']} | {row['count']:,} | {row['seconds']:.1f} s | {row['cpu']:.1f} s "
            f"| {row['rss_gb']:.2f} GB "
            f"| {row['seconds'] / floor_wall:.2f}× / {row['cpu'] / floor_cpu:.2f}× |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
