"""``/metrics``: request counts and latencies (this process), plus ingest and outbox state read
from the ledger at scrape time, so every replica reports the same cluster and outbox figures."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import select

from kubetally.delivery.outbox import outbox_lag
from kubetally.ledger.store import Ledger
from kubetally.server.tables import clusters

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LedgerCollector(Collector):
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        ingested = CounterMetricFamily(
            "kubetally_server_ingested_records", "Record revisions applied by ingest, per cluster", labels=["cluster"]
        )
        last = GaugeMetricFamily(
            "kubetally_server_last_ingest_timestamp_seconds",
            "When a batch from the cluster was last applied (Unix time)",
            labels=["cluster"],
        )
        with self.ledger.engine.connect() as conn:
            for row in conn.execute(select(clusters).order_by(clusters.c.cluster)):
                ingested.add_metric([row.cluster], float(row.records))
                last.add_metric([row.cluster], row.last_ingest_at.timestamp())
        lag_records = GaugeMetricFamily(
            "kubetally_outbox_lag_records", "Ledger rows after the destination's cursor", labels=["destination"]
        )
        lag_seconds = GaugeMetricFamily(
            "kubetally_outbox_lag_seconds", "Age of the oldest row after the cursor", labels=["destination"]
        )
        dead = GaugeMetricFamily(
            "kubetally_outbox_dead_letters", "Dead letters of the destination", labels=["destination"]
        )
        now = datetime.now(UTC)
        for lag in outbox_lag(self.ledger, age=True):
            lag_records.add_metric([lag.destination], float(lag.records))
            lag_seconds.add_metric([lag.destination], lag.seconds(now))
            dead.add_metric([lag.destination], float(lag.dead))
        yield from (ingested, last, lag_records, lag_seconds, dead)


class ServerMetrics:
    """One registry per app (tests run several apps in one process)."""

    def __init__(self, ledger: Ledger):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kubetally_server_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubetally_server_request_duration_seconds",
            "HTTP request latency by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(LedgerCollector(ledger))
