"""`kubetally server` (not built yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("server")
    def _server() -> None:
        """Not built yet."""
        raise typer.Exit(2)
