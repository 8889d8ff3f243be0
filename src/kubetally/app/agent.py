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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from kubetally.app.deliver import attach_tenant_customers
from kubetally.app.observe import AgentMetrics, AgentState, HealthServer, ledger_reachable, outbox_lag_records
from kubetally.app.settings import SettingsResolver
from kubetally.config import Config
from kubetally.config.agent import KUBETALLY_CONFIG_LABEL
from kubetally.config.destinations import DestinationsConfig
from kubetally.config.loader import COLLECTION_LABEL, DISPLAY_LABEL
from kubetally.delivery.engine import Deliverer, DeliverySummary, build_all, item_specs
from kubetally.errors import ConfigError
from kubetally.ledger.store import Ledger
from kubetally.redact import redact_url
from kubetally.sources.kubernetes.agent import KubernetesAgent
from kubetally.sources.kubernetes.client import METERED, RESOURCES, api_server_time, count_requests
from kubetally.sources.kubernetes.configmaps import ConfigMapSource, Selection, post_warning
from kubetally.sources.kubernetes.election import ElectionSettings, LeaderElector, own_namespace
from kubetally.sources.kubernetes.lease import LeaseHeld, new_holder
from kubetally.sources.kubernetes.session import CloseResult
from kubetally.sources.kubernetes.watch import Watcher

