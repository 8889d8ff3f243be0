"""The two ways kubetally meters a cluster, driven over one scenario on the virtual clock.

* the agent (watch path): started at the scenario's ``now``, stepped to every event instant and
  every period end (+ settle), ticking as it goes;
* ``collect`` (state path): run as a cron job would run it, once per period at ``period end +
  settle`` (``collect_hourly``), or once at the end (``collect_once``), reading only LISTs.

Both write into their own ledger; :func:`records` gives what was written for a window, keyed so
two ledgers can be compared record by record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from kubetally.config import Config
from kubetally.config.kubernetes import KubernetesConfig
from kubetally.config.loader import CollectionSettings, Settings
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to
from kubetally.sim import Scenario, SimServer
from kubetally.sources.kubernetes.agent import KubernetesAgent
from kubetally.sources.kubernetes.run import collect_kubernetes

CLUSTER = "gpu-east"
HOUR = timedelta(hours=1)
SETTLE = timedelta(minutes=2)


def config(backfill: str = "6h") -> Config:
    collection = CollectionSettings(max_backfill=backfill, settle_delay="2m")
    return Config(settings=Settings(collection=collection, kubernetes=KubernetesConfig()))


@dataclass
class Warnings:
    """Warnings one path printed (collect) or logged (agent)."""

    messages: list[str] = field(default_factory=list)

    def __call__(self, message: str) -> None:
        self.messages.append(" ".join(message.split()))

    def naming(self, *words: str) -> list[str]:
        return [m for m in self.messages if all(w in m for w in words)]


class _Sink(logging.Handler):
    def __init__(self, warnings: Warnings):
        super().__init__(logging.WARNING)
        self.warnings = warnings

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings(record.getMessage())


def _instants(scenario: Scenario, end: datetime) -> list[datetime]:
    """Every event instant and every period end + settle, up to ``end``."""
    moments = {e.at for e in scenario.events if scenario.now < e.at <= end}
    boundary = floor_to(scenario.now, HOUR) + HOUR
    while boundary + SETTLE <= end:
        moments.add(boundary + SETTLE)
        boundary += HOUR
    moments.add(end)
    return sorted(moments)


def run_agent(
    scenario: Scenario, ledger: Ledger, end: datetime, down: tuple[datetime, datetime] | None = None
) -> Warnings:
    """The agent watching from the scenario's start to ``end`` (ticking at every step); with
    ``down``, it is stopped at the first instant and a new one started at the second, so what
    happens in between is seen only through the re-LIST and the journal."""
    warnings = Warnings()
    sink = _Sink(warnings)
    logger = logging.getLogger("kubetally.kubernetes")
    logger.addHandler(sink)

    def started(sim: SimServer) -> KubernetesAgent:
        agent = KubernetesAgent(
            config=config(), ledger=ledger, cluster=CLUSTER, api_client=sim.api_client(), clock=lambda: sim.now
        )
        agent.start()
        return agent

    instants = _instants(scenario, end)
    if down is not None:
        instants = sorted({*(at for at in instants if not down[0] < at < down[1]), *down})
    try:
        with SimServer(scenario) as sim:
            agent = started(sim)
            try:
                for at in instants:
                    sim.advance(at)
                    if down is not None and at == down[1]:
                        agent = started(sim)  # a new agent: journal + re-LIST
                    agent.pump(timeout=10, until_rv=sim.resource_version)
                    assert agent.synced(sim.resource_version), "watches did not deliver in time"
                    agent.tick()
                    if down is not None and at == down[0]:
                        agent.stop()
            finally:
                agent.stop()
    finally:
        logger.removeHandler(sink)
    return warnings


def _collect(sim: SimServer, ledger: Ledger, warnings: Warnings, **kwargs: object) -> None:
    collect_kubernetes(
        config=config(),
        ledger=ledger,
        cluster=CLUSTER,
        api_client=sim.api_client(),
        clock=lambda: sim.now,
        warn=warnings,
        **kwargs,  # type: ignore[arg-type]
    )


def collect_hourly(scenario: Scenario, ledger: Ledger, end: datetime) -> Warnings:
    """``collect`` as a cron job: once per period, at its end + settle, up to ``end``."""
    warnings = Warnings()
    with SimServer(scenario) as sim:
        boundary = floor_to(scenario.now, HOUR) + HOUR
        while boundary + SETTLE <= end:
            sim.advance(boundary + SETTLE)
            _collect(sim, ledger, warnings)
            boundary += HOUR
    return warnings


def collect_once(scenario: Scenario, ledger: Ledger, start: datetime, end: datetime) -> Warnings:
    """One ``collect`` at ``end + settle`` for ``[start, end)``: only the final state is seen."""
    warnings = Warnings()
    with SimServer(scenario) as sim:
        sim.advance(end + SETTLE)
        _collect(sim, ledger, warnings, start=start, end=end)
    return warnings


Key = tuple[str, ...]


def records(ledger: Ledger, start: datetime, end: datetime) -> dict[Key, Decimal]:
    """Every current record of ``[start, end)`` by (period, tenant, item, kind, namespace, name,
    record id); the id is derived from the dimensions, so equal keys are the same record."""
    return {
        (r.start.isoformat(), r.tenant, r.item, r.kind, r.namespace, r.name, r.id): r.usage
        for r in ledger.records(start=start, end=end)
        if r.usage != 0
    }


def names(keys: Iterable[Key]) -> set[str]:
    return {k[5] for k in keys}
