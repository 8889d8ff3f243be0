"""``kubetally budgets``: each budget's spend, forecast and crossed thresholds (table or JSON)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from kubetally.cli.common import ConfigOption, DbOption, console, console_err, fail, parse_time_option
from kubetally.cli.report import PricesOption

if TYPE_CHECKING:
    from kubetally.app.budgets import BudgetRun


def render_table(run: BudgetRun) -> Table:
    table = Table(title="Budgets", title_justify="left")
    for name, right in (
        ("budget", False),
        ("scope", False),
        ("period", False),
        ("limit", True),
        ("spent", True),
        ("forecast", True),
        ("thresholds crossed (when)", False),
    ):
        table.add_column(name, justify="right" if right else "left")
    methods = set()
    for status in run.statuses:
        data = status.as_dict()
        methods.add(status.method)
        crossed = "\n".join(f"{c['kind']} {c['threshold']} % at {c['crossedAt']}" for c in data["crossed"])
        table.add_row(
            status.budget.name,
            f"{data['scope']['kind']} {data['scope']['value']}",
            f"{data['period']['start'][:10]} – {data['period']['end'][:10]}",
            f"{data['limit']} {status.unit}",
            f"{data['spent']} ({data['spentPercent']} %)" + (" + unpriced" if status.unpriced else ""),
            f"{data['forecast']} ({data['forecastPercent']} %)",
            crossed or "—",
        )
    table.caption = "; ".join(sorted(methods)) or None
    return table


def register(app: typer.Typer) -> None:
    @app.command("budgets")
    def budgets(
        db: DbOption = None,
        config_files: ConfigOption = None,
        prices: PricesOption = None,
        at: Annotated[
            str | None,
            typer.Option("--at", help="Evaluate with usage up to this time (default: the latest committed)."),
        ] = None,
        evaluate: Annotated[
            bool, typer.Option("--evaluate", help="Also record new threshold crossings as alerts and send them.")
        ] = False,
        fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    ) -> None:
        """Each budget (budgets: in kubetally.yaml and those stored on the server): spent, forecast, thresholds crossed and when.

        The forecast is the run rate of the last forecast_hours (default 24) extrapolated to the end of the period: an estimate, not a bill.
        """  # noqa: E501 - one line per paragraph, so --help wraps it to the terminal
        if fmt not in ("table", "json"):
            fail(f"--format must be table or json, not {fmt!r}")
        from kubetally.app.budgets import budgets_command
        from kubetally.record import dumps_exact

        moment = parse_time_option(at, "--at")
        run = budgets_command(config_files, prices, db, at=moment, evaluate=evaluate, environ=dict(os.environ))
        if fmt == "json":
            data = {
                "budgets": [s.as_dict() for s in run.statuses],
                "newAlerts": run.new_alerts,
                "sent": run.sends.sent,
                "failed": run.sends.failed,
            }
            sys.stdout.write(dumps_exact(data) + "\n")
        else:
            console.print(render_table(run))
        for error in run.sends.errors:
            console_err.print(f"[yellow]alert not sent[/]: {error}", highlight=False, soft_wrap=True)
        if run.sends.failed:
            fail(f"{run.sends.failed} alert(s) not sent; they stay pending and are sent on the next run")
