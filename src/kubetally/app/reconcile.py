"""``kubetally reconcile``: ledger, outbox and each backend's own usage, side by side.

The destinations are chosen exactly as ``kubetally deliver`` chooses them; each adapter is
built, asked, and closed here, so the command line only renders the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from kubetally.app.deliver import deliver_settings, open_ledger
from kubetally.app.settings import SettingsResolver

if TYPE_CHECKING:
    from kubetally.delivery.reconcile import Reconciliation


def reconcile(
    resolver: SettingsResolver,
    since: datetime,
    until: datetime,
    *,
    has_config: bool,
    db: str | None = None,
    kind: str | None = None,
    url: str | None = None,
    name: str | None = None,
    only: Sequence[str] | None = None,
) -> list[Reconciliation]:
    """One reconciliation per chosen destination over ``[since, until)``; a
    :class:`~kubetally.errors.ConfigError` when none is configured."""
    from kubetally.delivery.destinations import build_destination
    from kubetally.delivery.reconcile import reconcile as compare
    from kubetally.errors import ConfigError

    settings = deliver_settings(resolver, has_config=has_config, db=db, to=kind, url=url, name=name, only=only)
    if not settings.destinations:
        raise ConfigError(["no destination: give --type/--url, or --config with a destinations: section"])
    out = []
    with open_ledger(settings) as ledger:
        for cfg in settings.destinations:
            destination = build_destination(cfg, None)
            try:
                out.append(compare(ledger, destination, since, until, config=cfg))
            finally:
                destination.close()
    return out
