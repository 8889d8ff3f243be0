"""``kubetally agent``: the long-running agent — Kubernetes metering, Prometheus, delivery.

Each tick the agent writes the Kubernetes periods that have settled, then runs the other steps
it has configuration for: Prometheus collection (a URL and cost-model items) and delivery
(destinations in kubetally.yaml, or vBilling's Lago variables). Steps are imported lazily, so an
agent built without a part simply logs that the step is skipped.

vBilling's environment is accepted unchanged (see :func:`vbilling_environment`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from kubetally.cli.collect import resolve_cluster
from kubetally.cli.common import ConfigOption, DbOption, console, console_err, fail, parse_time_option
from kubetally.config import Config, discover_config_files, load_config
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_duration
from kubetally.redact import redact_url
from kubetally.sources.kubernetes.config import KubernetesConfig

log = logging.getLogger("kubetally.agent")

#: vBilling's variables the agent understands; the Lago ones are read by the delivery part.
VBILLING_VARIABLES = (
    "ADAPTER",
    "LAGO_API_URL",
    "LAGO_API_KEY",
    "COLLECTION_INTERVAL",
    "RECONCILE_INTERVAL",
    "DEFAULT_PLAN_CODE",
    "BILLING_CURRENCY",
    "PROMETHEUS_URL",
    "SPOT_DISCOUNT_PERCENT",
)


@dataclass
class AgentEnvironment:
    """What vBilling's environment variables mean for this agent."""

    kubernetes: KubernetesConfig
    prometheus_url: str | None = None
    notes: list[str] = field(default_factory=list)


def vbilling_environment(environ: Mapping[str, str], settings: KubernetesConfig) -> AgentEnvironment:
    """Apply vBilling's variables: ``COLLECTION_INTERVAL`` → tick interval, ``RECONCILE_INTERVAL``
    → tenant discovery interval, ``PROMETHEUS_URL`` → Prometheus step. ``SPOT_DISCOUNT_PERCENT``
    is accepted and ignored: spot is a price dimension (``capacity_type``), never a discount on
    usage. ``ADAPTER``/``LAGO_*``/``DEFAULT_PLAN_CODE``/``BILLING_CURRENCY`` configure delivery.
    Raises ValueError naming the variable when a value cannot be parsed."""
    updates: dict[str, Any] = {}
    notes: list[str] = []
    for variable, key in (("COLLECTION_INTERVAL", "tick_interval"), ("RECONCILE_INTERVAL", "reconcile_interval")):
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise ValueError(f"{variable}={raw!r}: {exc}") from None
        if value.total_seconds() < 1:
            raise ValueError(f"{variable}={raw!r}: must be at least 1s")
        updates[key] = value
        notes.append(f"{variable}={raw}: {key.replace('_', ' ')} {raw}")
    if environ.get("SPOT_DISCOUNT_PERCENT", "").strip():
        notes.append(
            f"SPOT_DISCOUNT_PERCENT={environ['SPOT_DISCOUNT_PERCENT']} is ignored: spot usage is recorded "
            "with capacity_type=spot and priced by the price book, never discounted in quantity"
        )
    adapter = environ.get("ADAPTER", "").strip().lower()
    if adapter and adapter != "lago":
        notes.append(
            f"ADAPTER={adapter}: only the Lago destination is configured from the environment; configure "
            f"{adapter} under destinations: in kubetally.yaml"
        )
    merged = settings.model_copy(update=updates) if updates else settings
    url = environ.get("PROMETHEUS_URL", "").strip() or None
    return AgentEnvironment(merged, url, notes)


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
        from kubetally.sources.kubernetes.client import api_server_time

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


def build_steps(
    *,
    config: Config,
    ledger: Ledger,
    cluster: str,
    prometheus_url: str | None,
    tenant_of: Callable[[str], str | None],
    clock: Callable[[], datetime],
    stop: threading.Event,
    environ: Mapping[str, str],
) -> list[Any]:
    """The per-tick steps after Kubernetes metering, each only when configured and built."""
    from kubetally.sources.kubernetes.agent import Step

    steps: list[Step] = []
    if prometheus_url and not config.items:
        log.info(
            "Prometheus %s configured but no cost-model items: Prometheus collection skipped",
            redact_url(prometheus_url),
        )
    elif prometheus_url:
        try:
            from kubetally.sources.prometheus.run import collect_prometheus
        except ImportError as exc:
            log.info("Prometheus collection not available in this build (%s): skipped", exc)
        else:

            def prometheus_step(now: datetime) -> None:
                collect_prometheus(
                    config=config,
                    ledger=ledger,
                    url=prometheus_url,
                    cluster=cluster,
                    console=console_err,
                    tenant_of=tenant_of,
                    clock=clock,
                )

            steps.append(Step("prometheus", prometheus_step))
    try:
        from kubetally.delivery.config import DestinationsConfig, destinations_from_env
        from kubetally.delivery.engine import deliver_once, item_specs
    except ImportError as exc:
        log.info("delivery not available in this build (%s): skipped", exc)
        return steps
    section = config.section("destinations")
    destinations = section if isinstance(section, DestinationsConfig) else destinations_from_env(dict(environ))
    if destinations is not None and destinations.enabled():
        specs = item_specs(config)

        def delivery_step(now: datetime) -> None:
            deliver_once(ledger, destinations, items=specs, stop=stop, environ=dict(environ))

        steps.append(Step("delivery", delivery_step))
    else:
        log.info("no destinations configured (kubetally.yaml destinations: or LAGO_API_KEY): delivery skipped")
    return steps


