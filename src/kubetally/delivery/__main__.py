"""``python -m kubetally.delivery deliver …`` — the deliver command without loading the rest of
the CLI (faster start-up for supervisors and the crash tests)."""

from __future__ import annotations

import typer

from kubetally.cli import deliver
from kubetally.cli.common import fail
from kubetally.errors import KubetallyError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """kubetally delivery."""


deliver.register(app)

if __name__ == "__main__":
    try:
        app()
    except KubetallyError as exc:
        fail(str(exc))
