"""``kubetally collect``: closed periods from the configured sources into the ledger.

This module only parses options and opens things; each source's collection lives in its own
package (``kubetally.sources.prometheus``, ``kubetally.sources.kubernetes``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
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
from kubetally.config import Config, discover_config_files, load_config
from kubetally.ledger.store import Ledger


def resolve_cluster(cluster: str | None, config: Config) -> str:
    name = cluster or config.settings.cluster or os.environ.get("KUBETALLY_CLUSTER")
    if not name:
        fail("no cluster name: pass --cluster, set `cluster:` in kubetally.yaml or KUBETALLY_CLUSTER")
    return name


def ledger_tenant_of(ledger: Ledger, cluster: str, config: Config) -> Callable[[str], str | None] | None:
    """Namespace → tenant from the tenants the Kubernetes source recorded in the ledger for
    ``cluster`` (by ``kubetally collect --kubernetes`` or the agent), for Prometheus records.

    ``None`` when the ledger knows no active tenant there: records keep the project/namespace
    default instead of every one losing its tenant.
    """
    from kubetally.sources.kubernetes.registry import load_resolver
    from kubetally.sources.kubernetes.run import kubernetes_config

    resolver = load_resolver(ledger, cluster, kubernetes_config(config))
    if not resolver.tenants:
        return None
    return lambda namespace: resolver.tenant_for(namespace) or None


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
        config = load_config(discover_config_files(config_files))
        for warning in config.warnings:
            logging.getLogger("kubetally.config").warning("%s", warning)
        name = resolve_cluster(cluster, config)
        since = parse_time_option(start, "--from")
        until = parse_time_option(end, "--to")
        if since and until and since >= until:
            fail("--from must be before --to")
        prometheus_url = prometheus or config.settings.prometheus.url or os.environ.get("PROMETHEUS_URL")
        if not kubernetes and not prometheus_url:
            fail("nothing to collect from: pass --prometheus URL and/or --kubernetes")
        if prometheus_url:
            from kubetally.sources.prometheus.client import check_url

            check_url(prometheus_url)  # before the ledger is created: a typo must leave nothing behind
        with Ledger.open(db or config.settings.db) as ledger:
            if kubernetes:
                from kubetally.sources.kubernetes.run import collect_kubernetes

                collect_kubernetes(
                    config=config,
                    ledger=ledger,
                    kubeconfig=kubeconfig,
                    context=context,
                    cluster=name,
                    start=since,
                    end=until,
                    console=console,
                )
            if prometheus_url:
                if not config.items:
                    fail("no cost-model items configured: pass -c with a collection ConfigMap or kubetally.yaml")
                from kubetally.sources.prometheus.run import collect_prometheus

                # Read after the Kubernetes step (when it ran), so its discoveries count too.
                tenant_of = ledger_tenant_of(ledger, name, config)
                collect_prometheus(
                    config=config,
                    ledger=ledger,
                    url=prometheus_url,
                    cluster=name,
                    start=since,
                    end=until,
                    items=item or None,
                    follow=follow,
                    console=console,
                    tenant_of=tenant_of,
                )
