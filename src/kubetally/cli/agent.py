"""``kubetally agent``: parse options, set up logging, run :class:`kubetally.app.agent.AgentRunner`.

The agent's settings are resolved by :mod:`kubetally.app.settings` (flag > file > environment,
vBilling's variables included); the runner owns the sources and the Deliverer.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from kubetally.cli.common import ConfigOption, DbOption, console, console_err, fail, parse_time_option
from kubetally.errors import ConfigError

log = logging.getLogger("kubetally.agent")


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
        listen: Annotated[
            str | None,
            typer.Option(
                "--listen",
                help="Serve /healthz, /readyz and /metrics on host:port, e.g. 0.0.0.0:9090 "
                "(default: agent.listen in kubetally.yaml; off when neither is set).",
            ),
        ] = None,
        leader_elect: Annotated[
            bool,
            typer.Option(
                "--leader-elect",
                help="Run as one of several replicas: only the holder of the Lease (agent.leader_election "
                "in kubetally.yaml: name, namespace, timings) meters, writes and delivers.",
            ),
        ] = False,
    ) -> None:
        """Meter tenants continuously: Kubernetes list+watch, Prometheus collection, delivery.

        Accepts vBilling's environment unchanged: COLLECTION_INTERVAL (tick interval),
        RECONCILE_INTERVAL (tenant discovery), PROMETHEUS_URL, ADAPTER, LAGO_API_URL,
        LAGO_API_KEY, DEFAULT_PLAN_CODE, BILLING_CURRENCY. SPOT_DISCOUNT_PERCENT is accepted and
        ignored: spot is a price dimension (capacity_type), never a discount on usage.
        """
        from kubetally.app.agent import agent_settings, run_agent
        from kubetally.app.settings import SettingsResolver

        _setup_logging(log_level)
        stop_at = parse_time_option(until, "--until")
        resolver = SettingsResolver.load(config_files)
        for warning in resolver.warnings:
            log.warning("%s", warning)
        try:
            settings = agent_settings(
                resolver,
                cluster=cluster,
                db=db,
                prometheus=prometheus,
                kubeconfig=kubeconfig,
                context=context,
                clock=clock,
                listen=listen,
                leader_elect=leader_elect,
            )
        except ConfigError as exc:
            fail(str(exc))
        for note in settings.notes:
            log.info("%s", note)
        result = run_agent(settings, until=stop_at, once=once)
        if once and result is not None:
            console.print(
                f"kubernetes: {len(result.periods)} period(s) written, {result.written.inserted} new, "
                f"{result.written.revised} revised record(s)",
                highlight=False,
            )
