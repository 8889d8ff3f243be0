"""``kubetally demo``: the whole pipeline on a simulated GPU cloud (see :mod:`kubetally.app.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubetally.cli.common import console


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Folder for the demo's ledger and delivered events.")] = Path(
            "kubetally-demo"
        ),
    ) -> None:
        """Meter a simulated GPU cloud for an hour, deliver the usage and print what it costs.

        No cluster, Prometheus or billing backend is needed; everything runs on this machine.
        """
        from kubetally.app.demo import run_demo
        from kubetally.reports.render import render_table

        def say(message: str) -> None:
            number, _, rest = message.partition(". ")
            if number.isdigit():
                console.print(f"[bold]{number}.[/] {rest}", highlight=False, soft_wrap=True)
            else:
                console.print(message, highlight=False, soft_wrap=True, markup=False)

        result = run_demo(out, say)
        render_table(result.report, console)
        db = result.ledger_path
        console.print("\nTry next:", highlight=False)
        console.print(f"  kubetally records --db {db} --item gpu_hours", highlight=False)
        console.print(
            f"  kubetally report --db {db} --prices example --from 2026-11-02 --to 2026-11-03 --by tenant,item",
            highlight=False,
        )