def _setup_logging(level: str) -> None:
    from rich.logging import RichHandler

    from kubetally import logs

    if logs.state["format"] == "json" or not console_err.is_terminal:
        # Log pipelines and files get JSON lines or plain unwrapped lines, never a padded table.
        logs.setup(level, logs.state["format"])
        return

    logging.basicConfig(
        level=level.upper(),
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console_err, show_path=False, rich_tracebacks=False)],
    )
    # Library chatter (every HTTP request, every migration check) drowns what the agent says.
    for noisy in ("alembic", "httpx", "httpcore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def agent(
        config_files: ConfigOption = None,
        db: DbOption = None,
        kubeconfig: Annotated[
            str | None, typer.Option("--kubeconfig", help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")
        ] = None,
        context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")] = None,
        cluster: Annotated[str | None, typer.Option("--cluster", help="Name of the cluster being metered.")] = None,
        prometheus: Annotated[
            str | None, typer.Option("--prometheus", help="Prometheus base URL (default: $PROMETHEUS_URL).")
        ] = None,
        once: Annotated[
            bool, typer.Option("--once", help="Sync, write settled periods, run each step once, exit.")
        ] = False,
        until: Annotated[
            str | None, typer.Option("--until", help="Exit after the first tick at or after this time (RFC 3339).")
        ] = None,
        clock: Annotated[
            str,
            typer.Option(
                "--clock",
                help="Time source: 'wall', or 'apiserver' (its Date header; virtual time "
                "when metering `kubetally sim serve`).",
            ),
        ] = "wall",
        log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    ) -> None:
        """Meter tenants continuously: Kubernetes list+watch, Prometheus collection, delivery.

        Accepts vBilling's environment unchanged: COLLECTION_INTERVAL (tick interval),
        RECONCILE_INTERVAL (tenant discovery), PROMETHEUS_URL, ADAPTER, LAGO_API_URL,
        LAGO_API_KEY, DEFAULT_PLAN_CODE, BILLING_CURRENCY. SPOT_DISCOUNT_PERCENT is accepted and
        ignored: spot is a price dimension (capacity_type), never a discount on usage.
        """
        from kubetally.sources.kubernetes.agent import KubernetesAgent
        from kubetally.sources.kubernetes.client import make_api_client
        from kubetally.sources.kubernetes.run import kubernetes_config

        _setup_logging(log_level)
        if clock not in ("wall", "apiserver"):
            fail(f"--clock must be wall or apiserver, not {clock!r}")
        stop_at = parse_time_option(until, "--until")
        config = load_config(discover_config_files(config_files))
        for warning in config.warnings:
            log.warning("%s", warning)
        name = resolve_cluster(cluster, config)
        try:
            env = vbilling_environment(os.environ, kubernetes_config(config))
        except ValueError as exc:
            fail(str(exc))
        if env.prometheus_url and not (prometheus or config.settings.prometheus.url) and not config.items:
            # vBilling's PROMETHEUS_URL alone: meter what vBilling meters with it.
            from kubetally.sources.prometheus.vbilling import VBILLING_ITEMS, vbilling_documents

            config = load_config(config_files or [], extra_documents=vbilling_documents())
            names = ", ".join(name for names in VBILLING_ITEMS.values() for name in names)
            env.notes.append(f"PROMETHEUS_URL without cost-model items: collecting vBilling's Prometheus items {names}")
        for note in env.notes:
            log.info("%s", note)
        config.sections["kubernetes"] = env.kubernetes
        api = make_api_client(kubeconfig, context)
        time_source = ApiServerClock(api) if clock == "apiserver" else None
        prometheus_url = prometheus or config.settings.prometheus.url or env.prometheus_url
        with Ledger.open(db or config.settings.db) as ledger:
            runner = KubernetesAgent(config=config, ledger=ledger, cluster=name, api_client=api, clock=time_source)
            runner.steps = build_steps(
                config=config,
                ledger=ledger,
                cluster=name,
                prometheus_url=prometheus_url,
                tenant_of=runner.tenant_of,
                clock=runner.now,
                stop=runner.stop_event,
                environ=os.environ,
            )
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, lambda *_: runner.stop_event.set())
            runner.run(until=stop_at, once=once)
            result = runner.last_result
            if once and result is not None:
                console.print(
                    f"kubernetes: {len(result.periods)} period(s) written, {result.written.inserted} new, "
                    f"{result.written.revised} revised record(s)",
                    highlight=False,
                )
