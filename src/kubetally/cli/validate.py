"""``kubetally validate``: check configuration files, every problem with its location."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kubetally.cli.common import console, console_err
from kubetally.errors import ConfigError


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate(
        files: Annotated[
            list[Path],
            typer.Argument(help="kubetally.yaml, Alauda ConfigMaps, price books and/or simulator scenarios."),
        ],
        prometheus: Annotated[
            str | None,
            typer.Option("--prometheus", help="Also have this Prometheus parse every PromQL query."),
        ] = None,
    ) -> None:
        """Exit 0 when every file is valid; otherwise list every problem and exit 1."""
        from kubetally.app.validate import validate as check

        try:
            result = check(files, prometheus=prometheus)
        except ConfigError as exc:
            for problem in exc.problems:
                console_err.print(f"[red]✗[/] {escape(problem)}", highlight=False, soft_wrap=True)
            console_err.print(f"{len(exc.problems)} problem(s) found")
            raise typer.Exit(1) from None
        config, problems = result.config, result.problems
        for path, kind in result.kinds:
            console.print(f"[green]✓[/] {escape(path)}: {kind}", highlight=False, soft_wrap=True)
        for problem in problems:
            console_err.print(f"[red]✗[/] {escape(problem)}", highlight=False, soft_wrap=True)
        for warning in config.warnings:
            console.print(f"[yellow]![/] {warning}", highlight=False)
        if problems:
            console_err.print(f"{len(problems)} problem(s) found")
            raise typer.Exit(1)
        console.print(
            f"[green]✓[/] {len(files)} file(s): {len(config.items)} item(s), {len(config.display)} display item(s)",
            highlight=False,
        )
