"""Collect closed periods from the configured sources into the ledger (``kubetally collect``).

:func:`collect_settings` resolves what to collect (flag > file > environment);
:class:`Collection` runs one source at a time, so a caller can show each source's result as
soon as it is in (and, when Prometheus fails, what Kubernetes already wrote);
:func:`collect` runs both for callers that only want the results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from kubetally.app.settings import SettingsResolver
from kubetally.config import Config
from kubetally.errors import ConfigError
from kubetally.ledger.store import Ledger

if TYPE_CHECKING:  # the sources are imported when used: `kubetally collect --help` stays fast
    from kubetally.sources.kubernetes.run import KubernetesCollection
    from kubetally.sources.prometheus.run import ProgressHook, RunSummary


@dataclass
class CollectSettings:
    config: Config
    cluster: str
    db: str | None
    prometheus_url: str | None = None
    kubernetes: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    #: Only these cost-model items (``None``: all).
    items: list[str] | None = None
    #: Keep collecting Prometheus periods as they close.
    follow: bool = False


def collect_settings(
    resolver: SettingsResolver,
    *,
    cluster: str | None = None,
    db: str | None = None,
    prometheus: str | None = None,
    kubernetes: bool = False,
    kubeconfig: str | None = None,
    context: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    items: Sequence[str] | None = None,
    follow: bool = False,
) -> CollectSettings:
    """Resolve and check what to collect; a :class:`ConfigError` with one line otherwise."""
    name = resolver.cluster(cluster)
    if start and end and start >= end:
        raise ConfigError(["--from must be before --to"])
    url = resolver.prometheus_url(prometheus)
    if url:
        from kubetally.sources.prometheus.client import check_url

        check_url(url)  # before the ledger is created: a typo must leave nothing behind
    if not kubernetes and not url:
        raise ConfigError(["nothing to collect from: pass --prometheus URL and/or --kubernetes"])
    if url and not resolver.config.items:
        raise ConfigError(["no cost-model items configured: pass -c with a collection ConfigMap or kubetally.yaml"])
    return CollectSettings(
        config=resolver.config,
        cluster=name,
        db=resolver.db(db),
        prometheus_url=url,
        kubernetes=kubernetes,
        kubeconfig=kubeconfig,
        context=context,
        start=start,
        end=end,
        items=list(items) if items else None,
        follow=follow,
    )


def ledger_tenant_of(ledger: Ledger, cluster: str, config: Config) -> Callable[[str], str | None] | None:
    """Namespace → tenant from the tenants the Kubernetes source recorded in the ledger for
    ``cluster`` (by ``kubetally collect --kubernetes`` or the agent), for Prometheus records.

    ``None`` when the ledger knows no active tenant there: records keep the project/namespace
    default instead of every one losing its tenant.
    """
    from kubetally.sources.kubernetes.registry import load_resolver

    resolver = load_resolver(ledger, cluster, config.kubernetes)
    if not resolver.tenants:
        return None
    return lambda namespace: resolver.tenant_for(namespace) or None


@dataclass
class CollectResult:
    kubernetes: KubernetesCollection | None = None
    prometheus: RunSummary | None = None


@dataclass
class Collection:
    """One collect run into an open ledger; each source is a method returning its result."""

    settings: CollectSettings
    ledger: Ledger
    #: Warnings (objects that cannot be metered exactly, skipped periods …), as they happen.
    warn: Callable[[str], None] | None = None
    #: Progress messages of ``--follow`` (next collection at …).
    notify: Callable[[str], None] | None = None
    progress: ProgressHook | None = None
    result: CollectResult = field(default_factory=CollectResult)

    def collect_kubernetes(self) -> KubernetesCollection:
        from kubetally.sources.kubernetes.run import collect_kubernetes

        s = self.settings
        self.result.kubernetes = collect_kubernetes(
            config=s.config,
            ledger=self.ledger,
            kubeconfig=s.kubeconfig,
            context=s.context,
            cluster=s.cluster,
            start=s.start,
            end=s.end,
            warn=self.warn,
            progress=self.progress,
        )
        return self.result.kubernetes

    def collect_prometheus(self) -> RunSummary:
        """Raises :class:`~kubetally.errors.SourceError` when Prometheus fails; what was written
        before that is in ``result.prometheus`` already."""
        from kubetally.sources.prometheus.run import RunSummary, collect_prometheus

        s = self.settings
        assert s.prometheus_url is not None
        # Read after the Kubernetes step (when it ran), so its discoveries count too.
        tenant_of = ledger_tenant_of(self.ledger, s.cluster, s.config)
        self.result.prometheus = RunSummary()
        return collect_prometheus(
            config=s.config,
            ledger=self.ledger,
            url=s.prometheus_url,
            cluster=s.cluster,
            start=s.start,
            end=s.end,
            items=s.items,
            follow=s.follow,
            tenant_of=tenant_of,
            warn=self.warn,
            notify=self.notify,
            progress=self.progress,
            summary=self.result.prometheus,
        )

    def run(self) -> CollectResult:
        if self.settings.kubernetes:
            self.collect_kubernetes()
        if self.settings.prometheus_url:
            self.collect_prometheus()
        return self.result


@contextmanager
def open_collection(
    settings: CollectSettings,
    *,
    warn: Callable[[str], None] | None = None,
    notify: Callable[[str], None] | None = None,
    progress: ProgressHook | None = None,
) -> Iterator[Collection]:
    """A :class:`Collection` on the settings' ledger, open for the ``with`` block."""
    with Ledger.open(settings.db) as ledger:
        yield Collection(settings, ledger, warn=warn, notify=notify, progress=progress)


def collect(settings: CollectSettings, *, warn: Callable[[str], None] | None = None) -> CollectResult:
    """Open the ledger and collect from every configured source."""
    with open_collection(settings, warn=warn) as run:
        return run.run()
