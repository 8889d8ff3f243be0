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


def test_billed_json_is_the_json_dumps_it_always_was() -> None:
    """The journal's billed JSON is written piece by piece for speed, but its bytes are hashed
    into each segment's signature: it must equal ``json.dumps(..., sort_keys=True,
    separators=(",", ":"))`` (ASCII-escaped) for any text, including quotes, backslashes,
    control characters, non-ASCII, duplicate label keys and meters shared between objects."""
    import random
    from fractions import Fraction

    from kubetally.sources.kubernetes.lifetimes import Billed, Meter

    rng = random.Random(11)
    alphabet = 'ab"\\\n\t\x01/é中🙂 -_.:{}[],'

    def word() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))

    def pairs() -> tuple[tuple[str, str], ...]:
        return tuple((word(), word()) for _ in range(rng.randrange(0, 4)))

    shared = tuple(
        Meter(word(), word(), Fraction(rng.randrange(1, 99), rng.randrange(1, 9)), pairs(), rng.random() < 0.5, pairs())
        for _ in range(3)
    )
    for _ in range(1000):
        meters = (
            shared
            if rng.random() < 0.5
            else tuple(
                Meter(word(), word(), Fraction(rng.randrange(0, 9), 7), pairs(), False, pairs())
                for _ in range(rng.randrange(0, 3))
            )
        )
        billed = Billed(word(), word(), word(), word(), word(), meters, pairs())
        assert billed.to_json() == billed.reference_json()
    # Not strings (never made by the meter, but readable from an old journal): json.dumps' way.
    odd = Billed("Pod", "p", "ns", "t", "", (), (("gpus", 2),))  # type: ignore[arg-type]
    assert (
        odd.to_json()
        == odd.reference_json()
        == ('{"kind":"Pod","labels":{"gpus":2},"meters":[],"name":"p","namespace":"ns","project":"","tenant":"t"}')
    )
