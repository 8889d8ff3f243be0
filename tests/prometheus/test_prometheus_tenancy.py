"""``kubetally collect --prometheus`` fills a record's ``tenant`` from the tenants the Kubernetes
source recorded in the ledger (``kubernetes_tenants``); without any, the project/namespace default."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from prom_helpers import RANGE, SEED_FILES, kubetally

from kubetally.app.collect import ledger_tenant_of
from kubetally.config import load_config
from kubetally.ledger.store import Ledger
from kubetally.sources.kubernetes import registry
from kubetally.sources.kubernetes.tenancy import NAMED, Discovery, Tenant

CLUSTER = "gpu-east"
TEAM_A = Tenant(f"{NAMED}/team-a", NAMED, "yulin-2", "team-a", "yulin", "team-a", ("namespace-label",))


def register(db: Path, cluster: str, *tenants: Tenant) -> None:
    """What a ``kubetally collect --kubernetes`` or agent run leaves in the ledger."""
    with Ledger.open(str(db)) as ledger, ledger.engine.begin() as conn:
        registry.update_registry(
            conn, cluster, Discovery(list(tenants)), datetime(2026, 3, 2, 9, tzinfo=UTC), timedelta(hours=1)
        )


def tenants_by_namespace(db: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    with Ledger.open(str(db)) as ledger:
        for record in ledger.records():
            wire = json.loads(record.to_json(), parse_float=Decimal)
            found.setdefault(wire["namespace"], set()).add(wire["tenant"])
    return found


def collect(prometheus, db: Path):  # type: ignore[no-untyped-def]
    return kubetally(
        "collect",
        *[a for p in SEED_FILES for a in ("-c", str(p))],
        "--prometheus",
        prometheus.url,
        "--cluster",
        CLUSTER,
        "--db",
        db,
        *RANGE,
    )


def test_a_registered_tenant_becomes_the_records_tenant(prometheus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain = tmp_path / "plain.db"
    done = collect(prometheus, plain)
    assert done.returncode == 0, done.stderr
    default = tenants_by_namespace(plain)
    assert default["yulin-2"] == {"yulin"}  # no tenant known: the project default

    db = tmp_path / "ledger.db"
    register(db, CLUSTER, TEAM_A)
    register(db, "elsewhere", Tenant(f"{NAMED}/other", NAMED, "yulin-1", "other"))  # another cluster's
    done = collect(prometheus, db)
    assert done.returncode == 0, done.stderr
    # yulin-2 is team-a's now; every other namespace keeps its default.
    assert tenants_by_namespace(db) == default | {"yulin-2": {"tenant/team-a"}}


def test_tenant_of_only_when_the_ledger_knows_a_tenant(tmp_path: Path) -> None:
    config = load_config(SEED_FILES)
    db = tmp_path / "ledger.db"
    with Ledger.open(str(db)) as ledger:
        assert ledger_tenant_of(ledger, CLUSTER, config) is None
    register(db, CLUSTER, TEAM_A)
    with Ledger.open(str(db)) as ledger:
        assert ledger_tenant_of(ledger, "elsewhere", config) is None
        tenant_of = ledger_tenant_of(ledger, CLUSTER, config)
    assert tenant_of is not None
    assert (tenant_of("yulin-2"), tenant_of("yulin-1")) == ("tenant/team-a", None)
