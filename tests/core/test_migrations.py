"""The hand-written Alembic migrations build exactly the tables the code declares.

Each part declares its tables on the ledger's shared metadata (ledger/schema.py,
sources/kubernetes/tables.py, delivery/tables.py, rating/tables.py, reports/budget_tables.py, server/tables.py,
server/sessions.py) and writes its migration by
hand. A column added to one and forgotten in the other would only show on a customer's ledger;
here Alembic's ``compare_metadata`` diffs a freshly migrated ledger against the declarations, on
SQLite and on the real PostgreSQL the suite starts."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import kubetally.delivery.tables
import kubetally.rating.tables
import kubetally.reports.budget_tables
import kubetally.server.sessions
import kubetally.server.tables
import kubetally.sources.kubernetes.tables  # noqa: F401 - each import adds its tables
from kubetally.ledger.schema import metadata
from kubetally.ledger.store import Ledger


def _drift(ledger: Ledger) -> list[Any]:
    with ledger.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(context, metadata)


def test_migrations_match_the_declared_tables(ledger: Ledger) -> None:
    # Every table the code declares exists after the migrations, with the same columns, types,
    # nullability, indexes and unique constraints: no difference at all.
    assert {"records", "watermarks", "outbox_cursors", "dead_letters"} <= set(metadata.tables)
    assert _drift(ledger) == []
