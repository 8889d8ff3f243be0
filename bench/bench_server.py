"""Benchmark: the server's cost API over a month of hourly records for 10,000 pods (PostgreSQL).

Builds the server's ledger — ``--pods`` pods across ``--tenants`` tenants (two namespaces each)
and two clusters, one record per pod and hour of November 2026 (GPU, CPU or memory hours,
labelled with GPU SKU and capacity type, priced with the built-in example price book) — written
straight into ``records`` with ``COPY`` and folded into the rollups with the production code.
Then starts real ``kubetally server`` processes (uvicorn) and measures over HTTP:

* ``costs/total`` by tenant per day for the month (every tenant: an admin token), and
* ``costs/detail`` for one tenant, one page of 100 rows (a tenant token),

each ``--repeat`` times, p50/p95/p99: the first request ever (nothing stored), *warm* (the
ledger unchanged between requests), *after a write* (one new record for the last hour of the
month posted before each request), *after a restart* (``--restarts`` fresh server processes,
each timed on its first request: the buckets stored in the ledger by the first server are
read) and with *no cache* (``server.report_cache: 0``: every request rates the whole month).
The loaded ledger is kept under ``bench/.data`` (see :func:`loaded_ledger`).
Last, ingest throughput: ``--ingest`` records delivered by an agent's outbox
(``kubetally deliver --to kubetally``, batches of 500) next to the same number written straight
into the same ledger with :meth:`Ledger.write` in the same batches::

    python bench/bench_server.py                     # 10,000 pods × 720 hours = 7.2 M records
    python bench/bench_server.py --pods 1000 --repeat 20

Not part of the test suite (pytest never collects ``bench/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from kubetally.config.destinations import one_off_config
from kubetally.delivery.engine import deliver_once
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind
from kubetally.rating import refresh_rollups
from kubetally.record import UsageRecord
from kubetally.server.tokens import create_token
from kubetally.testing.postgres import postgres_server
from kubetally.testing.server import ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import CAPACITY, COLUMNS, GPU_SKUS

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
HOURS = 720
ITEMS = (("gpu_hours", 8), ("cpu_core_hours", 64), ("memory_gib_hours", 512))


def pod_rows(pods: int, tenants: int) -> Iterator[tuple[Any, ...]]:
    """One record per pod and hour, exactly as the ledger stores it (naive UTC times)."""
    population = []
    for i in range(pods):
        item, base = ITEMS[i % 3]
        tenant = f"tenant-{i % tenants:04d}"
        labels = {"capacity_type": CAPACITY[i % 4]}
        if item == "gpu_hours":
            labels["gpu_sku"] = GPU_SKUS[(i // 3) % len(GPU_SKUS)]
        usage = f"{(i % base) + 1}.{(i * 37) % 3600:04d}"
        cluster = f"gpu-cloud-{i % 2 + 1}"
        namespace = f"{tenant}-ns{(i // tenants) % 2}"
        population.append((item, f"pod-{i}", namespace, cluster, tenant, json.dumps(labels, sort_keys=True), usage))
    recorded = datetime(2026, 12, 1, 0, 5)
    for hour in range(HOURS):
        start = (MONTH_START + timedelta(hours=hour)).replace(tzinfo=None)
        day, end = start.replace(hour=0), start + timedelta(minutes=59, seconds=59)
        for item, name, namespace, cluster, tenant, labels, usage in population:
            rid = hashlib.blake2b(f"{cluster}/{name}@{hour}".encode(), digest_size=16).hexdigest()
            yield (rid, 0, True, "Pod", "compute", item, name, namespace, cluster, f"p-{tenant}", tenant,
                   labels, day, "hourly", start, end, usage, "h", recorded)  # fmt: skip


def load(url: str, pods: int, tenants: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = ", ".join(f'"{c}"' for c in COLUMNS)
        with cur.copy(f"COPY records ({columns}) FROM STDIN") as copy:
            for row in pod_rows(pods, tenants):
                copy.write_row(row)
        cur.execute("ANALYZE records")


#: Bump when ``pod_rows`` or the build changes: the key of a cached data directory.
DATA_FORMAT = 1
#: Clusters only the benchmark's own writes use; their rows are removed before each run.
BENCH_CLUSTERS = ("gpu-cloud-3", "gpu-cloud-4")


def data_dir(pods: int, tenants: int) -> Path:
    """Where the loaded PostgreSQL data directory of these parameters is kept between runs."""
    return Path(__file__).resolve().parent / ".data" / f"server-pods{pods}-tenants{tenants}-hours{HOURS}-v{DATA_FORMAT}"


@contextmanager
def loaded_ledger(pods: int, tenants: int, rebuild: bool) -> Iterator[str]:
    """A PostgreSQL server holding the benchmark's month, built once per parameters.

    The first run loads the records with ``COPY`` and folds them into the rollups (10–20 min at
    10,000 pods on a busy machine), then writes ``built.json`` (the ledger's ``seq`` and rollup
    cursor at that point) into the directory. Every run, first or not, starts by putting the
    ledger back to that state: the records and rollups of the benchmark's own writes (clusters
    only it uses) are deleted, the cursor is set back, tokens and stored report buckets go.
    """
    where = data_dir(pods, tenants)
    marker = where / "built.json"
    if rebuild or not marker.exists():
        shutil.rmtree(where, ignore_errors=True)
    with postgres_server(where / "pg") as pg:
        url = pg.url("bench_server")
        if not marker.exists():
            pg.create_database("bench_server")
            print(f"building {where.name} (cached for later runs)", flush=True)
            with Ledger.open(url) as ledger:
                timed("load records (COPY)", lambda: load(url, pods, tenants))
                timed("fold into rollups", lambda: refresh_rollups(ledger, label_keys={"gpu_sku", "capacity_type"}))
            marker.write_text(json.dumps(built_state(url)), encoding="utf-8")
        else:
            print(f"reusing {where.name}", flush=True)
        restore(url, json.loads(marker.read_text(encoding="utf-8")))
        yield url


def built_state(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()
        cursor = conn.execute("SELECT seq FROM rating_rollup_state").fetchone()
    assert seq is not None and cursor is not None
    return {"seq": int(seq[0]), "cursor": int(cursor[0])}


def restore(url: str, state: dict[str, int]) -> None:
    """Back to the ledger as built (see :func:`loaded_ledger`); migrations added since the build
    are applied by opening the ledger."""
    import psycopg

    with Ledger.open(url):
        pass
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM records WHERE seq > %s", (state["seq"],))
        conn.execute("DELETE FROM rating_rollups WHERE cluster = ANY(%s)", (list(BENCH_CLUSTERS),))
        conn.execute("DELETE FROM server_ingest")
        conn.execute("DELETE FROM server_clusters")
        conn.execute("DELETE FROM server_tokens")
        conn.execute("UPDATE rating_rollup_state SET seq = %s", (state["cursor"],))
        for table in RESTORED_TABLES:
            conn.execute(f"DELETE FROM {table}")


#: Tables of derived data emptied on restore (nothing cached from an earlier run is reused).
RESTORED_TABLES: tuple[str, ...] = ("server_report_buckets",)


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def timed(label: str, action: Any) -> Any:
    began = time.perf_counter()
    value = action()
    print(f"  {label}: {time.perf_counter() - began:.1f} s", flush=True)
    return value


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[94], cuts[98]


def latency(url: str, token: str, path: str, params: dict[str, Any], repeat: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        for _ in range(repeat):
            began = time.perf_counter()
            answer = client.get(path, params=params)
            samples.append(time.perf_counter() - began)
            assert answer.status_code == 200, answer.text[:300]
    return samples


def report(label: str, samples: list[float], note: str) -> None:
    p50, p95, p99 = percentiles(samples)
    print(
        f"  {label}: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
        f"(n={len(samples)}; {note})",
        flush=True,
    )


def after_writes(url: str, agent: str, token: str, path: str, params: dict[str, Any], repeat: int) -> list[float]:
    samples = []
    last = MONTH_START + timedelta(days=29, hours=23)
    with httpx.Client(base_url=url, timeout=600) as client:
        for i in range(repeat):
            record = UsageRecord.measure(
                cluster="gpu-cloud-3",
                kind="Pod",
                category="compute",
                item="cpu_core_hours",
                name=f"late-{path.rsplit('/', 1)[-1]}-{i}",
                namespace="tenant-0000-ns0",
                project="p-tenant-0000",
                tenant="tenant-0000",
                period_kind=PeriodKind.hourly,
                period=Period(last, last + timedelta(hours=1)),
                usage=Decimal("0.5"),
                dimensions={"capacity_type": "on-demand"},
            )
            body = {"records": [json.loads(record.to_json())]}
            posted = client.post("/api/v1/records", json=body, headers={"Authorization": f"Bearer {agent}"})
            assert posted.status_code == 200, posted.text
            began = time.perf_counter()
            answer = client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
            samples.append(time.perf_counter() - began)
            assert answer.status_code == 200, answer.text[:300]
    return samples


def sql_floor(url: str, tenant: str | None, repeat: int) -> list[float]:
    """The bare query a cold ``costs/total`` (``tenant=None``) or ``costs/detail`` (one tenant)
    runs: the month's day rollups summed per day and report line in one ``GROUP BY``, fetched
    by psycopg and nothing else — no pricing, no HTTP. The floor the API's figures stand on."""
    import psycopg

    by = "tenant, category, item, unit, labels" if tenant is None else (
        "tenant, project, cluster, namespace, category, item, unit, labels"
    )  # fmt: skip
    query = (
        f"SELECT start, {by}, trim_scale(sum(usage)) FROM rating_rollups "
        "WHERE grain = 'day' AND start >= %s AND start < %s" + (" AND tenant = %s" if tenant else "")
        + f" GROUP BY start, {by}"
    )  # fmt: skip
    params: tuple[Any, ...] = (
        MONTH_START.replace(tzinfo=None),
        (MONTH_START + timedelta(days=30)).replace(tzinfo=None),
    )
    if tenant:
        params += (tenant,)
    samples = []
    with psycopg.connect(url) as conn:
        for _ in range(repeat):
            began = time.perf_counter()
            conn.execute(query, params).fetchall()
            samples.append(time.perf_counter() - began)
    return samples


