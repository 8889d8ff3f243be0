"""Run the agent: Kubernetes metering, Prometheus collection and delivery, one process.

:class:`AgentRunner` owns everything the agent uses for its whole life — the Kubernetes source
(list+watch, the journal, the writer lease), the Prometheus step and ONE
:class:`~kubetally.delivery.engine.Deliverer` — and schedules them: every ``tick_interval``
(vBilling ``COLLECTION_INTERVAL``) it writes the Kubernetes periods that have settled, then runs
the other steps, each isolated so one failing backend never stops metering. The Deliverer is
built on the first delivery step and kept, so backend set-up (plan, metrics, one request per
tenant) happens once per agent, not once per tick; :meth:`AgentRunner.close` closes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kubetally.app.settings import SettingsResolver
from kubetally.config import Config
from kubetally.config.destinations import DestinationsConfig
from kubetally.delivery.engine import Deliverer, DeliverySummary, build_all, item_specs
from kubetally.ledger.store import Ledger
from kubetally.redact import redact_url
from kubetally.sources.kubernetes.agent import KubernetesAgent
from kubetally.sources.kubernetes.client import RESOURCES, api_server_time
from kubetally.sources.kubernetes.lease import LeaseHeld
from kubetally.sources.kubernetes.session import CloseResult
from kubetally.sources.kubernetes.watch import Watcher

log = logging.getLogger("kubetally.agent")

ClockName = Literal["wall", "apiserver"]


@dataclass(frozen=True)
class Step:
    """A per-tick step of the agent (Prometheus collection, delivery …)."""

    name: str
    run: Callable[[datetime], Any]


@dataclass
class AgentSettings:
    """Everything the agent needs, resolved (flag > file > environment)."""

    config: Config
    cluster: str
    db: str | None
    prometheus_url: str | None
    destinations: DestinationsConfig | None
    kubeconfig: str | None = None
    context: str | None = None
    clock: ClockName = "wall"
    environ: Mapping[str, str] = field(default_factory=dict)
    #: What the environment changed or what was ignored, for the log.
    notes: list[str] = field(default_factory=list)


def agent_settings(
    resolver: SettingsResolver,
    *,
    cluster: str | None = None,
    db: str | None = None,
    prometheus: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    clock: str = "wall",
) -> AgentSettings:
    """Resolve the agent's settings. Raises :class:`~kubetally.errors.ConfigError` (one line)
    for a missing cluster name, a bad vBilling variable or an unknown clock."""
    from kubetally.errors import ConfigError

    if clock not in ("wall", "apiserver"):
        raise ConfigError([f"--clock must be wall or apiserver, not {clock!r}"])
    name = resolver.cluster(cluster)
    env = resolver.agent_environment()
    config = resolver.config
    if env.prometheus_url and not (prometheus or config.settings.prometheus.url) and not config.items:
        # vBilling's PROMETHEUS_URL alone: meter what vBilling meters with it.
        from kubetally.config import load_config
        from kubetally.sources.prometheus.vbilling import VBILLING_ITEMS, vbilling_documents

        config = load_config(resolver.files, extra_documents=vbilling_documents())
        names = ", ".join(name for names in VBILLING_ITEMS.values() for name in names)
        env.notes.append(f"PROMETHEUS_URL without cost-model items: collecting vBilling's Prometheus items {names}")
    config = config.with_settings(kubernetes=env.kubernetes)
    return AgentSettings(
        config=config,
        cluster=name,
        db=resolver.db(db),
        prometheus_url=prometheus or config.settings.prometheus.url or env.prometheus_url,
        destinations=resolver.destinations(),
        kubeconfig=kubeconfig,
        context=context,
        clock="apiserver" if clock == "apiserver" else "wall",
        environ=dict(resolver.environ),
        notes=env.notes,
    )


class ApiServerClock:
    """Time as the apiserver says (its ``Date`` header), sampled at most every 0.2 s and
    extrapolated in between at the rate observed between samples.

    Against ``kubetally sim serve --speed N`` this follows the simulator's virtual time (which runs
    N× faster than the wall clock); against a real cluster it is the cluster's clock, which is what
    object timestamps are written with. Without an answer it falls back to the wall clock."""

    REFRESH = 0.2

    def __init__(self, api: Any):
        self.api = api
        self._samples: list[tuple[float, float]] = []  # (monotonic, server epoch seconds)

    def __call__(self) -> datetime:
        mono = time.monotonic()
        if not self._samples or mono - self._samples[-1][0] >= self.REFRESH:
            server = api_server_time(self.api)
            if server is not None:
                self._samples = [*self._samples[-1:], (mono, server.timestamp())]
        if not self._samples:
            return datetime.now(UTC)
        last_mono, last_server = self._samples[-1]
        rate = 1.0
        if len(self._samples) == 2:
            (m0, s0), (m1, s1) = self._samples
            if m1 - m0 >= self.REFRESH and s1 >= s0:
                rate = (s1 - s0) / (m1 - m0)
        return datetime.fromtimestamp(last_server + rate * (mono - last_mono), UTC)


class AgentRunner:
    """The agent (see module doc). Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        settings: AgentSettings,
        ledger: Ledger,
        api_client: Any,
        *,
        clock: Callable[[], datetime] | None = None,
    ):
        self.settings = settings
        self.ledger = ledger
        if clock is None and settings.clock == "apiserver":
            clock = ApiServerClock(api_client)
        self.kubernetes = KubernetesAgent(
            config=settings.config, ledger=ledger, cluster=settings.cluster, api_client=api_client, clock=clock
        )
        self.stop_event = self.kubernetes.stop_event
        self.deliverer: Deliverer | None = None
        self.last_delivery: DeliverySummary | None = None
        self.steps: list[Step] = self._steps()

    # -- the steps -------------------------------------------------------------------------

    def _steps(self) -> list[Step]:
        """The per-tick steps after Kubernetes metering, each only when configured."""
        steps: list[Step] = []
        config, url = self.settings.config, self.settings.prometheus_url
        if url and not config.items:
            log.info("Prometheus %s configured but no cost-model items: Prometheus collection skipped", redact_url(url))
        elif url:
            steps.append(Step("prometheus", self._collect_prometheus))
        if config.settings.budgets.items:
            steps.append(Step("budgets", self._budgets))
        destinations = self.settings.destinations
        if destinations is not None and destinations.enabled():
            steps.append(Step("delivery", self._deliver))
        else:
            log.info("no destinations configured (kubetally.yaml destinations: or LAGO_API_KEY): delivery skipped")
        return steps

    def _collect_prometheus(self, now: datetime) -> None:
        from kubetally.sources.prometheus.run import collect_prometheus

        assert self.settings.prometheus_url is not None
        collect_prometheus(
            config=self.settings.config,
            ledger=self.ledger,
            url=self.settings.prometheus_url,
            cluster=self.settings.cluster,
            tenant_of=self.kubernetes.tenant_of,
            clock=self.kubernetes.now,
        )

    def _budgets(self, now: datetime) -> None:
        """Evaluate budgets with the periods committed so far; new crossings become alerts
        (once, by id) and every pending alert is sent. Without a price book only quantity
        budgets can be evaluated, so money budgets are then skipped with a warning."""
        from kubetally.app.budgets import evaluate_and_notify
        from kubetally.rating.pricebook import PriceBook
        from kubetally.reports.budgets import committed_until, no_prices

        config = self.settings.config
        if config.pricing is None and any(b.money for b in config.settings.budgets.items):
            log.warning("budgets in money need a pricing: section; money budgets skipped")
            budgets = config.settings.budgets.model_copy(
                update={"items": [b for b in config.settings.budgets.items if not b.money]}
            )
            config = config.with_settings(budgets=budgets)
        pricebook = PriceBook(config.pricing) if config.pricing is not None else no_prices()
        as_of = committed_until(self.ledger, now)
        if as_of is None:
            return
        run = evaluate_and_notify(self.ledger, config, pricebook, self.settings.environ, as_of=as_of)
        if run.new_alerts:
            log.info("budgets: %d new alert(s)", run.new_alerts)
        for error in run.sends.errors:
            log.error("budget alert not sent (kept pending): %s", error)

    def _deliver(self, now: datetime) -> None:
        if self.deliverer is None:
            assert self.settings.destinations is not None
            built, configs, _ = build_all(self.settings.destinations, self.settings.environ)
            self.deliverer = Deliverer(
                self.ledger, built, configs, items=item_specs(self.settings.config), stop=self.stop_event
            )
        self.last_delivery = self.deliverer.run_once()

    # -- the loop --------------------------------------------------------------------------

    def tick(self) -> CloseResult:
        """Write settled periods, then run the other steps (a failing step is logged)."""
        result = self.kubernetes.tick()
        now = self.kubernetes.now()
        for step in self.steps:
            try:
                step.run(now)
            except Exception as exc:  # a backend failing must not stop metering
                log.error("step %s failed: %s", step.name, exc)
        return result

    def run(self, *, until: datetime | None = None, once: bool = False) -> CloseResult | None:
        """Start, then tick every ``tick_interval`` and re-discover tenants every
        ``reconcile_interval`` until stopped. ``once``: one tick, then stop. ``until``: stop
        after the first tick at or after that (clock) time. Returns the last tick's result."""
        agent = self.kubernetes
        if not agent.started:
            agent.start()
        last: CloseResult | None = None
        try:
            if once:
                return self.tick()
            tick_every = agent.settings.tick_interval.total_seconds()
            reconcile_every = agent.settings.reconcile_interval.total_seconds()
            next_tick = time.monotonic() + tick_every
            next_reconcile = time.monotonic() + reconcile_every
            failures = 0
            while not self.stop_event.is_set():
                try:
                    agent.pump(timeout=min(0.5, max(next_tick - time.monotonic(), 0)))
                    if time.monotonic() >= next_reconcile:
                        agent.reconcile()
                        next_reconcile = time.monotonic() + reconcile_every
                    if time.monotonic() >= next_tick:
                        last = self.tick()
                        next_tick = time.monotonic() + tick_every
                        if until is not None and agent.now() >= until:
                            break
                    failures = 0
                except LeaseHeld:
                    raise  # another writer owns the journal now: continuing would double count
                except Exception as exc:  # the ledger or the API is down: keep state, retry later
                    failures += 1
                    pause = min(2**failures, 60)
                    log.error("agent loop: %s; retrying in %ds (observations are kept and written later)", exc, pause)
                    self.stop_event.wait(pause)
                self._restart_dead_watchers()
        finally:
            agent.stop()
        return last

    def _restart_dead_watchers(self) -> None:
        agent = self.kubernetes
        for name, watcher in list(agent.watchers.items()):
            if not watcher.is_alive() and not self.stop_event.is_set():
                log.error("watcher %s died; restarting it", name)
                replacement = Watcher(
                    agent.api,
                    RESOURCES[name],
                    agent.queue,
                    timeout_seconds=watcher.timeout_seconds,
                    resource_version=None,
                )
                agent.watchers[name] = replacement
                replacement.start()

    def stop(self) -> None:
        """Ask the loop to stop (signal handlers call this)."""
        self.stop_event.set()

    def close(self) -> None:
        """Close the Deliverer's adapters (the Kubernetes source stops with :meth:`run`)."""
        if self.deliverer is not None:
            self.deliverer.close()
            self.deliverer = None

    def __enter__(self) -> AgentRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def install_signal_handlers(runner: AgentRunner) -> None:
    """SIGTERM/SIGINT stop the loop cleanly (only possible from the main thread)."""
    import signal

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())


def run_agent(settings: AgentSettings, *, until: datetime | None = None, once: bool = False) -> CloseResult | None:
    """``kubetally agent``: open the ledger and the cluster, run until stopped (or ``until``, or
    one tick with ``once``), close everything; returns the last tick's result."""
    from kubetally.sources.kubernetes.client import make_api_client

    api = make_api_client(settings.kubeconfig, settings.context)
    with Ledger.open(settings.db) as ledger, AgentRunner(settings, ledger, api) as runner:
        install_signal_handlers(runner)
        return runner.run(until=until, once=once)
