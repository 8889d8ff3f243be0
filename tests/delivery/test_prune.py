"""``kubetally prune``: archive to Parquet, verify, then delete — and refuse while a destination
has not delivered. On SQLite and PostgreSQL.

The ledger: tenant ``acme``, 48 hourly records from 2026-11-01T00Z, record h holding
``h + 0.25`` GPU-h, plus a correction (revision 1) of hour 5 to 100 GPU-h. ``--before
2026-11-02`` selects the 24 rows of hours 0–23 and the correction: 25 rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from kubetally.app.prune import PruneRefused, destinations_to_check, prune
from kubetally.config.destinations import one_off_config
from kubetally.delivery.engine import deliver_once
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import parse_time
from kubetally.rating.pricebook import PriceBook
from kubetally.reports import build_report

from .helpers import FAST, record

BEFORE = parse_time("2026-11-02")
PRICES = 'currency: USD\nprices:\n  - {category: GPU, item: gpu_hours, price: "2.00"}\n'


def _rows(ledger: Ledger) -> set[tuple[str, int, str]]:
    t = schema.records
    with ledger.engine.connect() as conn:
        return {(r.id, r.revision, format(r.usage, "f")) for r in conn.execute(select(t.c.id, t.c.revision, t.c.usage))}


def _count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.records)).scalar_one())


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    ledger.write([record("acme", "gpu_hours", h, Decimal(h) + Decimal("0.25")) for h in range(48)])
    ledger.write([record("acme", "gpu_hours", 5, "100")])  # a correction: revision 1 of hour 5
    assert _count(ledger) == 49
    return ledger


def test_refuses_while_undelivered_then_archives_exactly_what_it_deletes(filled: Ledger, tmp_path: Path) -> None:
    ledger = filled
    dest = one_off_config("file", path=str(tmp_path / "events.jsonl"), name="file")
    names = destinations_to_check(ledger, [dest])
    assert names == ["file"]
    archive = tmp_path / "archive"
    with pytest.raises(PruneRefused) as refused:
        prune(ledger, BEFORE, archive, names)
    # nothing delivered yet: the 24 first-day rows and the correction are all beyond the cursor
    assert str(refused.value).startswith(
        "prune: refusing to delete 25 rows before 2026-11-02 that a destination has not delivered "
        "(file: 25 not yet delivered, 0 in delivery gaps, 0 dead-lettered)"
    )
    assert _count(ledger) == 49 and not archive.exists()

    summary = deliver_once(ledger, [dest], policy=FAST)
    assert summary.ok
    (tmp_path / "prices.yaml").write_text(PRICES)
    pricebook = PriceBook.load(tmp_path / "prices.yaml")
    day2 = (BEFORE, BEFORE + timedelta(days=1))
    kept_before = build_report(ledger, pricebook, None, *day2, by="tenant", per="day")
    # 2026-11-02: hours 24..47 hold sum(h) + 24 × 0.25 = (24+47)·24/2 + 6 = 852 + 6 = 858 GPU-h → 1716.00
    assert kept_before.total == 1_716_000_000

    everything = _rows(ledger)
    result = prune(ledger, BEFORE, archive, names)
    assert result.rows == 25
    assert result.archive is not None and result.manifest is not None
    assert result.archive.name.startswith("records-before-2026-11-02-seq") and result.archive.suffix == ".parquet"
    # The Parquet file holds exactly the rows that left the ledger.
    table = pq.read_table(result.archive)
    archived = set(zip(table["id"].to_pylist(), table["revision"].to_pylist(), table["usage"].to_pylist(), strict=True))
    remaining = _rows(ledger)
    assert archived == everything - remaining and len(archived) == table.num_rows == 25
    assert remaining <= everything and _count(ledger) == 24
    # hour 5's two revisions are both archived, with exact decimal text
    assert sorted(u for (_, rev, u) in archived if rev == 1) == ["100"]
    assert sum(Decimal(u) for (_, rev, u) in archived if rev == 0) == Decimal(276) + 24 * Decimal("0.25")  # 0+…+23
    manifest = json.loads(result.manifest.read_text())
    assert manifest["rows"] == 25 and manifest["file"] == result.archive.name and len(manifest["sha256"]) == 64

    # Reports of the remaining window are unchanged, to the micro-unit.
    kept_after = build_report(ledger, pricebook, None, *day2, by="tenant", per="day")
    assert kept_after.total == kept_before.total == 1_716_000_000

    # Re-running finds nothing more and leaves the archive alone.
    files = sorted(p.name for p in archive.iterdir())
    again = prune(ledger, BEFORE, archive, names)
    assert again.rows == 0 and sorted(p.name for p in archive.iterdir()) == files


def test_a_dead_letter_blocks_pruning_and_the_cli_says_so_in_one_line(filled: Ledger, tmp_path: Path) -> None:
    ledger = filled
    dest = one_off_config("file", path=str(tmp_path / "events.jsonl"), name="file")
    assert deliver_once(ledger, [dest], policy=FAST).ok
    from kubetally.delivery import tables

    t = schema.records
    with ledger.transaction() as conn:
        row = conn.execute(select(t).where(t.c.revision == 1)).one()
        now = parse_time("2026-11-03")
        conn.execute(
            tables.dead_letters.insert().values(
                destination="file",
                event_id="e-1",
                seq=row.seq,
                record_id=row.id,
                revision=1,
                tenant="acme",
                item="gpu_hours",
                quantity=Decimal(100),
                timestamp=row.start,
                status=400,
                reason="rejected",
                state="dead",
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )
    url = str(ledger.engine.url.render_as_string(hide_password=False))
    db = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    cli = [sys.executable, "-c", "from kubetally.cli.main import app; app()"]
    done = subprocess.run(
        [*cli, "prune", "--before", "2026-11-02", "--db", db, "--archive", str(tmp_path / "archive")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).parents[2] / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert (
        "refusing to delete 25 rows" in line
        and "file: 0 not yet delivered, 0 in delivery gaps, 1 dead-lettered" in (line)
    )
    assert _count(ledger) == 49 and not (tmp_path / "archive").exists()
