"""``kubetally demo``: the whole pipeline on a simulated GPU cloud (see :mod:`kubetally.app.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubetally.cli.common import console, fail


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Annotated[Path, typer.Option("--out", help="Folder for the demo's ledger and delivered events.")] = Path(
            "kubetally-demo"
        ),
        serve: Annotated[
            bool, typer.Option("--serve", help="Then serve the dashboard on the demo's ledger (prints URL and token).")
        ] = False,
        port: Annotated[int, typer.Option("--port", help="Port of the dashboard with --serve.")] = 8080,
        lang: Annotated[str, typer.Option("--lang", help="Dashboard language with --serve: en or zh.")] = "en",
    ) -> None:
        """Meter a simulated GPU cloud for an hour, deliver the usage and print what it costs.

        No cluster, Prometheus or billing backend is needed; everything runs on this machine.
        """
        from kubetally.app.demo import run_demo
        from kubetally.reports.render import render_table

        if lang not in ("en", "zh"):
            fail(f"--lang must be en or zh, not {lang!r}")

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
        # Commands are printed whole (soft_wrap): a copy-pasted command must not be cut mid-option.
        console.print(f"  kubetally records --db {db} --item gpu_hours", highlight=False, soft_wrap=True)
        console.print(
            f"  kubetally report --db {db} --prices example --from 2026-11-02 --to 2026-11-03 --by tenant,item",
            highlight=False,
            soft_wrap=True,
        )
        if serve:
            from kubetally.server.demo import serve_demo

            serve_demo(db, result.report.start, console, host="127.0.0.1", port=port, lang=lang)
