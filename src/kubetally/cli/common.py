"""Options and helpers every sub-command shares, so their spelling never drifts."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from kubetally.periods import parse_time

console = Console()
console_err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Ledger: SQLite path or postgresql:// URL (default: $KUBETALLY_DB or ./kubetally.db)."),
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        help="kubetally.yaml or Alauda ConfigMap file (repeatable; default: $KUBETALLY_CONFIG, else ./kubetally.yaml).",
    ),
]
FromOption = Annotated[str | None, typer.Option("--from", help="Start, RFC 3339 (inclusive).")]
ToOption = Annotated[str | None, typer.Option("--to", help="End, RFC 3339 (exclusive).")]


def fail(reason: str, code: int = 1) -> NoReturn:
    """Exit non-zero with a one-line reason on stderr."""
    from kubetally import logs

    if logs.state["format"] == "json":
        # A log pipeline parses every stderr line: the error is one more JSON line.
        import logging

        logging.getLogger("kubetally").error("%s", reason)
        sys.exit(code)
    # The reason is text, never markup: "[::1]" or "[/PATH]" in it must print as written.
    console_err.print(f"[bold red]error:[/] {escape(reason)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def parse_time_option(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        fail(f"{option}: {exc}")


def check_output(path: str | None, option: str = "--output") -> None:
    """Refuse an output file whose folder is missing before any work is done (one line, exit 1)."""
    if path is None:
        return
    from pathlib import Path

    target = Path(path)
    if not target.parent.is_dir():
        fail(f"{option} {path}: folder {target.parent} does not exist")
    if target.is_dir():
        fail(f"{option} {path}: is a folder; give a file name")