if TYPE_CHECKING:
    from kubetally.config.live import Invalid

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
    #: ``host:port`` of the /healthz, /readyz, /metrics listener (``--listen``; else ``agent.listen``).
    listen: str | None = None
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
    listen: str | None = None,
    leader_elect: bool = False,
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
    if leader_elect:  # --leader-elect: on, with the file's timings (client-go's by default)
        agent = config.settings.agent
        election = agent.leader_election.model_copy(update={"enabled": True})
        config = config.with_settings(agent=agent.model_copy(update={"leader_election": election}))
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
        listen=listen,
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
    """The agent (see module doc). Use as a context manager, or call :meth:`close`.

    With ``agent.leader_election.enabled`` several replicas run and one leads: only the leader
    runs the Kubernetes source and the per-tick steps; a replica that becomes leader builds a
    fresh source, which resumes from the ledger (journal + LIST) exactly as a restarted agent
    does. With ``agent.live_config.enabled`` cost-model ConfigMaps are watched and applied at the
    next tick. With ``listen`` (or ``agent.listen``) /healthz, /readyz and /metrics are served."""

    def __init__(
        self,
        settings: AgentSettings,
        ledger: Ledger,
        api_client: Any,
        *,
        clock: Callable[[], datetime] | None = None,
        listen: str | None = None,
    ):
        self.settings = settings
        self.ledger = ledger
        self.api = api_client
        if clock is None and settings.clock == "apiserver":
            clock = ApiServerClock(api_client)
        self.clock = clock
        agent_config = settings.config.settings.agent
        self.listen = listen or agent_config.listen
        self.metrics = AgentMetrics()
        count_requests(api_client, lambda verb: self.metrics.api_requests.labels(verb).inc())
        self.stop_event = threading.Event()
        election = agent_config.leader_election
        self.identity = new_holder()
        self.election: ElectionSettings | None = None
        if election.enabled:
            self.election = ElectionSettings(
                lease_name=election.lease_name,
                namespace=election.namespace or own_namespace(dict(settings.environ) or None),
                identity=self.identity,
                lease_duration=election.lease_duration.total_seconds(),
                renew_deadline=election.renew_deadline.total_seconds(),
                retry_period=election.retry_period.total_seconds(),
            )
        self.elector: LeaderElector | None = None
        self.kubernetes: KubernetesAgent = self._new_agent()
        self.deliverer: Deliverer | None = None
        self.last_delivery: DeliverySummary | None = None
        self.records_written = 0
        self.steps: list[Step] = self._steps()
        # Live configuration (ConfigMaps by label).
        self.base_config = settings.config
        self.live: ConfigMapSource | None = None
        self.live_used: dict[tuple[str, str], dict[str, Any]] = {}
        self.reported_invalid: set[tuple[str, str, str]] = set()
        #: Bad versions that got their Event (posted by whoever leads, once: a standby at start
        #: leaves it to the leader it becomes or to the current one).
        self.evented_invalid: set[tuple[str, str, str]] = set()
        self.live_invalid: list[Invalid] = []
        self.live_dirty = False
        live = agent_config.live_config
        if live.enabled:
            self.live = ConfigMapSource(
                api_client,
                [
                    Selection(COLLECTION_LABEL, live.collection_namespace),
                    Selection(DISPLAY_LABEL, live.display_namespace),
                    Selection(KUBETALLY_CONFIG_LABEL, live.namespace or own_namespace(dict(settings.environ) or None)),
                ],
            )
        self.health: HealthServer | None = None
        self.metrics.state = AgentState(
            leader=self.leading,
            ready=self._not_ready,
            periods_behind=self._periods_behind,
            records_written=lambda: {"kubernetes": self.records_written},
            watch_restarts=lambda: dict(self.kubernetes.watch_restarts),
            relists=lambda: dict(self.kubernetes.relists),
            outbox_lag=lambda: outbox_lag_records(self.ledger),
            watched_rv=self._watched_rv,
        )

    def _new_agent(self, yield_from: set[str] | None = None) -> KubernetesAgent:
        agent = KubernetesAgent(
            config=self.settings.config,
            ledger=self.ledger,
            cluster=self.settings.cluster,
            api_client=self.api,
            clock=self.clock,
            holder=self.identity,
            # Without election the runner stops with its source; with it, a source is dropped
            # on losing the Lease while the runner goes on as a standby.
            stop_event=None if self.election is not None else self.stop_event,
        )
        agent.lease.yield_from = yield_from or set()
        return agent

    # -- state for /readyz and /metrics ----------------------------------------------------

    def leading(self) -> bool:
        if self.election is None:
            return self.kubernetes.started
        return self.elector is not None and self.elector.leading

    def _not_ready(self) -> str | None:
        reason = ledger_reachable(self.ledger)
        if reason is not None:
            return reason
        if self.live is not None and not self.live.ready:
            return "configuration ConfigMaps not listed yet"
        if self.election is not None and not self.leading():
            return None  # a standby that can reach the ledger is ready to take over
        if not self.kubernetes.watching:
            return "watches not synced"
        return None

    def _watched_rv(self) -> int | None:
        agent = self.kubernetes
        if not agent.started:
            return None
        versions = [agent.processed_rv.get(name) for name in METERED]
        if not all(v is not None and str(v).isdigit() for v in versions):
            return None
        return min(int(str(v)) for v in versions)

    def _periods_behind(self) -> dict[str, int]:
        agent = self.kubernetes
        result = agent.last_result
        if not agent.started or result is None or result.until is None:
            return {"kubernetes": 0}
        session = agent.session
        settled = agent.now() - session.settle
        window = session.config.window.total_seconds()
        return {"kubernetes": max(0, int((settled - result.until).total_seconds() // window))}

    # -- the steps -------------------------------------------------------------------------

    def _steps(self) -> list[Step]:
        """The per-tick steps after Kubernetes metering, each only when configured."""
        steps: list[Step] = []
        config, url = self.settings.config, self.settings.prometheus_url
        if url and not config.items and not config.settings.agent.live_config.enabled:
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
        if not self.settings.config.items:
            return
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
            attach_tenant_customers(self.ledger, built)
            self.deliverer = Deliverer(
                self.ledger, built, configs, items=item_specs(self.settings.config), stop=self.stop_event
            )
        self.last_delivery = self.deliverer.run_once()

    # -- live configuration ----------------------------------------------------------------

    def reload_config(self, timeout: float = 0.0) -> bool:
        """Apply ConfigMap changes that arrived (True when the config changed). An invalid
        ConfigMap is logged, gets a Warning Event and counts in ``kubetally_config_invalid``;
        its last good version (or nothing) is used instead."""
        from kubetally.config.live import assemble

        if self.live is None:
            return False
        self.live_dirty = self.live.poll(timeout) or self.live_dirty
        if not self.live_dirty or not self.live.ready:
            return False  # nothing new, or not every selection listed yet (never half a model)
        self.live_dirty = False
        base = self.base_config
        try:
            assembled = assemble(base.sources, self.live.current(), self.live_used)
        except ConfigError as exc:  # the files themselves: they were valid at start
            log.error("live configuration not applied: %s", exc)
            return False
        for bad in assembled.invalid:
            namespace, name = bad.key
            seen = (namespace, name, bad.resource_version)
            if seen in self.reported_invalid:
                continue
            self.reported_invalid.add(seen)
            problems = "; ".join(bad.problems)
            log.error(
                "ConfigMap %s/%s is invalid and ignored (the last good configuration keeps running): %s",
                namespace,
                name,
                problems,
                extra={"cluster": self.settings.cluster},
            )
            self.metrics.config_invalid.labels(f"{namespace}/{name}").inc()
        self.live_invalid = assembled.invalid
        self.post_invalid_events()
        self.live_used = assembled.used
        live = assembled.config
        config = replace(
            base,
            items=live.items,
            display=live.display,
            origins=live.origins,
            warnings=live.warnings,
            settings=base.settings.model_copy(update={"pricing": live.settings.pricing}),
        )
        if (config.items, config.display, config.settings.pricing) == (
            self.settings.config.items,
            self.settings.config.display,
            self.settings.config.settings.pricing,
        ):
            return False
        self.settings.config = config
        self.metrics.config_reloads.inc()
        if self.deliverer is not None:  # its billing items come from the config
            self.deliverer.close()
            self.deliverer = None
        log.info(
            "configuration reloaded from %d ConfigMap(s): %d item(s), price book %s",
            len(assembled.used),
            len(config.items),
            "set" if config.settings.pricing is not None else "none",
        )
        return True

    def post_invalid_events(self) -> None:
        """A Warning Event on each invalid ConfigMap version, from the leader only (one Event per
        bad version, not one per replica). Called again once leading: what a standby saw at start
        still gets its Event."""
        if self.election is not None and not self.leading():
            return
        for bad in self.live_invalid:
            seen = (*bad.key, bad.resource_version)
            if seen in self.evented_invalid:
                continue
            self.evented_invalid.add(seen)  # posted or not (post_warning logs a failure): once
            post_warning(self.api, bad.configmap, "InvalidConfig", f"ignored by kubetally: {'; '.join(bad.problems)}")

    # -- the loop --------------------------------------------------------------------------

    def tick(self) -> CloseResult:
        """Apply config changes, write settled periods, then run the other steps (a failing
        step is logged)."""
        self.reload_config()
        self.post_invalid_events()
        result = self.kubernetes.tick()
        self.records_written += result.written.inserted + result.written.revised
        now = self.kubernetes.now()
        for step in self.steps:
            try:
                step.run(now)
            except Exception as exc:  # a backend failing must not stop metering
                log.error("step %s failed: %s", step.name, exc)
        return result

    def start_services(self) -> None:
        """The health listener and the ConfigMap watch (before any metering: probes answer
        while the first LIST runs; the first period uses the ConfigMaps)."""
        if self.listen and self.health is None:
            self.health = HealthServer(self.listen, self.metrics).start()
        if self.live is not None and not self.live.watchers[0].is_alive():
            self.live.start()
            deadline = time.monotonic() + 30
            while not self.live.ready and time.monotonic() < deadline and not self.stop_event.is_set():
                self.reload_config(timeout=0.2)
            if not self.live.ready:
                log.warning("configuration ConfigMaps not listed yet: starting with the files' configuration")

    def stop_services(self) -> None:
        if self.live is not None:
            self.live.stop()
        if self.health is not None:
            self.health.close()
            self.health = None

    def run(self, *, until: datetime | None = None, once: bool = False) -> CloseResult | None:
        """Start, then tick every ``tick_interval`` and re-discover tenants every
        ``reconcile_interval`` until stopped. ``once``: one tick, then stop. ``until``: stop
        after the first tick at or after that (clock) time. Returns the last tick's result."""
        self.start_services()
        try:
            if self.election is None:
                return self._run_single(until=until, once=once)
            return self._run_elected(until=until, once=once)
        finally:
            self.stop_services()

    def _run_single(self, *, until: datetime | None, once: bool) -> CloseResult | None:
        agent = self.kubernetes
        if not agent.started:
            agent.start()
        try:
            if once:
                return self.tick()
            schedule = _Schedule(agent)
            last: CloseResult | None = None
            while not self.stop_event.is_set():
                outcome = self._step(schedule, until)
                if outcome is _DONE:
                    break
                if isinstance(outcome, CloseResult):
                    last = outcome
            return last
        finally:
            agent.stop()

    def _run_elected(self, *, until: datetime | None, once: bool) -> CloseResult | None:
        assert self.election is not None
        elector = self.elector = LeaderElector(self.api, self.election)
        elector.start()
        last: CloseResult | None = None
        agent: KubernetesAgent | None = None
        term = 0
        schedule: _Schedule | None = None
        graceful = True
        try:
            while not self.stop_event.is_set():
                if agent is not None and (not elector.leading or elector.term != term):
                    log.warning("no longer leader: leading work stops (the new leader resumes from the ledger)")
                    agent.abandon()
                    agent = schedule = None
                if not elector.leading:
                    if self.live is not None:
                        self.reload_config()
                    elector.changed.wait(0.5)
                    elector.changed.clear()
                    continue
                if agent is None:
                    agent = self.kubernetes = self._new_agent({elector.previous_holder} - {""})
                    term = elector.term
                    self.metrics.leader_transitions.inc()
                    try:
                        agent.start()
                    except LeaseHeld:
                        agent = schedule = None
                        continue
                    if once:
                        last = self.tick()
                        break
                    schedule = _Schedule(agent)
                assert schedule is not None
                try:
                    outcome = self._step(schedule, until)
                except LeaseHeld as exc:
                    log.error("%s; leading work stops", exc)
                    agent.abandon()
                    agent = schedule = None
                    self.stop_event.wait(self.election.retry_period)
                    continue
                if outcome is _DONE:
                    break
                if isinstance(outcome, CloseResult):
                    last = outcome
        except BaseException:
            graceful = False
            raise
        finally:
            if agent is not None:
                if graceful and elector.leading:
                    log.info("stopping: flushing what was observed, then handing back the Lease")
                    agent.stop()  # flush what was observed, give the journal lease back
                else:
                    agent.abandon()
            elector.stop()
            elector.release()
        return last

    def _step(self, schedule: _Schedule, until: datetime | None) -> CloseResult | object | None:
        """One pass of the loop: apply watch events, re-discover, tick when due."""
        agent = schedule.agent
        outcome: CloseResult | object | None = None
        try:
            agent.pump(timeout=min(0.5, max(schedule.next_tick - time.monotonic(), 0)))
            if time.monotonic() >= schedule.next_reconcile:
                agent.reconcile()
                schedule.next_reconcile = time.monotonic() + schedule.reconcile_every
            if time.monotonic() >= schedule.next_tick:
                outcome = self.tick()
                schedule.next_tick = time.monotonic() + schedule.tick_every
                if until is not None and agent.now() >= until:
                    return _DONE
            schedule.failures = 0
        except LeaseHeld:
            raise  # another writer owns the journal now: continuing would double count
        except Exception as exc:  # the ledger or the API is down: keep state, retry later
            schedule.failures += 1
            pause = min(2**schedule.failures, 60)
            log.error("agent loop: %s; retrying in %ds (observations are kept and written later)", exc, pause)
            self.stop_event.wait(pause)
        self._restart_dead_watchers()
        return outcome

    def _restart_dead_watchers(self) -> None:
        agent = self.kubernetes
        for name, watcher in list(agent.watchers.items()):
            if not watcher.is_alive() and not self.stop_event.is_set() and not agent.stop_event.is_set():
                log.error("watcher %s died; restarting it", name)
                agent.watch_restarts[name] = agent.watch_restarts.get(name, 0) + 1
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
        self.kubernetes.stop_event.set()

    def close(self) -> None:
        """Close the Deliverer's adapters (the Kubernetes source stops with :meth:`run`)."""
        if self.deliverer is not None:
            self.deliverer.close()
            self.deliverer = None

    def __enter__(self) -> AgentRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DONE = object()


class _Schedule:
    """When the loop next ticks and re-discovers tenants (monotonic seconds)."""

    def __init__(self, agent: KubernetesAgent):
        self.agent = agent
        self.tick_every = agent.settings.tick_interval.total_seconds()
        self.reconcile_every = agent.settings.reconcile_interval.total_seconds()
        self.next_tick = time.monotonic() + self.tick_every
        self.next_reconcile = time.monotonic() + self.reconcile_every
        self.failures = 0


def install_signal_handlers(runner: AgentRunner) -> None:
    """SIGTERM/SIGINT stop the loop cleanly (only possible from the main thread)."""
    import signal

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop())


def run_agent(settings: AgentSettings, *, until: datetime | None = None, once: bool = False) -> CloseResult | None:
    """``kubetally agent``: open the ledger and the cluster, run until stopped (or ``until``, or
    one tick with ``once``), close everything; returns the last tick's result."""
    from kubetally import logs
    from kubetally.sources.kubernetes.client import make_api_client

    logs.context["cluster"] = settings.cluster
    api = make_api_client(settings.kubeconfig, settings.context)
    with Ledger.open(settings.db) as ledger, AgentRunner(settings, ledger, api, listen=settings.listen) as runner:
        install_signal_handlers(runner)
        return runner.run(until=until, once=once)
