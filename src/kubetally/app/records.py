"""Ledger records as they are stored (``kubetally records``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from kubetally.app.settings import SettingsResolver
from kubetally.ledger.store import Ledger
from kubetally.record import UsageRecord


def records(
    *,
    db: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    items: Sequence[str] | None = None,
    namespace: str | None = None,
    tenant: str | None = None,
    cluster: str | None = None,
    history: bool = False,
) -> Iterator[UsageRecord]:
    """Records whose period starts in ``[start, end)``, oldest first; ``history`` includes every
    superseded revision. The ledger stays open while the iterator is consumed."""
    with Ledger.open(SettingsResolver().db(db), migrate=False) as ledger:
        yield from ledger.records(
            start=start,
            end=end,
            item=list(items) if items else None,
            namespace=namespace,
            tenant=tenant,
            cluster=cluster,
            history=history,
        )
