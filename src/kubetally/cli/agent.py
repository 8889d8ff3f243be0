"""`kubetally agent` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("agent")
    def _agent() -> None:
        """Not built yet."""
        raise typer.Exit(2)
