"""Priced usage from the ledger: reports and the FOCUS export (``kubetally report``/``export``).

Both need the same inputs — configuration, price book, ledger, a date range with calendar-month
defaults — resolved here once, so the two commands, the demo and the server cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kubetally.app.settings import SettingsResolver
from kubetally.config import Config
from kubetally.errors import ConfigError
from kubetally.periods import parse_time

if TYPE_CHECKING:
    from rich.table import Table

    from kubetally.rating.pricebook import PriceBook
    from kubetally.reports import Report
    from kubetally.reports.focus import FocusResult


@dataclass
class PricingInputs:
    config: Config | None
    pricebook: PriceBook
    #: The built-in example price book was asked for (callers must say so).
    is_example: bool
    db: str | None


def pricing_inputs(config_files: Sequence[str | Path] | None, prices: str | None, db: str | None) -> PricingInputs:
    """Config, price book and ledger for the pricing commands (report, export focus)."""
    from kubetally.config.loader import discover_config_files
    from kubetally.rating.resolve import resolve_pricebook

    config_files = discover_config_files(list(config_files) if config_files else None)
    resolver = SettingsResolver.load(config_files) if config_files else SettingsResolver()
    config = resolver.config if config_files else None
    pricebook, is_example = resolve_pricebook(prices, config)
    return PricingInputs(config, pricebook, is_example, resolver.db(db))


def _time(value: str | None, option: str, zone: tzinfo) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, zone)
    except ValueError as exc:
        raise ConfigError([f"{option}: {exc}"]) from None


def resolve_range(start: str | None, end: str | None, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """``--from``/``--to`` with calendar-month defaults in the billing time zone ``zone``: neither
    → this month; only ``--from`` → to the end of its month; only ``--to`` → from the start of
    its last day's month. Dates without an offset are local dates in ``zone``."""
    from kubetally.reports.buckets import month_start, next_month

    since = _time(start, "--from", zone)
    until = _time(end, "--to", zone)
    if since is None and until is None:
        since = month_start(datetime.now(UTC), zone)
    if until is None:
        assert since is not None
        until = next_month(since, zone)
    if since is None:
        since = month_start(until - timedelta(seconds=1), zone)
    return since, until


def billing_zone_of(inputs: PricingInputs) -> tzinfo:
    """The billing time zone of the configuration (``billing.timezone``), UTC without one."""
    return inputs.config.settings.billing.zone if inputs.config is not None else UTC


def report(
    inputs: PricingInputs,
    since: datetime,
    until: datetime,
    *,
    by: str | Sequence[str] = "tenant,item",
    per: str = "month",
    unit: str = "raw",
    lang: str = "en",
    tenants: Sequence[str] | None = None,
    items: Sequence[str] | None = None,
) -> Report:
    from kubetally.ledger.store import Ledger
    from kubetally.reports import build_report

    with Ledger.open(inputs.db, migrate=False) as ledger:
        return build_report(
            ledger,
            inputs.pricebook,
            inputs.config,
            since,
            until,
            by=by,
            per=per,
            unit=unit,
            lang=lang,
            tenants=list(tenants) if tenants else None,
            items=list(items) if items else None,
        )


def export_focus(
    inputs: PricingInputs,
    since: datetime,
    until: datetime,
    output: str | IO[str],
    *,
    fmt: str = "csv",
    grain: str = "day",
    rows: str = "sku",
    skip_unpriced: bool = False,
) -> FocusResult:
    from kubetally.ledger.store import Ledger
    from kubetally.reports.focus import export_focus as export

    with Ledger.open(inputs.db, migrate=False) as ledger:
        return export(
            ledger,
            inputs.pricebook,
            inputs.config,
            since,
            until,
            output,
            fmt=fmt,
            grain=grain,
            rows=rows,
            skip_unpriced=skip_unpriced,
        )


def provider_view(
    inputs: PricingInputs, since: datetime, until: datetime, view: str, per: str
) -> tuple[list[dict[str, Any]], Table]:
    """``kubetally report --view capacity|efficiency|pods``: rows as JSON-ready dicts and a table."""
    from kubetally.ledger.store import Ledger
    from kubetally.periods import Period
    from kubetally.reports.capacity import provider_view as build

    with Ledger.open(inputs.db) as ledger:
        return build(ledger, inputs.pricebook, inputs.config, Period(since, until), view, per)
