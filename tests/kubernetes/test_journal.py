"""The lifetime journal survives a failed transaction: nothing observed is lost or doubled."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from k8s_builders import node, t
from sqlalchemy import func, select

from kubetally.config.kubernetes import KubernetesConfig
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.sources.kubernetes.session import MeteringSession
from kubetally.sources.kubernetes.tables import segments
from kubetally.sources.kubernetes.tenancy import Tenant


def test_a_rolled_back_flush_is_written_again_exactly_once(tmp_path: Path) -> None:
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        session = MeteringSession(
            ledger=ledger,
            cluster="c",
            config=KubernetesConfig(),
            settle=timedelta(minutes=2),
            max_backfill=timedelta(days=1),
        )
        session.begin()
        session._set_resolver([Tenant("namespace/research", "namespace", "research", "research")], None)
        dedicated = node("n1", labels={"kubetally.io/tenant": "namespace.research"}, created=t("10:00:00"))
        dedicated["metadata"]["uid"] = "0b6e7c1e-1d3a-4c8e-9a53-6f0c8d2a7e11"
        session.event("Node", "ADDED", dedicated, parse_time(t("10:00:00")))
        with pytest.raises(RuntimeError), session.journal_transaction() as conn:
            session.tracker.flush(conn)
            raise RuntimeError("database went away before the commit")
        session.flush()
        session.flush()
        with ledger.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(segments)).scalar_one()
        assert rows == 1
        # Closing it later updates that one row.
        session.event("Node", "DELETED", dedicated, parse_time(t("10:30:00")))
        session.flush()
        with ledger.engine.connect() as conn:
            ended = conn.execute(select(segments.c.started_at, segments.c.ended_at)).all()
        assert ended == [(parse_time(t("10:00:00")), parse_time(t("10:30:00")))]
