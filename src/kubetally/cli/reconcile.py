"""``kubetally reconcile``: ledger, outbox and the backend's own usage, side by side.

Parses options, calls :func:`kubetally.app.reconcile.reconcile`, prints one table per
destination and every difference, and exits 1 when any destination disagrees beyond its
units' rounding.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kubetally.cli.common import ConfigOption, DbOption, FromOption, ToOption, console, fail
from kubetally.errors import ConfigError
from kubetally.periods import format_time

if TYPE_CHECKING:
    from kubetally.delivery.reconcile import Reconciliation


def _show(result: Reconciliation) -> None:
    label = result.destination if result.destination == result.kind else f"{result.destination} ({result.kind})"
    title = f"{label}: {format_time(result.start)} to {format_time(result.end)}"
    table = Table(title=escape(title), title_justify="left")
    for column in ("tenant", "item", "ledger", "acknowledged", "backend"):
        table.add_column(column, justify="left" if column in ("tenant", "item") else "right", overflow="fold")
    for cell in result.cells:
        backend = "—" if cell.backend is None else format(cell.backend, "f")
        table.add_row(
            escape(cell.tenant), escape(cell.item), format(cell.ledger, "f"), format(cell.acknowledged, "f"), backend
        )
    console.print(table)
    if result.backend_unavailable:
        console.print(f"backend column empty: {escape(result.backend_unavailable)}", highlight=False)
    for difference in result.differences:
        console.print(f"DIFFERENCE {escape(difference.describe())}", highlight=False, soft_wrap=True)
    if result.ok:
        console.print("agrees", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command(name="reconcile")
    def reconcile_command(
        db: DbOption = None,
        config: ConfigOption = None,
        start: FromOption = None,
        end: ToOption = None,
        kind: Annotated[
            str | None, typer.Option("--type", help="One-off destination type (lago, stripe, openmeter, metronome).")
        ] = None,
        url: Annotated[str | None, typer.Option("--url", help="Backend URL for --type.")] = None,
        name: Annotated[str | None, typer.Option("--name", help="Outbox name for --type (default: the type).")] = None,
        only: Annotated[
            list[str] | None, typer.Option("--destination", "-d", help="Only this configured destination (repeatable).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per destination.")] = False,
    ) -> None:
        """Compare the ledger, the outbox and the backend's own usage per tenant and item
        (default range: this UTC month); exit 1 on any difference beyond rounding."""
        from kubetally.app.reconcile import reconcile
        from kubetally.app.report import resolve_range
        from kubetally.app.settings import SettingsResolver
        from kubetally.record import dumps_exact

        try:
            since, until = resolve_range(start, end)
            resolver = SettingsResolver.load(config)
            results = reconcile(
                resolver, since, until, has_config=bool(config), db=db, kind=kind, url=url, name=name, only=only
            )
        except ConfigError as exc:
            fail(str(exc))
        for result in results:
            if as_json:
                sys.stdout.write(dumps_exact(result.to_dict()) + "\n")
            else:
                _show(result)
        if not all(r.ok for r in results):
            raise typer.Exit(1)
