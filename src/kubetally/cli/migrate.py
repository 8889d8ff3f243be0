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
        from kubetally.config import discover_config_files
        from kubetally.ledger.store import Ledger, LedgerError

        config_files = discover_config_files(config_files)
        if db is None and config_files:
            from kubetally.config import load_config

            db = load_config(config_files).settings.db
        if check:
            try:
                Ledger.open(db, migrate=False).close()
            except LedgerError as exc:
                console.print(str(exc), highlight=False, soft_wrap=True, markup=False)
                raise typer.Exit(1) from None
            console.print("ledger schema is up to date")
            return
        with Ledger.open(db, migrate=True) as ledger:
            from kubetally.ledger.migrate import schema_state

            with ledger.engine.connect() as conn:
                state = schema_state(conn)
        console.print(f"ledger schema at {', '.join(sorted(state.current))}", highlight=False)
