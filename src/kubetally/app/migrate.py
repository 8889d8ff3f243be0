"""``kubetally migrate``: create a ledger or upgrade its schema, explicitly (readers never do)."""

from __future__ import annotations

from kubetally.ledger.migrate import schema_state
from kubetally.ledger.store import Ledger


def migrate(db: str | None) -> list[str]:
    """Create/upgrade the ledger at ``db``; returns the schema revisions it is at now."""
    with Ledger.open(db, migrate=True) as ledger, ledger.engine.connect() as conn:
        return sorted(schema_state(conn).current)


def check(db: str | None) -> None:
    """Raise :class:`~kubetally.ledger.store.LedgerError` unless the ledger is current."""
    Ledger.open(db, migrate=False).close()
