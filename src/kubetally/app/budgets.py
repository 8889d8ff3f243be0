"""``kubetally budgets`` and the agent's budget step: evaluate budgets, record and send alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubetally.app.report import PricingInputs, pricing_inputs
from kubetally.app.settings import SettingsResolver
from kubetally.config import Config
from kubetally.config.loader import discover_config_files
from kubetally.errors import ConfigError
from kubetally.ledger.store import Ledger
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.pricebook import PriceBook
from kubetally.reports.budgets import (
    BudgetStatus,
    SendSummary,
    committed_until,
    evaluate_all,
    no_prices,
    send_pending,
)


@dataclass
class BudgetRun:
    statuses: list[BudgetStatus]
    new_alerts: int
    sends: SendSummary


def evaluate_and_notify(
    ledger: Ledger,
    config: Config,
    pricebook: PriceBook,
    environ: Mapping[str, str],
    *,
    as_of: datetime | None = None,
    send: bool = True,
) -> BudgetRun:
    """Evaluate every budget with the usage committed so far, record new crossings as alerts,
    then send every pending alert (also those a killed process left behind)."""
    settings = config.settings.budgets
    moment = as_of or committed_until(ledger) or datetime.now(UTC)
    display = DisplayCatalog.from_config(config)
    zone = config.settings.billing.zone
    statuses = evaluate_all(ledger, settings, pricebook, display, moment, record=True, zone=zone)
    created = sum(len(s.new_alerts) for s in statuses)
    sends = send_pending(ledger, settings.notify, environ) if send else SendSummary()
    return BudgetRun(statuses, created, sends)


def budgets_command(
    config_files: Sequence[str | Path] | None,
    prices: str | None,
    db: str | None,
    *,
    at: datetime | None,
    evaluate: bool,
    environ: Mapping[str, str],
) -> BudgetRun:
    """``kubetally budgets``: status of each budget; with ``evaluate`` also alert and send."""
    try:
        inputs: PricingInputs = pricing_inputs(config_files, prices, db)
    except ConfigError:
        # Quantity budgets need no prices: without a price book they can still be evaluated.
        files = discover_config_files(list(config_files) if config_files else None)
        resolver = SettingsResolver.load(files) if files else SettingsResolver()
        items = resolver.config.settings.budgets.items
        if prices is not None or not items or any(b.money for b in items):
            raise
        inputs = PricingInputs(resolver.config, no_prices(), False, resolver.db(db))
    config = inputs.config or Config()
    with Ledger.open(inputs.db, migrate=False) as ledger:
        if evaluate:
            return evaluate_and_notify(ledger, config, inputs.pricebook, environ, as_of=at)
        moment = at or committed_until(ledger) or datetime.now(UTC)
        statuses = evaluate_all(
            ledger,
            config.settings.budgets,
            inputs.pricebook,
            DisplayCatalog.from_config(config),
            moment,
            zone=config.settings.billing.zone,
        )
        return BudgetRun(statuses, 0, SendSummary())
