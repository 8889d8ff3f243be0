"""``kubetally collect``: parse options, run :class:`kubetally.app.collect.Collection`, show results.

Each source's collection lives in its own package (``kubetally.sources.prometheus``,
``kubetally.sources.kubernetes``); what to collect is resolved by :mod:`kubetally.app.settings`.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from kubetally.cli.common import (
    ConfigOption,
    DbOption,
    FromOption,
    ToOption,
    console,
    fail,
    parse_time_option,
)
from kubetally.errors import ConfigError


def _log_warning(message: str) -> None:
    # A diagnostic: to the log (stderr, text or JSON lines), never between the data on stdout.
    logging.getLogger("kubetally.collect").warning("%s", message)


def register(app: typer.Typer) -> None:
    @app.command("collect")
    def collect(
        config_files: ConfigOption = None,
        db: DbOption = None,
        prometheus: Annotated[
            str | None, typer.Option("--prometheus", help="Prometheus base URL (e.g. http://prometheus:9090).")
        ] = None,
        kubernetes: Annotated[
            bool, typer.Option("--kubernetes", help="Meter tenants from the Kubernetes API.")
        ] = False,
        kubeconfig: Annotated[
            str | None, typer.Option("--kubeconfig", help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")
        ] = None,
        context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")] = None,
        cluster: Annotated[str | None, typer.Option("--cluster", help="Name of the cluster being metered.")] = None,
        start: FromOption = None,
        end: ToOption = None,
        item: Annotated[
            list[str] | None, typer.Option("--item", help="Only these cost-model items (repeatable).")
        ] = None,
        follow: Annotated[
            bool, typer.Option("--follow", help="Keep collecting as periods close (Prometheus).")
        ] = False,
    ) -> None:
        """Collect every closed period in [--from, --to) into the ledger.

        Without --from, resume from the ledger's watermark (bounded by collection.max_backfill).
        """
        from kubetally.app.collect import collect_settings, open_collection
        from kubetally.app.settings import SettingsResolver
        from kubetally.cli import render

        resolver = SettingsResolver.load(config_files)
        for warning in resolver.warnings:
            logging.getLogger("kubetally.config").warning("%s", warning)
        since = parse_time_option(start, "--from")
        until = parse_time_option(end, "--to")
        try:
            settings = collect_settings(
                resolver,
                cluster=cluster,
                db=db,
                prometheus=prometheus,
                kubernetes=kubernetes,
                kubeconfig=kubeconfig,
                context=context,
                start=since,
                end=until,
                items=item,
                follow=follow,
            )
        except ConfigError as exc:
            fail(str(exc))
        with (
            render.progress_bar(console) as progress,
            open_collection(settings, warn=_log_warning, notify=render.notifier(console), progress=progress) as run,
        ):
            if settings.kubernetes:
                render.kubernetes_collection(console, run.collect_kubernetes())
            if settings.prometheus_url:
                from kubetally.errors import SourceError

                try:
                    summary = run.collect_prometheus()
                except SourceError:
                    if run.result.prometheus is not None:
                        render.prometheus_summary(console, run.result.prometheus, written_only=True)
                    raise
                render.prometheus_summary(console, summary)
