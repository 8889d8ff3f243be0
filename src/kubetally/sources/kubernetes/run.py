"""``kubetally collect --kubernetes``: closed periods computed from the cluster's current state.

One discovery pass, one LIST per metered resource, then every closed period is written. The state
still shows what metering needs (creation, container start and finish times, Ready transitions),
so finished pods and nodes that joined mid-hour are billed to the second. What the state cannot
show — an object deleted before this run — only the agent's watch sees; ``collect`` shares the
agent's journal, so anything the agent recorded is kept.

"Now" is the apiserver's clock (its ``Date`` header) unless a clock is injected: object
timestamps come from the cluster, so the cluster's clock decides which periods are closed.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubetally.config import Config
from kubetally.config.kubernetes import KubernetesConfig
from kubetally.ledger.store import Ledger
from kubetally.sources.kubernetes.client import (
    METERED,
    RESOURCES,
    TENANCY,
    ListFailed,
    api_server_time,
    list_with_retry,
    make_api_client,
)
from kubetally.sources.kubernetes.lease import Lease, new_holder
from kubetally.sources.kubernetes.session import CloseResult, MeteringSession
from kubetally.sources.kubernetes.tenancy import Discovery, discover
from kubetally.sources.kubernetes.tracker import freeze

log = logging.getLogger("kubetally.kubernetes")

Clock = Callable[[], datetime]


def kubernetes_config(config: Config) -> KubernetesConfig:
    """The validated ``kubernetes:`` section (defaults when absent)."""
    return config.kubernetes


def new_session(
    config: Config, ledger: Ledger, cluster: str, warn: Callable[[str], None] | None = None
) -> MeteringSession:
    settings = kubernetes_config(config)
    collection = config.settings.collection
    settle = settings.settle_delay if settings.settle_delay is not None else collection.settle_delay
    return MeteringSession(
        ledger=ledger,
        cluster=cluster,
        config=settings,
        settle=settle,
        max_backfill=collection.max_backfill,
        project_label=collection.project_label,
        warn=warn,
    )


def discover_tenants(api: Any, session: MeteringSession, at: datetime) -> Discovery:
    """List the tenancy resources and apply the discovery. A failed LIST makes the discovery
    incomplete (nobody is offboarded) but does not stop metering."""
    tenancy = session.config.tenancy
    wanted = [
        name
        for name in TENANCY
        if (name not in ("statefulsets", "deployments") or tenancy.vclusters)
        and (name != "virtualclusterinstances" or tenancy.platform)
    ]
    objects: dict[str, list[dict[str, Any]]] = {}
    failed: set[str] = set()
    for name in wanted:
        try:
            objects[name] = list_with_retry(api, RESOURCES[name], attempts=2, log=session.warn).items
        except ListFailed as exc:
            failed.add(name)
            session.warn(str(exc))
    discovery = discover(objects, session.config, failed=failed, project_label=session.project_label)
    session.apply_discovery(discovery, at, namespaces_listed="namespaces" not in failed)
    return discovery


def now_from(api: Any, clock: Clock | None) -> datetime:
    if clock is not None:
        return clock().astimezone(UTC).replace(microsecond=0)
    server = api_server_time(api)
    return (server or datetime.now(UTC)).replace(microsecond=0)


@dataclass
class KubernetesCollection(CloseResult):
    """What one ``collect --kubernetes`` run did: the periods it closed, and for the summary
    line how many tenants the discovery found and the cluster's "now" it closed up to."""

    tenants: int = 0
    now: datetime | None = None


def collect_kubernetes(
    *,
    config: Config,
    ledger: Ledger,
    kubeconfig: str | None = None,
    context: str | None = None,
    cluster: str,
    start: datetime | None = None,
    end: datetime | None = None,
    api_client: Any = None,
    clock: Clock | None = None,
    warn: Callable[[str], None] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> KubernetesCollection:
    """Meter every closed period in ``[start, end)`` (see module doc). Without ``start``, resume
    from the watermark (bounded by ``collection.max_backfill``); without ``end``, up to the last
    closed period. Raises :class:`~kubetally.errors.SourceError` when a metered resource cannot
    be listed: nothing is written then, and the next run catches up. Warnings (an object that
    cannot be metered exactly, a skipped period) go to ``warn`` (default: the log).

    Periods are metered and committed one at a time (see :meth:`MeteringSession.close_periods`);
    ``progress(done, total, description)`` is called after each with the records so far."""
    api = api_client if api_client is not None else make_api_client(kubeconfig, context)
    warn = warn if warn is not None else log.warning

    session = new_session(config, ledger, cluster, warn)
    lease = Lease(ledger, cluster, new_holder(), session.config.writer_lease)
    lease.acquire()  # an agent metering this cluster into this ledger would be a second writer
    with quiet_gc(), _leased(lease):
        session.begin()
        now = now_from(api, clock)
        discovery = discover_tenants(api, session, now)
        for name in METERED:
            resource = RESOURCES[name]
            listing = list_with_retry(api, resource, log=warn, keep=partial(freeze, resource.kind))
            session.resync(resource.kind, listing.items, now)
            del listing
        # The tracked state is now built and lives until the end: no cycle collection needs to
        # walk it again (see quiet_gc).
        gc.freeze()

        def committed(done: int, total: int, records: int) -> None:
            lease.acquire()  # renewed per committed period: a long backfill keeps its lease
            if progress is not None:
                progress(done, total, f"kubernetes: periods, {records:,} records")

        session.progress = committed
        result = session.close_periods(now, start=start, end=end)
    for reason in result.skipped:
        warn(reason)
    return KubernetesCollection(**vars(result), tenants=len(discovery.ids()), now=now)


@contextmanager
def _leased(lease: Lease) -> Iterator[None]:
    try:
        yield
    finally:
        lease.release()


@contextmanager
def quiet_gc(threshold: int = 100_000) -> Iterator[None]:
    """Fewer cycle collections while a large, long-lived state is built and metered.

    Metering allocates millions of small acyclic objects (slimmed objects, segments, records)
    that reference counting frees; the cycle collector still walks the young ones every 700
    allocations and, as the state grows, the whole heap again and again (about a third of the
    CPU of a 100k-pod collect). A higher first threshold and ``gc.freeze()`` of the built state
    keep it collecting cycles, just not re-walking what cannot be garbage."""
    previous = gc.get_threshold()
    gc.set_threshold(threshold, previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
