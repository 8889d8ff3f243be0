"""Ledger tables of the Kubernetes source (created by migration ``0002_kubernetes``).

* ``kubernetes_segments`` — the lifetime journal: one row per continuous stretch of one billable
  presence (object uid + role). ``ended_at`` NULL means still open. It is what lets the agent bill
  an object deleted between two periods up to its deletion second, and resume after a restart
  with nothing lost or doubled.
* ``kubernetes_tenants`` — every tenant ever discovered, with the offboarding state machine
  (``missing_since`` → ``offboarded_at`` after the grace period). One row per (tenant, namespace)
  so multi-namespace tenants can be resolved from the ledger alone.
* ``kubernetes_leases`` — who may write a cluster's journal (one writer at a time: two writers
  would both open a segment for the same object and bill it twice).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from kubetally.ledger.schema import metadata
from kubetally.ledger.types import UTCDateTime

SeqType = BigInteger().with_variant(Integer(), "sqlite")

segments = Table(
    "kubernetes_segments",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("cluster", String(253), nullable=False),
    Column("uid", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("signature", String(32), nullable=False),
    # JSON of lifetimes.Billed: kind, name, namespace, tenant, project, meters, labels.
    Column("billed", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    # The last time the object was known to exist (healthy list/watch): where a segment whose
    # object vanished while nobody watched is ended (never later than provable).
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("end_reason", String(32), nullable=True),
    Index("ix_kubernetes_segments_open", "cluster", "ended_at"),
    Index("ix_kubernetes_segments_uid", "cluster", "uid", "role"),
    Index("ix_kubernetes_segments_start", "cluster", "started_at"),
)

tenants = Table(
    "kubernetes_tenants",
    metadata,
    Column("cluster", String(253), nullable=False),
    Column("tenant", String(253), nullable=False),
    Column("namespace", String(253), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(253), nullable=False),
    Column("project", String(253), nullable=False),
    Column("display_name", String(253), nullable=False),
    Column("sources", String(253), nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("missing_since", UTCDateTime, nullable=True),
    Column("offboarded_at", UTCDateTime, nullable=True),
    # The billing customer id from kubernetes.tenancy.customer_key (migration 0008).
    Column("customer", String(253), nullable=True),
    PrimaryKeyConstraint("cluster", "tenant", "namespace", name="pk_kubernetes_tenants"),
)

leases = Table(
    "kubernetes_leases",
    metadata,
    Column("cluster", String(253), primary_key=True),
    Column("holder", String(253), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    # Wall-clock time; a holder that stops renewing (crashed) loses the lease after this.
    Column("expires_at", UTCDateTime, nullable=False),
)
