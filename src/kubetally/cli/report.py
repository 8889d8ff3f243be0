"""`kubetally report` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def _report() -> None:
        """Not built yet."""
        raise typer.Exit(2)
