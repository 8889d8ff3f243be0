"""Benchmark: month cost reports over a big ledger (SQLite and PostgreSQL).

Builds a ledger of ``--records`` hourly usage records spread over one month (November 2026) —
a GPU cloud of ``--tenants`` tenants, two namespaces each, GPU/CPU/memory on shared nodes,
dedicated nodes, volumes, load balancers and control planes — folds it into the rollups with
the production code (:func:`kubetally.rating.refresh_rollups`), and times the reports::

    python bench/bench_report.py --records 10000000 --backend sqlite
    python bench/bench_report.py --records 10000000 --backend postgresql

Records are written straight into the ``records`` table in big batches (SQLite
``executemany``, PostgreSQL ``COPY``), exactly as the ledger stores them; everything after
that — rollups, pricing, reports — is the code ``kubetally report`` runs. Not part of the test
suite (pytest never collects ``bench/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubetally.ledger.store import Ledger
from kubetally.periods import Period, PeriodKind
from kubetally.rating import example_pricebook, refresh_rollups
from kubetally.rating.rollups import rollup_cursor
from kubetally.record import UsageRecord
from kubetally.reports import build_report

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)
HOURS = 720
DATA = Path(__file__).resolve().parent / ".data"

GPU_SKUS = ["nvidia-h100-sxm-80gb", "nvidia-a100-sxm-80gb", "nvidia-l40s-48gb", "nvidia-l4-24gb"]
CAPACITY = ["on-demand", "on-demand", "on-demand", "spot"]
STORAGE = ["premium-ssd", "standard", "local-nvme"]
#: (category, item, kind, share of resources)
ITEMS = [
    ("compute", "gpu_hours", "Pod", 0.30),
    ("compute", "cpu_core_hours", "Pod", 0.25),
    ("compute", "memory_gib_hours", "Pod", 0.25),
    ("compute", "node_hours", "Node", 0.04),
    ("storage", "storage_gib_hours", "PersistentVolumeClaim", 0.10),
    ("network", "lb_hours", "Service", 0.04),
    ("platform", "control_plane_hours", "VirtualCluster", 0.02),
]
COLUMNS = (
    "id",
    "revision",
    "current",
    "kind",
    "category",
    "item",
    "name",
    "namespace",
    "cluster",
    "project",
    "tenant",
    "labels",
    "date",
    "period",
    "start",
    "end",
    "usage",
    "unit",
    "recorded_at",
)


def resources(count: int, tenants: int, nodes: int) -> list[tuple[Any, ...]]:
    """The metered things: each yields one record per hour of the month."""
    out = []
    weights = [share for *_, share in ITEMS]
    cumulative = [sum(weights[: i + 1]) for i in range(len(weights))]
    for i in range(count):
        pick = (i * 0.6180339887) % 1.0  # golden-ratio spread: deterministic and even
        category, item, kind, _ = next(spec for spec, bound in zip(ITEMS, cumulative, strict=True) if pick < bound)
        tenant = f"tenant-{i % tenants:04d}"
        namespace = f"{tenant}-ns{(i // tenants) % 2}"
        labels: dict[str, str] = {}
        if item in ("gpu_hours", "cpu_core_hours", "memory_gib_hours"):
            node = (i * 7919) % nodes
            labels = {"capacity_type": CAPACITY[node % 4], "billing_mode": "shared", "node": f"node-{node:04d}"}
            if item == "gpu_hours":
                labels["gpu_sku"] = GPU_SKUS[node % len(GPU_SKUS)]
        elif item == "node_hours":
            labels = {"node_sku": "hgx-h100", "billing_mode": "dedicated"}
        elif item == "storage_gib_hours":
            labels = {"storage_class": STORAGE[i % len(STORAGE)]}
        # Usage per hour, exact to the second in hours: GPUs 1–8, cores 0.5–64, GiB 1–512 …
        base = {"gpu_hours": 8, "cpu_core_hours": 64, "memory_gib_hours": 512, "storage_gib_hours": 2048}.get(item, 1)
        usage = f"{(i % base) + 1}.{(i * 37) % 3600:04d}" if base > 1 else "1"
        out.append(
            (
                category,
                item,
                kind,
                f"{kind.lower()}-{i}",
                namespace,
                tenant,
                json.dumps(labels, sort_keys=True, separators=(",", ":")),
                usage,
            )
        )
    return out


def rows(count: int, tenants: int, nodes: int, fmt: Callable[[datetime], Any]) -> Iterator[tuple[Any, ...]]:
    population = resources(max(1, count // HOURS), tenants, nodes)
    now = fmt(datetime(2026, 12, 1, 0, 5, tzinfo=UTC))
    produced = 0
    for hour in range(HOURS):
        start = MONTH_START + timedelta(hours=hour)
        day = fmt(start.replace(hour=0))
        s, e = fmt(start), fmt(start + timedelta(minutes=59, seconds=59))
        for category, item, kind, name, namespace, tenant, labels, usage in population:
            if produced >= count:
                return
            rid = hashlib.blake2b(f"{name}@{hour}".encode(), digest_size=16).hexdigest()
            yield (
                rid,
                0,
                True,
                kind,
                category,
                item,
                name,
                namespace,
                "gpu-cloud-1",
                f"p-{tenant}",
                tenant,
                labels,
                day,
                "hourly",
                s,
                e,
                usage,
                "h",
                now,
            )
            produced += 1


def sqlite_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.000000")  # SQLAlchemy's SQLite DateTime format


def load_sqlite(path: Path, count: int, tenants: int, nodes: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-4000000")
    # Secondary indexes are built once after the load (a sorted build beats 10M random inserts).
    indexes = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL"
    ).fetchall()
    for (sql_text,) in indexes:
        conn.execute(f"DROP INDEX {sql_text.split()[2]}")
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    sql = f"INSERT INTO records ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})"
    batch: list[tuple[Any, ...]] = []
    for row in rows(count, tenants, nodes, sqlite_time):
        batch.append(row)
        if len(batch) == 200_000:
            conn.executemany(sql, batch)
            conn.commit()
            batch.clear()
    conn.executemany(sql, batch)
    conn.commit()
    for (sql_text,) in indexes:
        conn.execute(sql_text)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def load_postgres(url: str, count: int, tenants: int, nodes: int) -> None:
    import psycopg

    naive = lambda moment: moment.replace(tzinfo=None)  # noqa: E731 - UTCDateTime stores naive UTC
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = ", ".join(f'"{c}"' for c in COLUMNS)
        with cur.copy(f"COPY records ({columns}) FROM STDIN") as copy:
            for row in rows(count, tenants, nodes, naive):
                copy.write_row(row)
        cur.execute("ANALYZE records")


def timed(label: str, action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = action()
    elapsed = time.perf_counter() - began
    print(f"  {label}: {elapsed:.2f} s", flush=True)
    return elapsed, value


def measure(ledger: Ledger, repeat: int) -> dict[str, float]:
    book = example_pricebook()
    results = {}
    cases = {
        "month by tenant,item": {"by": "tenant,item", "per": "month"},
        "month by namespace": {"by": "namespace", "per": "month"},
        "month by item": {"by": "item", "per": "month"},
        "month by tenant per day": {"by": "tenant", "per": "day"},
        "month by tenant per week": {"by": "tenant", "per": "week"},
    }
    for name, options in cases.items():
        times = []
        report = None
        for _ in range(repeat):
            began = time.perf_counter()
            report = build_report(ledger, book, None, MONTH_START, MONTH_END, **options)  # type: ignore[arg-type]
            times.append(time.perf_counter() - began)
        assert report is not None and not report.unpriced, report and report.unpriced
        results[name] = statistics.median(times)
        print(
            f"  report {name}: median {results[name] * 1000:.0f} ms (min {min(times) * 1000:.0f} ms, "
            f"{len(report.rows)} rows, total {report.total / 1e6:,.2f} {report.currency})",
            flush=True,
        )
    return results


def incremental(ledger: Ledger) -> None:
    """A late hour arrives plus corrections of earlier ones: how long does the next refresh take?"""
    start = MONTH_START + timedelta(days=29, hours=23)
    fresh = [
        UsageRecord.measure(
            cluster="gpu-cloud-1",
            kind="Pod",
            category="compute",
            item="gpu_hours",
            name=f"late-{i}",
            namespace="tenant-0000-ns0",
            project="p-tenant-0000",
            tenant="tenant-0000",
            period_kind=PeriodKind.hourly,
            period=Period(start, start + timedelta(hours=1)),
            usage="1.5",
            dimensions={"gpu_sku": GPU_SKUS[0], "capacity_type": "on-demand"},
        )
        for i in range(1000)
    ]
    ledger.write(fresh)
    ledger.write([r.model_copy(update={"usage": r.usage + 1}) for r in fresh[:100]])
    timed("refresh after 1000 new + 100 corrected records", lambda: refresh_rollups(ledger))


def run(backend: str, ledger_url: str, load: Callable[[], None], count: int, repeat: int) -> None:
    loaded = (count // HOURS) * HOURS
    print(f"{backend}: {loaded:,} records ({count // HOURS:,} resources × {HOURS} hours)", flush=True)
    with Ledger.open(ledger_url):
        pass  # create the schema
    timed("load records", load)
    with Ledger.open(ledger_url) as ledger:
        timed("fold into rollups (refresh_rollups)", lambda: refresh_rollups(ledger))
        print(f"  rollup cursor at seq {rollup_cursor(ledger):,}")
        with ledger.engine.connect() as conn:
            from sqlalchemy import func, select

            from kubetally.rating.tables import rollups

            grains = dict(conn.execute(select(rollups.c.grain, func.count()).group_by(rollups.c.grain)).all())
        print(f"  rollup rows: {grains}")
        measure(ledger, repeat)
        incremental(ledger)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    DATA.mkdir(exist_ok=True)
    if args.backend in ("sqlite", "both"):
        path = DATA / f"bench-report-{args.records}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        run(
            "sqlite",
            str(path),
            lambda: load_sqlite(path, args.records, args.tenants, args.nodes),
            args.records,
            args.repeat,
        )
        print(f"  database size: {path.stat().st_size / 2**30:.1f} GiB")
    if args.backend in ("postgresql", "both"):
        from kubetally.testing.postgres import postgres_server

        with ExitStack() as stack:
            server = stack.enter_context(postgres_server())
            url = server.create_database("bench_report")
            run(
                "postgresql",
                url,
                lambda: load_postgres(url, args.records, args.tenants, args.nodes),
                args.records,
                args.repeat,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
