"""The ledger on SQLite and on a real PostgreSQL server (fixture ``ledger`` runs both)."""

from decimal import Decimal

import pytest
from sqlalchemy.pool import NullPool

from kubetally.ledger.store import Ledger, Watermark
from kubetally.periods import Period, PeriodKind, parse_time
from kubetally.record import UsageRecord

H10 = Period(parse_time("2026-11-01T10:00:00Z"), parse_time("2026-11-01T11:00:00Z"))
H11 = Period(parse_time("2026-11-01T11:00:00Z"), parse_time("2026-11-01T12:00:00Z"))


def rec(usage: str, name: str = "gpu-0", period: Period = H10, labels: dict | None = None) -> UsageRecord:
    return UsageRecord.measure(
        cluster="c1",
        kind="Vgpu",
        category="VgpuCore",
        item="VgpuCoreUsed",
        name=name,
        namespace="team-a",
        tenant="namespace/team-a",
        period_kind=PeriodKind.hourly,
        period=period,
        usage=usage,
        labels=labels,
    )


def test_same_record_twice_is_a_no_op(ledger: Ledger) -> None:
    first = ledger.write([rec("1.5"), rec("2", name="gpu-1")])
    again = ledger.write([rec("1.5"), rec("2", name="gpu-1")])
    assert (first.inserted, first.revised, first.unchanged) == (2, 0, 0)
    assert (again.inserted, again.revised, again.unchanged) == (0, 0, 2)
    assert [r.usage for r in ledger.records()] == [Decimal("1.5"), Decimal("2")]


def test_changed_quantity_is_a_visible_revision(ledger: Ledger) -> None:
    ledger.write([rec("1.5")])
    result = ledger.write([rec("1.75")])
    assert (result.inserted, result.revised) == (0, 1)
    current = list(ledger.records())
    assert [(r.usage, r.revision) for r in current] == [(Decimal("1.75"), 1)]
    history = list(ledger.records(history=True))
    assert [(r.usage, r.revision) for r in history] == [(Decimal("1.5"), 0), (Decimal("1.75"), 1)]
    assert history[0].id == history[1].id
    # Back to the first value is a correction too, not a silent no-op.
    assert ledger.write([rec("1.5")]).revised == 1
    assert [r.revision for r in ledger.records(history=True)] == [0, 1, 2]


def test_enrichment_label_change_is_a_revision(ledger: Ledger) -> None:
    ledger.write([rec("3")])
    assert ledger.write([rec("3", labels={"modelName": "Tesla T4"})]).revised == 1
    assert next(iter(ledger.records())).labels == {"modelName": "Tesla T4"}


def test_exact_decimal_round_trip(ledger: Ledger) -> None:
    value = "123456789012.123456789012"
    ledger.write([rec(value)])
    assert next(iter(ledger.records())).usage == Decimal(value)


def test_changes_cursor_sees_every_revision_in_order(ledger: Ledger) -> None:
    ledger.write([rec("1"), rec("5", period=H11)])
    ledger.write([rec("2")])
    changes = ledger.changes(0)
    assert [(r.start.hour, r.usage, r.revision) for _, r in changes] == [
        (10, Decimal("1"), 0),
        (11, Decimal("5"), 0),
        (10, Decimal("2"), 1),
    ]
    seqs = [seq for seq, _ in changes]
    assert seqs == sorted(seqs)
    assert ledger.changes(seqs[1]) == changes[2:]


def test_filters(ledger: Ledger) -> None:
    ledger.write([rec("1"), rec("5", period=H11), rec("7", name="gpu-9", period=H11)])
    got = ledger.records(start=H11.start, end=H11.end)
    assert sorted(r.usage for r in got) == [Decimal("5"), Decimal("7")]
    assert list(ledger.records(namespace="nope")) == []
    assert len(list(ledger.records(tenant="namespace/team-a"))) == 3


def test_watermark_moves_forward_only_and_commits_with_records(ledger: Ledger) -> None:
    mark = Watermark("prometheus", "c1", "VgpuCoreUsed", H11.end)
    ledger.write([rec("1")], watermarks=[mark])
    assert ledger.watermark("prometheus", "c1", "VgpuCoreUsed") == H11.end
    ledger.set_watermark(Watermark("prometheus", "c1", "VgpuCoreUsed", H10.end))
    assert ledger.watermark("prometheus", "c1", "VgpuCoreUsed") == H11.end
    assert ledger.watermark("prometheus", "c2", "VgpuCoreUsed") is None


def test_reopen_keeps_data_and_migrations_are_idempotent(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as first:
        first.write([rec("4")])
    with Ledger.open(ledger_url) as second:
        assert [r.usage for r in second.records()] == [Decimal("4")]


def test_the_revision_check_uses_the_unique_id_index(ledger: Ledger) -> None:
    """The duplicate/revision check looks records up by id on the (id, revision) index, on both
    databases, also while the ledger grows faster than PostgreSQL's statistics follow (no
    ANALYZE here: the planner believes the table is tiny and would scan it sequentially) and with
    many current rows of other periods (SQLite once picked the (current, start) index)."""
    from datetime import timedelta

    from sqlalchemy import text

    start = parse_time("2026-11-01T00:00:00Z")
    for hour in range(4):
        period = Period(start + timedelta(hours=hour), start + timedelta(hours=hour + 1))
        ledger.write([rec(str(i), name=f"gpu-{i}", period=period) for i in range(1500)])
    ids = [rec("1", name=f"gpu-{i}", period=H10).id for i in range(600)]  # two chunks
    plan = "\n".join(ledger.lookup_plan(ids))
    if ledger.dialect == "sqlite":
        # SQLite names the index of UNIQUE (id, revision) itself; check that it is that one.
        with ledger.engine.connect() as conn:
            index = conn.execute(text("SELECT name FROM pragma_index_list('records') WHERE origin = 'u'")).scalar_one()
            assert [c for c in conn.execute(text(f"SELECT name FROM pragma_index_info('{index}')")).scalars()] == [
                "id",
                "revision",
            ]
        assert plan.count(f"SEARCH records USING INDEX {index} (id=?)") == 2, plan
    else:
        assert "Seq Scan" not in plan and plan.count("Index Cond: ((id)::text = ANY") == 2, plan
        assert plan.count("uq_records_id_revision") == 2, plan
    # The setting is put back: later statements of a transaction plan as usual.
    if ledger.dialect == "postgresql":
        with ledger.engine.connect() as conn:
            assert conn.execute(text("SHOW enable_seqscan")).scalar_one() == "on"


@pytest.mark.postgres
def test_concurrent_migrations_wait_for_each_other(pg_url: str) -> None:
    """A replica that starts while another migrates waits for it, then finds the schema current
    (without the lock both would run the DDL and the second would fail half-way)."""
    import threading

    from sqlalchemy import create_engine, text

    from kubetally.ledger.migrate import MIGRATION_LOCK

    holder = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=NullPool)
    opened: list[object] = []
    with holder.connect() as conn, conn.begin():
        # Stands for a migration in progress: the same transaction-scoped lock, held.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        worker = threading.Thread(target=lambda: opened.append(Ledger.open(pg_url)))
        worker.start()
        worker.join(timeout=2)
        assert worker.is_alive() and not opened  # waiting for the lock, not migrating beside it
    worker.join(timeout=60)
    assert not worker.is_alive() and len(opened) == 1
    opened[0].close()  # type: ignore[attr-defined]
    holder.dispose()
    with Ledger.open(pg_url, migrate=False) as ledger:  # the schema is current
        assert ledger is not None
