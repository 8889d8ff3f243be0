"""Tables of the central server (migration ``0005_server``), on the ledger's shared metadata.

* ``server_tokens``: API tokens — only a SHA-256 of each token is kept; the token itself is
  shown once, when created. ``role`` is ``admin``, ``tenant`` (with ``tenant``) or ``agent``
  (with ``cluster``).
* ``server_ingest``: for every record id received from an agent, the agent's revision last
  applied. The server's own ledger numbers revisions itself (so rollups and delivery keep
  working); this table is what makes ingest idempotent by the *agent's* (id, revision).
* ``server_clusters``: rows applied and the last ingest time per cluster (for ``/metrics``,
  shared by every server replica).
* ``server_report_buckets`` (migration ``0009_report_buckets``): rated report buckets (see
  :mod:`kubetally.server.stored`), so a restarted server or another replica does not rate the
  month again; each row is valid while its rollup days keep the versions it names.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, String, Table, UniqueConstraint

from kubetally.ledger.schema import metadata
from kubetally.ledger.types import UTCDateTime

tokens = Table(
    "server_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("tenant", String(253), nullable=True),
    Column("cluster", String(253), nullable=True),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    UniqueConstraint("hash", name="uq_server_tokens_hash"),
)

ingest_state = Table(
    "server_ingest",
    metadata,
    Column("record_id", String(32), primary_key=True),
    Column("cluster", String(253), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

clusters = Table(
    "server_clusters",
    metadata,
    Column("cluster", String(253), primary_key=True),
    Column("records", BigInteger, nullable=False),
    Column("last_ingest_at", UTCDateTime, nullable=False),
)

report_buckets = Table(
    "server_report_buckets",
    metadata,
    # Hash of the bucket part's parameters and of everything its figures depend on besides usage.
    Column("key", String(64), primary_key=True),
    # Hash of the versions of the rollup days the part was computed from.
    Column("version", String(64), nullable=False),
    # The part's report, zlib-compressed JSON.
    Column("payload", LargeBinary, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
)
