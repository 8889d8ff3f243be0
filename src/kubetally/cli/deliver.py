"""`kubetally deliver` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("deliver")
    def _deliver() -> None:
        """Not built yet."""
        raise typer.Exit(2)
