"""Known tenants in the ledger (``kubernetes_tenants``), and the offboarding rule.

A tenant missing from a *complete* discovery is marked ``missing_since``; only when it is still
missing ``offboard_grace`` later is it ``offboarded_at``. An incomplete discovery (any LIST
failed) changes nothing, so an API hiccup never offboards anyone. A tenant that reappears is
active again. Other parts read :func:`known_tenants` (delivery maps tenant ids to customers) and
:func:`load_resolver` (the Prometheus source fills ``tenant`` from a namespace).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update

from kubetally.config.kubernetes import KubernetesConfig
from kubetally.sources.kubernetes.tables import tenants as t
from kubetally.sources.kubernetes.tenancy import Discovery, Tenant, TenantResolver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownTenant:
    tenant: Tenant
    first_seen: datetime
    last_seen: datetime
    missing_since: datetime | None
    offboarded_at: datetime | None

    @property
    def active(self) -> bool:
        return self.offboarded_at is None


@dataclass
class RegistryChange:
    onboarded: list[str]
    missing: list[str]
    offboarded: list[str]
    returned: list[str]


def _row_tenant(row: Any) -> Tenant:
    sources = tuple(s for s in row.sources.split(",") if s)
    return Tenant(
        row.tenant, row.kind, row.namespace, row.name, row.project, row.display_name, sources, row.customer or ""
    )


def load(conn: Connection, cluster: str) -> list[KnownTenant]:
    rows = conn.execute(select(t).where(t.c.cluster == cluster).order_by(t.c.tenant, t.c.namespace))
    return [KnownTenant(_row_tenant(r), r.first_seen, r.last_seen, r.missing_since, r.offboarded_at) for r in rows]


def update_registry(
    conn: Connection, cluster: str, discovery: Discovery, at: datetime, grace: timedelta
) -> RegistryChange:
    """Apply one discovery pass (see module doc)."""
    change = RegistryChange([], [], [], [])
    known = {(k.tenant.id, k.tenant.namespace): k for k in load(conn, cluster)}
    present = {(d.id, d.namespace): d for d in discovery.tenants}
    # The agent re-discovers every 30 s: a tenant whose row is unchanged only gets its last_seen,
    # all of them in one statement (one UPDATE per tenant was ~0.5 CPU-s per pass at 1,000 tenants).
    seen: list[dict[str, Any]] = []
    for key, tenant in present.items():
        values = dict(
            kind=tenant.kind,
            name=tenant.name,
            project=tenant.project,
            display_name=tenant.display_name[:253],
            sources=",".join(tenant.sources)[:253],
            last_seen=at,
            missing_since=None,
            offboarded_at=None,
            customer=tenant.customer[:253] or None,
        )
        existing = known.get(key)
        if existing is not None and _unchanged(existing, values):
            seen.append({"k_tenant": tenant.id, "k_namespace": tenant.namespace})
            continue
        if existing is None:
            conn.execute(
                t.insert().values(
                    cluster=cluster, tenant=tenant.id, namespace=tenant.namespace, first_seen=at, **values
                )
            )
            change.onboarded.append(tenant.id)
            continue
        if existing.offboarded_at is not None or existing.missing_since is not None:
            change.returned.append(tenant.id)
        conn.execute(
            update(t)
            .where(and_(t.c.cluster == cluster, t.c.tenant == tenant.id, t.c.namespace == tenant.namespace))
            .values(**values)
        )
    if seen:
        conn.execute(
            update(t)
            .where(
                and_(
                    t.c.cluster == cluster,
                    t.c.tenant == bindparam("k_tenant"),
                    t.c.namespace == bindparam("k_namespace"),
                )
            )
            .values(last_seen=at),
            seen,
        )
    if not discovery.complete:
        return change
    for key, existing in known.items():
        if key in present or existing.offboarded_at is not None:
            continue
        where = and_(t.c.cluster == cluster, t.c.tenant == key[0], t.c.namespace == key[1])
        missing_since = existing.missing_since or at
        if existing.missing_since is None:
            conn.execute(update(t).where(where).values(missing_since=at))
            change.missing.append(key[0])
        if at - missing_since >= grace:
            conn.execute(update(t).where(where).values(offboarded_at=at))
            change.offboarded.append(key[0])
    return change


def _unchanged(existing: KnownTenant, values: dict[str, Any]) -> bool:
    """Whether the row already holds ``values`` (but ``last_seen``), active and not missing."""
    tenant = existing.tenant
    return (
        existing.missing_since is None
        and existing.offboarded_at is None
        and (tenant.kind, tenant.name, tenant.project, tenant.display_name, ",".join(tenant.sources), tenant.customer)
        == (
            values["kind"],
            values["name"],
            values["project"],
            values["display_name"],
            values["sources"],
            values["customer"] or "",
        )
    )


def active_tenants(known: Sequence[KnownTenant]) -> list[Tenant]:
    return [k.tenant for k in known if k.active]


def known_tenants(ledger: object, cluster: str) -> list[KnownTenant]:
    """Every tenant the Kubernetes source has discovered in ``cluster`` (for delivery/reports)."""
    with ledger.engine.connect() as conn:  # type: ignore[attr-defined]
        return load(conn, cluster)


def load_resolver(ledger: object, cluster: str, config: KubernetesConfig | None = None) -> TenantResolver:
    """A resolver from the ledger alone (active tenants), for sources without API access."""
    return TenantResolver(active_tenants(known_tenants(ledger, cluster)), {}, config or KubernetesConfig())


def tenant_customers(ledger: object, ttl: timedelta = timedelta(seconds=60)) -> Callable[[str], str | None]:
    """tenant → the customer id its object names (``tenancy.customer_key``), for delivery.

    Read from the registry of every cluster, active tenants only, at most once per ``ttl``. A
    tenant whose clusters name different customers maps to none (and is logged): sending its
    usage to either would be a guess."""
    held: dict[str, str | None] = {}
    loaded_at: list[float] = []

    def load_all() -> None:
        found: dict[str, set[str]] = {}
        with ledger.engine.connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                select(t.c.tenant, t.c.customer).where(and_(t.c.offboarded_at.is_(None), t.c.customer.is_not(None)))
            )
            for row in rows:
                found.setdefault(row.tenant, set()).add(row.customer)
        held.clear()
        for tenant, customers in found.items():
            if len(customers) > 1:
                log.warning("tenant %s names several customers (%s): none used", tenant, ", ".join(sorted(customers)))
            held[tenant] = next(iter(customers)) if len(customers) == 1 else None
        loaded_at[:] = [time.monotonic()]

    def lookup(tenant: str) -> str | None:
        if not loaded_at or time.monotonic() - loaded_at[0] > ttl.total_seconds():
            load_all()
        return held.get(tenant)

    return lookup
