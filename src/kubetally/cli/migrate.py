"""``kubetally migrate``: create a ledger or upgrade its schema, explicitly.

Reading commands (report, records, export, deliver) never change a schema; after upgrading
kubetally an operator runs this once (or lets collect/agent do it) and says so in the change log.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kubetally.cli.common import ConfigOption, DbOption, console


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate(
        db: DbOption = None,
        config_files: ConfigOption = None,
        check: Annotated[
            bool, typer.Option("--check", help="Only say whether the ledger is up to date (exit 1 if not).")
        ] = False,
    ) -> None:
        """Create the ledger if it is missing and upgrade its schema to this kubetally's."""
        from kubetally.app.migrate import check as check_ledger
        from kubetally.app.migrate import migrate as upgrade
        from kubetally.config import discover_config_files
        from kubetally.errors import KubetallyError

        config_files = discover_config_files(config_files)
        if db is None and config_files:
            from kubetally.config import load_config

            db = load_config(config_files).settings.db
        if check:
            try:
                check_ledger(db)
            except KubetallyError as exc:
                console.print(str(exc), highlight=False, soft_wrap=True, markup=False)
                raise typer.Exit(1) from None
            console.print("ledger schema is up to date")
            return
        console.print(f"ledger schema at {', '.join(upgrade(db))}", highlight=False)
