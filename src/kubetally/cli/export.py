"""``kubetally export``: standard exports of priced usage (``focus``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kubetally.cli.common import ConfigOption, DbOption, FromOption, ToOption, check_output, console_err, fail
from kubetally.cli.report import PricesOption, pricing_inputs, resolve_range
from kubetally.periods import format_time

app = typer.Typer(help="Export priced usage in standard formats.", no_args_is_help=True)


@app.command("focus")
def focus(
    db: DbOption = None,
    config_files: ConfigOption = None,
    prices: PricesOption = None,
    start: FromOption = None,
    end: ToOption = None,
    per: Annotated[str, typer.Option("--per", help="Charge period: hour (each record's own), day or month.")] = "day",
    rows: Annotated[
        str,
        typer.Option(
            "--rows",
            help="Row grain: sku (one row per tenant × item × SKU × charge period) or resource (also split by "
            "resource and pricing tier, with Allocated* columns on shared nodes).",
        ),
    ] = "sku",
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file (required for parquet; CSV default: stdout). Written only if the whole export succeeds.",
        ),
    ] = None,
    skip_unpriced: Annotated[
        bool, typer.Option("--skip-unpriced", help="Leave usage with no price out (and say so) instead of failing.")
    ] = False,
) -> None:
    """FinOps FOCUS 1.3 cost-and-usage rows for [--from, --to) (default: this month).

    By default (--rows sku) one row per charge period × tenant × item × SKU, with list, contracted, effective and billed cost from the price book, SubAccountId = tenant and x_ extension columns; ResourceId and the Allocated* columns are empty, and so are the unit prices of a row whose usage had more than one (e.g. across pricing tiers).

    --rows resource splits each of those rows by resource (ResourceId = the node, pod or volume) and pricing tier, with Allocated* columns on tenants' shares of shared nodes. Both grains bill the same total.

    Every row is rated before anything is written: an export that fails (e.g. on unpriced usage) prints nothing to stdout and leaves no --output file (an existing one is kept as it was).
    """  # noqa: E501 - one line per paragraph, so --help wraps it to the terminal
    if fmt not in ("csv", "parquet"):
        fail(f"--format must be csv or parquet, not {fmt!r}")
    if rows not in ("sku", "resource"):
        fail(f"--rows must be sku or resource, not {rows!r}")
    if fmt == "parquet" and not output:
        fail("--format parquet needs --output FILE")
    from kubetally.app.report import billing_zone_of, export_focus
    from kubetally.rating.money import format_money

    check_output(output)
    inputs = pricing_inputs(config_files, prices, db)
    since, until = resolve_range(start, end, billing_zone_of(inputs))
    result = export_focus(
        inputs, since, until, output or sys.stdout, fmt=fmt, grain=per, rows=rows, skip_unpriced=skip_unpriced
    )
    for where, usage in sorted(result.skipped.items()):
        console_err.print(f"[yellow]skipped unpriced[/]: {usage} of {where}", highlight=False, soft_wrap=True)
    if output:
        console_err.print(
            f"{result.rows} FOCUS rows for [{format_time(since)}, {format_time(until)}) → {output} "
            f"(BilledCost {format_money(result.billed_micros)} {inputs.pricebook.currency})",
            highlight=False,
        )
