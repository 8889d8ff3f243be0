"""``kubetally report``: priced usage from the ledger as a table, CSV or JSON."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from kubetally.cli.common import ConfigOption, DbOption, FromOption, ToOption, check_output, console, console_err, fail
from kubetally.errors import ConfigError

if TYPE_CHECKING:
    from kubetally.app.report import PricingInputs

PricesOption = Annotated[
    str | None,
    typer.Option(
        "--prices",
        help="Price book YAML, or 'example' for the built-in example prices (default: pricing: of --config).",
    ),
]


def pricing_inputs(config_files: list[str] | None, prices: str | None, db: str | None) -> PricingInputs:
    """:func:`kubetally.app.report.pricing_inputs`, warning when the example prices are used."""
    from kubetally.app.report import pricing_inputs as resolve
    from kubetally.rating.resolve import EXAMPLE_WARNING

    inputs = resolve(config_files, prices, db)
    if inputs.is_example:
        console_err.print(f"[yellow]warning[/]: {EXAMPLE_WARNING}", highlight=False, soft_wrap=True)
    return inputs


def resolve_range(start: str | None, end: str | None, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """:func:`kubetally.app.report.resolve_range`, a bad date ending the command with one line."""
    from kubetally.app.report import resolve_range as resolve

    try:
        return resolve(start, end, zone)
    except ConfigError as exc:
        fail(str(exc))


def _provider_view(inputs: PricingInputs, since: datetime, until: datetime, view: str, per: str, fmt: str) -> None:
    """``--view capacity|efficiency|pods`` (see :mod:`kubetally.reports.capacity`)."""
    from kubetally.app.report import provider_view
    from kubetally.record import dumps_exact

    if fmt == "csv":
        fail(f"--view {view}: --format table or json")
    data, table = provider_view(inputs, since, until, view, per)
    if fmt == "json":
        sys.stdout.write(dumps_exact(data) + "\n")
    else:
        console.print(table)


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
        view: Annotated[
            str,
            typer.Option("--view", help="usage (default), capacity (GPU capacity, sold, idle), efficiency or pods."),
        ] = "usage",
    ) -> None:
        """Priced usage for [--from, --to) (billing.timezone dates; default: this month), grouped and bucketed.

        Costs are exact: each priced line is rounded once (half-up to the micro-unit) and every total is the sum of its lines. Usage with no price is listed as unpriced, never as 0.
        """  # noqa: E501 - one line per paragraph, so --help wraps it to the terminal
        if fmt not in ("table", "csv", "json"):
            fail(f"--format must be table, csv or json, not {fmt!r}")
        from kubetally.app.report import report as build
        from kubetally.reports.render import render_csv, render_json, render_table

        check_output(output)
        if view not in ("usage", "capacity", "efficiency", "pods"):
            fail(f"--view must be usage, capacity, efficiency or pods, not {view!r}")
        inputs = pricing_inputs(config_files, prices, db)
        from kubetally.app.report import billing_zone_of

        since, until = resolve_range(start, end, billing_zone_of(inputs) if view == "usage" else UTC)
        if view != "usage":
            _provider_view(inputs, since, until, view, per, fmt)
            return
        result = build(inputs, since, until, by=by, per=per, unit=unit, lang=lang, tenants=tenant, items=item)
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
