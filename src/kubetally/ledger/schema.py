"""Tables of the core ledger. Other parts (journal, outbox, rollups) add their own tables in
their own migrations; this module only describes what the record store itself needs."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kubetally.ledger.types import ExactDecimal, UTCDateTime

metadata = MetaData()

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a ledger.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

records = Table(
    "records",
    metadata,
    # Insertion order across all revisions: delivery cursors follow it.
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("current", Boolean, nullable=False),
    Column("kind", String(128), nullable=False),
    Column("category", String(128), nullable=False),
    Column("item", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("cluster", String(253), nullable=False),
    Column("project", String(253), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("labels", Text, nullable=False),
    Column("date", UTCDateTime, nullable=False),
    Column("period", String(16), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=False),
    Column("usage", ExactDecimal, nullable=False),
    Column("unit", String(64), nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    UniqueConstraint("id", "revision", name="uq_records_id_revision"),
    Index("ix_records_current_start", "current", "start"),
    Index("ix_records_item_start", "item", "start"),
    Index("ix_records_tenant_start", "tenant", "start"),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("source", String(64), nullable=False),
    Column("cluster", String(253), nullable=False),
    Column("item", String(128), nullable=False),
    # Exclusive end of the last period collected for (source, cluster, item).
    Column("until", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("source", "cluster", "item", name="pk_watermarks"),
)
