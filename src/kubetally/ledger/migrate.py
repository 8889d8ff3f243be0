"""Schema migrations (Alembic). Only the commands that own a ledger (``collect``, ``agent``, the
server and ``kubetally migrate``) apply them; every other command only checks that the schema is
the one it understands, so a newer CLI used for a report never upgrades production behind
anyone's back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

MIGRATIONS = Path(__file__).parent / "migrations"
#: The PostgreSQL advisory lock key that serialises migrations (b"ktmigrat" as a positive int64).
MIGRATION_LOCK = int.from_bytes(b"ktmigrat", "big") >> 1


def alembic_config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


@dataclass(frozen=True)
class SchemaState:
    """Where a ledger's schema stands against the migrations this kubetally ships."""

    current: frozenset[str]
    heads: frozenset[str]
    #: revisions in the database that this kubetally does not know (written by a newer one)
    unknown: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.current

    @property
    def newer(self) -> bool:
        return bool(self.unknown)

    @property
    def older(self) -> bool:
        return not self.empty and not self.newer and self.current != self.heads

    @property
    def up_to_date(self) -> bool:
        return self.current == self.heads


def schema_state(conn: Connection) -> SchemaState:
    """Read the ledger's Alembic revisions without changing anything."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = frozenset(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    current = frozenset(MigrationContext.configure(conn).get_current_heads())
    return SchemaState(current=current, heads=heads, unknown=frozenset(current - known))


def upgrade(conn: Connection) -> None:
    """Bring the schema to every head. Parts of kubetally branch from the core revision
    independently, so there may be several heads; all of them are applied.

    On PostgreSQL the caller's transaction first takes an advisory lock: agent replicas starting
    together (or beside the migrate Job) would otherwise all find an old schema and all run the
    DDL, and every one but the first would fail half-way. Behind the lock the second finds the
    schema current once the first commits. SQLite's writers are already serialised by
    ``BEGIN IMMEDIATE``."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    state = schema_state(conn)
    if state.newer:
        raise SchemaTooNew(state)
    if not state.up_to_date:
        command.upgrade(alembic_config(conn), "heads")


class SchemaTooNew(Exception):
    """The ledger was migrated by a newer kubetally; downgrading is never done implicitly."""

    def __init__(self, state: SchemaState) -> None:
        self.state = state
        super().__init__(f"schema revision {', '.join(sorted(state.unknown))} is newer than this kubetally understands")
