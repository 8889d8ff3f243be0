"""``kubetally report``: priced usage from the ledger as a table, CSV or JSON."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubetally.cli.common import ConfigOption, DbOption, FromOption, ToOption, check_output, console, console_err, fail
from kubetally.cli.common import parse_time_option as _parse_time
from kubetally.config import Config, discover_config_files, load_config
from kubetally.ledger.store import Ledger
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.resolve import EXAMPLE_WARNING, resolve_pricebook
from kubetally.reports import build_report, render_csv, render_json, render_table
from kubetally.reports.buckets import month_start, next_month

PricesOption = Annotated[
    str | None,
    typer.Option(
        "--prices",
        help="Price book YAML, or 'example' for the built-in example prices (default: pricing: of --config).",
    ),
]


def pricing_inputs(
    config_files: list[str] | None, prices: str | None, db: str | None
) -> tuple[Config | None, PriceBook, str | None]:
    """Config, price book and ledger for the pricing commands (report, export focus)."""
    config_files = discover_config_files(config_files)
    config = load_config(config_files) if config_files else None
    pricebook, is_example = resolve_pricebook(prices, config)
    if is_example:
        console_err.print(f"[yellow]warning[/]: {EXAMPLE_WARNING}", highlight=False, soft_wrap=True)
    return config, pricebook, db or (config.settings.db if config is not None else None)


def resolve_range(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """``--from``/``--to`` with calendar-month defaults: neither → this UTC month; only
    ``--from`` → to the end of its month; only ``--to`` → from the start of its last day's month."""
    since = _parse_time(start, "--from")
    until = _parse_time(end, "--to")
    if since is None and until is None:
        since = month_start(datetime.now(UTC))
    if until is None:
        assert since is not None
        until = next_month(since)
    if since is None:
        since = month_start(until - timedelta(days=1))
    return since, until


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        db: DbOption = None,
        config_files: ConfigOption = None,
        prices: PricesOption = None,
        start: FromOption = None,
        end: ToOption = None,
        by: Annotated[
            str, typer.Option("--by", help="Group by: tenant, project, namespace, cluster, item (comma-separated).")
        ] = "tenant,item",
        per: Annotated[str, typer.Option("--per", help="Bucket: day, week (ISO, Monday) or month.")] = "month",
        fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
        unit: Annotated[
            str, typer.Option("--unit", help="raw (ledger units) or display (after the divisor, with unit names).")
        ] = "raw",
        lang: Annotated[str, typer.Option("--lang", help="Names and headers: en or zh.")] = "en",
        tenant: Annotated[list[str] | None, typer.Option("--tenant", help="Only these tenants (repeatable).")] = None,
        item: Annotated[list[str] | None, typer.Option("--item", help="Only these items (repeatable).")] = None,
        output: Annotated[str | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")] = None,
        strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any usage has no price.")] = False,
    ) -> None:
        """Priced usage for [--from, --to) (UTC dates; default: this month), grouped and bucketed.

        Costs are exact: each priced line is rounded once (half-up to the micro-unit) and every total is the sum of its lines. Usage with no price is listed as unpriced, never as 0.
        """  # noqa: E501 - one line per paragraph, so --help wraps it to the terminal
        if fmt not in ("table", "csv", "json"):
            fail(f"--format must be table, csv or json, not {fmt!r}")
        check_output(output)
        config, pricebook, db = pricing_inputs(config_files, prices, db)
        since, until = resolve_range(start, end)
        with Ledger.open(db, migrate=False) as ledger:
            result = build_report(
                ledger,
                pricebook,
                config,
                since,
                until,
                by=by,
                per=per,
                unit=unit,
                lang=lang,
                tenants=tenant,
                items=item,
            )
        if fmt == "table":
            if output:
                with Path(output).open("w", encoding="utf-8") as stream:
                    render_table(result, Console(file=stream, width=160, color_system=None))
            else:
                render_table(result, console)
        else:
            text = render_csv(result) if fmt == "csv" else render_json(result)
            if output:
                Path(output).write_text(text, encoding="utf-8")
            else:
                sys.stdout.write(text)
            for summary in result.unpriced:
                console_err.print(
                    f"[yellow]unpriced[/]: {summary.category}/{summary.item} ({summary.lines} line(s)): "
                    f"{summary.reason}",
                    highlight=False,
                    soft_wrap=True,
                )
        if strict and result.unpriced:
            fail(f"{len(result.unpriced)} kind(s) of usage have no price (--strict)")
