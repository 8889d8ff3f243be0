"""``kubetally validate``: check configuration files, every problem with its location."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kubetally.cli.common import console, console_err
from kubetally.config import load_config
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
        """Exit 0 when every file is valid; otherwise list every problem and exit 1.

        Each file is checked as the kind it is (said on its line): kubetally.yaml and Alauda
        ConfigMaps together (they cross-check), each price book and scenario on its own.
        """
        from kubetally.config import kinds

        found = {path: kinds.detect(path) for path in files}
        configs = [p for p in files if found[p] in (kinds.KUBETALLY_YAML, kinds.CONFIGMAP)]
        failures: list[str] = []
        for path in files:
            if found[path] == kinds.PRICE_BOOK:
                from kubetally.rating.config import load_pricebook_file

                try:
                    load_pricebook_file(path)
                except ConfigError as exc:
                    failures.extend(exc.problems)
            elif found[path] == kinds.SCENARIO:
                from kubetally.sim.scenario import Scenario

                try:
                    Scenario.load(path)
                except ConfigError as exc:
                    failures.extend(exc.problems)
        try:
            config = load_config(configs)
        except ConfigError as exc:
            failures.extend(exc.problems)
            config = None
        if failures:
            for problem in failures:
                console_err.print(f"[red]✗[/] {escape(problem)}", highlight=False, soft_wrap=True)
            console_err.print(f"{len(failures)} problem(s) found")
            raise typer.Exit(1) from None
        assert config is not None
        for path in files:
            console.print(f"[green]✓[/] {escape(str(path))}: {found[path]}", highlight=False, soft_wrap=True)
        problems: list[str] = []
        if prometheus:
            from kubetally.sources.prometheus.check import check_queries

            problems = check_queries(config, prometheus)
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
