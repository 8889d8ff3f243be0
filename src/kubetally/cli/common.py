"""Options and helpers every sub-command shares, so their spelling never drifts."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from kubetally.periods import parse_time

console = Console()
console_err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Ledger: SQLite path or postgresql:// URL (default: $KUBETALLY_DB or ./kubetally.db)."),
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option("--config", "-c", help="kubetally.yaml or Alauda ConfigMap file (repeatable)."),
]
FromOption = Annotated[str | None, typer.Option("--from", help="Start, RFC 3339 (inclusive).")]
ToOption = Annotated[str | None, typer.Option("--to", help="End, RFC 3339 (exclusive).")]


def fail(reason: str, code: int = 1) -> NoReturn:
    """Exit non-zero with a one-line reason on stderr."""
    console_err.print(f"[bold red]error:[/] {reason}", highlight=False, soft_wrap=True)
    sys.exit(code)


def parse_time_option(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        fail(f"{option}: {exc}")
