"""Schema migrations (Alembic), applied whenever a ledger is opened."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def upgrade(conn: Connection) -> None:
    """Bring the schema to every head. Parts of kubetally branch from the core revision
    independently, so there may be several heads; all of them are applied."""
    config = alembic_config(conn)
    heads = set(ScriptDirectory.from_config(config).get_heads())
    current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        command.upgrade(config, "heads")