def agent_records(count: int) -> list[UsageRecord]:
    """``count`` hourly records of a third cluster (pods × hours of the month)."""
    out = []
    for i in range(count):
        pod, hour = divmod(i, HOURS)
        start = MONTH_START + timedelta(hours=hour)
        out.append(
            UsageRecord.measure(
                cluster="gpu-cloud-3",
                kind="Pod",
                category="compute",
                item="cpu_core_hours",
                name=f"agent-pod-{pod}",
                namespace="tenant-0000-ns0",
                project="p-tenant-0000",
                tenant="tenant-0000",
                period_kind=PeriodKind.hourly,
                period=Period(start, start + timedelta(hours=1)),
                usage=Decimal("0.5"),
                dimensions={"capacity_type": "on-demand"},
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--ingest", type=int, default=20_000)
    parser.add_argument("--restarts", type=int, default=20, help="fresh server processes timed")
    parser.add_argument("--cold-repeat", type=int, default=5, help="requests timed without any cache")
    parser.add_argument("--rebuild", action="store_true", help="load the records again, not the cached ledger")
    parser.add_argument("--build-only", action="store_true", help="build (or check) the cached ledger and stop")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    print(f"{args.pods:,} pods × {HOURS} hours = {args.pods * HOURS:,} records, {args.tenants} tenants", flush=True)
    with loaded_ledger(args.pods, args.tenants, args.rebuild) as url, tempfile.TemporaryDirectory() as tmp:
        if args.build_only:
            return 0
        with Ledger.open(url) as ledger:
            admin, _ = create_token(ledger, "admin")
            tenant, _ = create_token(ledger, "tenant", tenant="tenant-0007")
            agent, _ = create_token(ledger, "agent", cluster="gpu-cloud-3")
        cold_config = Path(tmp, "cold.yaml")
        cold_config.write_text("server:\n  report_cache: 0\n", encoding="utf-8")
        total = ("/api/v1/costs/total", {"start": "2026-11-01", "end": "2026-12-01", "kind": "tenant",
                                         "step": "day", "pageSize": 1000})  # fmt: skip
        detail = ("/api/v1/costs/detail", {"start": "2026-11-01", "end": "2026-12-01", "pageSize": 100})
        report("SQL floor of costs/total", sql_floor(url, None, args.repeat), "bare GROUP BY, psycopg")
        report("SQL floor of costs/detail", sql_floor(url, "tenant-0007", args.repeat), "bare GROUP BY, psycopg")
        print(f"  load average: {load_average()}", flush=True)
        server = ServerProcess(url, ["--prices", "example"])
        server.start(timeout=300)
        try:
            for name, (path, params), token in (("total", total, admin), ("detail", detail, tenant)):
                first = latency(server.url, token, path, params, 1)[0]
                print(f"  costs/{name}, first request ever (nothing stored): {first * 1000:.0f} ms", flush=True)
                samples = latency(server.url, token, path, params, args.repeat)
                report(f"costs/{name} warm", samples, f"load average {load_average()}")
                # The usual state of a live server: a record for the latest hour arrived just
                # before each request (only what depends on the last day is rated again).
                samples = after_writes(server.url, agent, token, path, params, args.repeat)
                report(f"costs/{name} after a write", samples, f"each after one new record of Nov 30; {load_average()}")
            records = agent_records(args.ingest)
            agent_db = str(Path(tmp, "agent.db"))
            with Ledger.open(agent_db) as agent_ledger:
                agent_ledger.write(records)
                began = time.perf_counter()
                summary = deliver_once(
                    agent_ledger,
                    [one_off_config("kubetally", url=server.url)],
                    environ={"KUBETALLY_SERVER_TOKEN": agent},
                )
                elapsed = time.perf_counter() - began
                assert summary.ok and summary.delivered == len(records), summary
            results["ingest via server"] = len(records) / elapsed
            print(f"  ingest through the server: {len(records) / elapsed:,.0f} records/s", flush=True)
            # Both requests once more, so the buckets of the ledger as it now is are stored.
            for _name, (path, params), token in (("total", total, admin), ("detail", detail, tenant)):
                latency(server.url, token, path, params, 1)
        finally:
            server.stop()
        # A fresh server process per sample: its first costs/total, then its first costs/detail.
        restarted: dict[str, list[float]] = {"total": [], "detail": []}
        for _ in range(args.restarts):
            server = ServerProcess(url, ["--prices", "example"])
            server.start(timeout=300)
            try:
                for name, (path, params), token in (("total", total, admin), ("detail", detail, tenant)):
                    restarted[name].extend(latency(server.url, token, path, params, 1))
            finally:
                server.stop()
        for name, samples in restarted.items():
            report(f"costs/{name} after a restart", samples, f"first request of a new process; {load_average()}")
        # No cache at all (``report_cache: 0``): every request rates the whole month.
        server = ServerProcess(url, ["--prices", "example", "-c", str(cold_config)])
        server.start(timeout=300)
        try:
            for name, (path, params), token in (("total", total, admin), ("detail", detail, tenant)):
                latency(server.url, token, path, params, 1)
                samples = latency(server.url, token, path, params, args.cold_repeat)
                report(f"costs/{name} no cache", samples, f"report_cache: 0; {load_average()}")
        finally:
            server.stop()
        direct = [r.model_copy(update={"cluster": "gpu-cloud-4", "id": r.id[::-1]}) for r in agent_records(args.ingest)]
        with Ledger.open(url) as ledger:
            began = time.perf_counter()
            for i in range(0, len(direct), 500):
                ledger.write(direct[i : i + 500])
            elapsed = time.perf_counter() - began
        results["direct ledger writes"] = len(direct) / elapsed
        print(f"  direct Ledger.write (batches of 500): {len(direct) / elapsed:,.0f} records/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
