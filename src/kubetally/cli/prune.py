"""``kubetally prune``: archive ledger rows older than a date to Parquet, then delete them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubetally.cli.common import ConfigOption, DbOption, console, fail, parse_time_option


def register(app: typer.Typer) -> None:
    @app.command("prune")
    def prune(
        before: Annotated[str, typer.Option("--before", help="Prune rows whose period ended by this UTC date.")],
        archive: Annotated[
            Path, typer.Option("--archive", help="Folder for the Parquet archive and its manifest.")
        ] = Path("kubetally-archive"),
        db: DbOption = None,
        config_files: ConfigOption = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and count only; write nothing.")] = False,
    ) -> None:
        """Archive every ledger row (all revisions) whose period ended by --before to Parquet, verify the archive, then delete the rows.

        Refuses, deleting nothing, while any destination has not delivered one of them (not yet sent, or dead-lettered).
        """  # noqa: E501 - one line per paragraph, so --help wraps it to the terminal
        from kubetally.app.prune import run
        from kubetally.errors import KubetallyError

        moment = parse_time_option(before, "--before")
        assert moment is not None
        try:
            result = run(config_files, db, moment, archive, dry_run=dry_run)
        except KubetallyError as exc:
            fail(str(exc))
        if result.rows == 0:
            console.print(f"nothing to prune before {moment:%Y-%m-%d}", highlight=False)
        elif dry_run:
            console.print(f"{result.rows} rows before {moment:%Y-%m-%d} can be pruned", highlight=False)
        else:
            console.print(
                f"pruned {result.rows} rows before {moment:%Y-%m-%d}; archive {result.archive}", highlight=False
            )
