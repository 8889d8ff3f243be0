"""The agent's health and metrics listener: ``/healthz``, ``/readyz`` and ``/metrics``.

Kubernetes probes and Prometheus scrape this; it runs in a daemon thread beside the agent's loop
and reads the runner's state at request time, so nothing is pushed from the loop but counters.

* ``/healthz`` — the process answers (liveness);
* ``/readyz`` — 200 when the ledger answers and, on the leader, every watch has synced; a
  standby is ready when the ledger answers (it must be able to take over). 503 names the reason;
* ``/metrics`` — Prometheus text format (prometheus-client).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from kubetally.delivery.outbox import outbox_lag
from kubetally.ledger.store import Ledger

log = logging.getLogger("kubetally.agent")


def ledger_reachable(ledger: Ledger) -> str | None:
    """None when the ledger answers a query, else why not."""
    try:
        with ledger.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"ledger unreachable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def outbox_lag_records(ledger: Ledger) -> dict[str, int]:
    """Per destination: ledger rows after its delivery cursor (what is still to deliver)."""
    return {lag.destination: lag.records for lag in outbox_lag(ledger)}


@dataclass
class AgentState:
    """What the runner exposes to the listener (callables, read at request time)."""

    leader: Callable[[], bool]
    ready: Callable[[], str | None]
    periods_behind: Callable[[], dict[str, int]]
    records_written: Callable[[], dict[str, int]]
    watch_restarts: Callable[[], dict[str, int]]
    relists: Callable[[], dict[str, int]]
    outbox_lag: Callable[[], dict[str, int]]
    #: The resourceVersion every metered watch has been applied up to (None: not watching).
    watched_rv: Callable[[], int | None] = lambda: None


class AgentMetrics:
    """One registry per runner (tests run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.api_requests = Counter(
            "kubetally_kubernetes_api_requests",
            "Requests sent to the Kubernetes API, by verb",
            ["verb"],
            registry=self.registry,
        )
        self.config_invalid = Counter(
            "kubetally_config_invalid",
            "Invalid ConfigMaps seen (each version once); the last good config kept running",
            ["configmap"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "kubetally_config_reloads", "Live configuration changes applied", registry=self.registry
        )
        self.leader_transitions = Counter(
            "kubetally_agent_leader_transitions", "Times this replica became leader", registry=self.registry
        )
        self.state: AgentState | None = None
        self.registry.register(_StateCollector(self))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, metrics: AgentMetrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        state = self.metrics.state
        if state is None:
            return
        leader = GaugeMetricFamily("kubetally_agent_leader", "1 while this replica leads (watches, writes, delivers)")
        leader.add_metric([], 1.0 if state.leader() else 0.0)
        yield leader
        behind = GaugeMetricFamily(
            "kubetally_agent_periods_behind", "Closed, settled periods not written yet", labels=["source"]
        )
        for source, value in sorted(state.periods_behind().items()):
            behind.add_metric([source], float(value))
        yield behind
        written = CounterMetricFamily(
            "kubetally_agent_records_written", "Records written or revised by this process", labels=["source"]
        )
        for source, value in sorted(state.records_written().items()):
            written.add_metric([source], float(value))
        yield written
        restarts = CounterMetricFamily(
            "kubetally_agent_watch_restarts", "Watches that failed and were restarted", labels=["resource"]
        )
        for resource, value in sorted(state.watch_restarts().items()):
            restarts.add_metric([resource], float(value))
        yield restarts
        relists = CounterMetricFamily(
            "kubetally_agent_watch_relists", "Full re-lists after a watch could not resume", labels=["resource"]
        )
        for resource, value in sorted(state.relists().items()):
            relists.add_metric([resource], float(value))
        yield relists
        rv = state.watched_rv()
        if rv is not None:
            watched = GaugeMetricFamily(
                "kubetally_agent_watch_resource_version",
                "resourceVersion up to which every metered watch has been applied (compare with the cluster's)",
            )
            watched.add_metric([], float(rv))
            yield watched
        lag = GaugeMetricFamily(
            "kubetally_agent_outbox_lag_records", "Ledger rows after the destination's cursor", labels=["destination"]
        )
        try:
            for destination, value in sorted(state.outbox_lag().items()):
                lag.add_metric([destination], float(value))
        except Exception as exc:  # the ledger is down: /readyz says so; the scrape still answers
            log.debug("outbox lag unavailable: %s", exc)
        yield lag


class HealthServer:
    """``host:port`` listener in a daemon thread; ``port`` 0 picks a free one (tests)."""

    def __init__(self, address: str, metrics: AgentMetrics):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--listen must be host:port, not {address!r}")
        self.metrics = metrics
        handler = _handler(metrics)
        self.server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="kubetally-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self.thread.start()
        log.info("health and metrics on port %d (/healthz, /readyz, /metrics)", self.port)
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler(metrics: AgentMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                reason = metrics.state.ready() if metrics.state is not None else "starting"
                if reason is None:
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                else:
                    self._send(503, f"not ready: {reason}\n".encode(), "text/plain; charset=utf-8")
            elif path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the agent's own log

    return Handler
