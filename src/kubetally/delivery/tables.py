"""Tables of the delivery outbox, sharing the ledger's metadata (migration ``0003_outbox``).

Delivery state lives in the ledger database on purpose: a cursor and the dead letters of a batch
commit in one transaction, so a process killed at any point either moved past a batch (and
recorded its dead letters) or did neither, and then re-sends the same deterministic events.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kubetally.ledger.schema import SeqType, metadata
from kubetally.ledger.types import ExactDecimal, UTCDateTime

#: One row per destination: every ledger row with ``seq <= cursor`` is done (delivered,
#: skipped or dead-lettered), except the seqs listed in :data:`outbox_gaps`. The lease columns
#: keep two processes from draining the same destination at once.
outbox_cursors = Table(
    "outbox_cursors",
    metadata,
    Column("destination", String(128), primary_key=True),
    Column("cursor", BigInteger, nullable=False),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("delivered", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("skipped", BigInteger, nullable=False),
    Column("dead", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Ledger seqs at or below the cursor that were not visible when the cursor moved past them.
#: On PostgreSQL a sequence value is taken at INSERT but becomes visible at COMMIT, so a
#: concurrent writer can commit seq 7 after we already read seq 8. Such holes are kept as
#: ranges ``[lo, hi]`` and re-read until the row appears or the hole is older than any write
#: transaction can be (then it was a rollback and the seq will never be used).
outbox_gaps = Table(
    "outbox_gaps",
    metadata,
    Column("destination", String(128), nullable=False),
    Column("lo", BigInteger, nullable=False),
    Column("hi", BigInteger, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("destination", "lo", name="pk_outbox_gaps"),
)

#: Events a backend refused for good (or that it can never accept, e.g. too old). Kept with the
#: backend's reason; ``state`` is ``dead`` or ``requeued`` (picked up by the next drain).
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("pk", SeqType, primary_key=True, autoincrement=True),
    Column("destination", String(128), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("record_id", String(32), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("item", String(128), nullable=False),
    Column("quantity", ExactDecimal, nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("status", Integer, nullable=True),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("destination", "event_id", name="uq_dead_letters_event"),
    Index("ix_dead_letters_state", "destination", "state"),
)

#: Tenants a destination has set up (customer, subscription); ``state`` is ``active`` or
#: ``offboarded``. Drives offboarding after a grace period without usage.
outbox_tenants = Table(
    "outbox_tenants",
    metadata,
    Column("destination", String(128), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("state", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("destination", "tenant", name="pk_outbox_tenants"),
)

#: Setup objects some backends cannot look up by our key (Metronome billable metrics), so
#: that a restart never creates them twice: ``(destination, kind, key) -> remote id``.
outbox_objects = Table(
    "outbox_objects",
    metadata,
    Column("destination", String(128), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("remote_id", String(255), nullable=False),
    Column("detail", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("destination", "kind", "key", name="pk_outbox_objects"),
)
