"""``kubetally demo`` (being built; see the README)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo() -> None:
        """The whole pipeline on a simulated GPU cloud (not built yet)."""
        raise typer.Exit(2)
