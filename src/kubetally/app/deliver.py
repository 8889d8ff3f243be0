"""Deliver ledger records to billing backends; list and re-queue dead letters (``kubetally deliver``).

Destinations come from a one-off ``--to`` (no config file), else from ``destinations:`` of the
configuration, else from vBilling's ``LAGO_API_KEY``/``LAGO_API_URL`` variables
(:meth:`kubetally.app.settings.SettingsResolver.destinations`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kubetally.app.settings import SettingsResolver
from kubetally.config import Config
from kubetally.config.destinations import DestinationBase, one_off_config
from kubetally.delivery.engine import Deliverer, DeliverySummary, build_all, item_specs
from kubetally.delivery.outbox import DeadLetterRow, Outbox, all_destinations
from kubetally.errors import ConfigError
from kubetally.ledger.store import Ledger


@dataclass
class DeliverSettings:
    #: The chosen destinations (empty: none configured).
    destinations: list[DestinationBase]
    db: str | None
    #: The loaded configuration, when files were given (its items name the backend's metrics).
    config: Config | None = None


def deliver_settings(
    resolver: SettingsResolver,
    *,
    has_config: bool,
    db: str | None = None,
    to: str | None = None,
    url: str | None = None,
    path: str | None = None,
    name: str | None = None,
    only: Sequence[str] | None = None,
    batch: int | None = None,
) -> DeliverSettings:
    """Which destinations to use; a :class:`ConfigError` (one line) for inconsistent flags."""
    config = resolver.config if has_config else None
    if to:
        chosen = [one_off_config(to, url=url, path=path, name=name)]
    else:
        if url or path:
            raise ConfigError(["--url/--path need --to TYPE"])
        from_config = resolver.destinations()
        chosen = from_config.enabled() if from_config is not None else []
        if only:
            missing = sorted(set(only) - {d.name for d in chosen})
            if missing:
                raise ConfigError([f"--destination: not configured: {', '.join(missing)}"])
            chosen = [d for d in chosen if d.name in only]
    if batch:
        chosen = [d.model_copy(update={"batch_size": batch}) for d in chosen]
    return DeliverSettings(destinations=chosen, db=resolver.db(db), config=config)


@contextmanager
def open_ledger(settings: DeliverSettings) -> Iterator[Ledger]:
    with Ledger.open(settings.db, migrate=False) as ledger:
        yield ledger


def destination_names(ledger: Ledger, settings: DeliverSettings) -> list[str]:
    """The chosen destinations, or every outbox the ledger has when none is configured."""
    return [d.name for d in settings.destinations] or [c.destination for c in all_destinations(ledger)]


def dead_letters(ledger: Ledger, names: Sequence[str]) -> list[DeadLetterRow]:
    """Every dead letter of these destinations: what, for whom, and why."""
    return [row for name in names for row in Outbox(ledger, name).dead_letters()]


@dataclass
class OutboxStatus:
    destination: str
    cursor: int
    delivered: int
    duplicates: int
    dead: int
    pending: int


def outbox_status(ledger: Ledger, names: Sequence[str]) -> list[OutboxStatus]:
    return [
        OutboxStatus(
            state.destination,
            state.cursor,
            state.delivered,
            state.duplicates,
            state.dead,
            Outbox(ledger, state.destination).pending(),
        )
        for state in all_destinations(ledger)
        if state.destination in names
    ]


def requeue(ledger: Ledger, names: Sequence[str], which: Sequence[str]) -> dict[str, int]:
    """Re-queue dead letters (``all`` or event ids); destination → how many."""
    ids = None if "all" in which else list(which)
    return {name: Outbox(ledger, name).requeue(ids) for name in names}


def attach_tenant_customers(ledger: Ledger, built: Sequence[object]) -> None:
    """Let each adapter map a tenant to the customer its Kubernetes object names
    (``kubernetes.tenancy.customer_key``, kept in the source's tenant registry)."""
    from kubetally.sources.kubernetes.registry import tenant_customers

    lookup = tenant_customers(ledger)
    for adapter in built:
        if hasattr(adapter, "tenant_customers"):
            adapter.tenant_customers = lookup


@dataclass
class Delivery:
    """One Deliverer over the chosen destinations, for one run or a ``--follow`` loop."""

    settings: DeliverSettings
    ledger: Ledger
    stop: threading.Event = field(default_factory=threading.Event)
    #: Give up on a backend after failing this long without progress (``None``: never).
    max_wait: timedelta | None = timedelta(minutes=5)

    def __post_init__(self) -> None:
        built, configs, _ = build_all(self.settings.destinations)
        attach_tenant_customers(self.ledger, built)
        self.deliverer = Deliverer(
            self.ledger,
            built,
            configs,
            items=item_specs(self.settings.config),
            stop=self.stop,
            max_wait=self.max_wait,
        )

    def run_once(self) -> DeliverySummary:
        return self.deliverer.run_once()

    def run_forever(
        self, interval: timedelta, on_summary: Callable[[DeliverySummary], None] | None = None
    ) -> DeliverySummary:
        return self.deliverer.run_forever(interval if interval > timedelta(0) else timedelta(seconds=1), on_summary)

    def close(self) -> None:
        self.deliverer.close()

    def __enter__(self) -> Delivery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def status_rows(ledger: Ledger, names: list[str]) -> list[dict[str, Any]]:
    """Per destination: cursor, counts, dead letters, pending rows and lag (for --status)."""
    from datetime import UTC, datetime

    from kubetally.delivery.outbox import Outbox

    now = datetime.now(UTC)
    return [Outbox(ledger, name).status(now) for name in names]
