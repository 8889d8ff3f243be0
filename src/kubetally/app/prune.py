"""``kubetally prune --before DATE``: archive old ledger rows to Parquet, then delete them.

Order, so that a crash at any point loses nothing and a re-run finishes the job:

1. Select every ledger row (every revision) whose period ended by ``DATE``.
2. Refuse — before writing anything — when a configured destination has not delivered one of
   them: its cursor has not passed the row, the row sits in a gap, or the row was
   dead-lettered. The message names the counts per destination.
3. Write the rows to ``<archive>/records-before-<DATE>-seq<first>-<last>.parquet`` (a temporary
   file renamed into place) and a manifest beside it with the row count, the seq range and the
   file's SHA-256. A different selection gets a different name, so an archive is never
   overwritten by one holding other rows.
4. Read the file back and check its checksum and its (id, revision) set against the
   selection; only then delete exactly those rows, in one transaction that re-checks the count.
5. Rebuild the usage rollups, so that reports and the records agree again.

A crash before step 4 leaves the rows in the ledger (a re-run writes the same archive again);
after it, nothing is left to select and a re-run says so.

Quantities are archived as their exact decimal text, times as UTC.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, select

from kubetally.config.destinations import DestinationBase
from kubetally.delivery import tables as outbox
from kubetally.errors import KubetallyError
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time, is_local_midnight

#: Ledger columns archived, in this order (every column of ``records``).
COLUMNS = tuple(c.name for c in schema.records.columns)


class PruneRefused(KubetallyError):
    """Pruning would lose data (undelivered rows, a failed archive check)."""


@dataclass
class PruneResult:
    before: datetime
    rows: int
    archive: Path | None
    manifest: Path | None
    #: Per destination: rows checked as delivered.
    checked: dict[str, int] = field(default_factory=dict)


def _selection(before: datetime) -> Any:
    t = schema.records
    return t.c.end <= before


def _undelivered(ledger: Ledger, name: str, before: datetime) -> tuple[int, int, int]:
    """(beyond the cursor, in a gap, dead-lettered) rows of the selection for destination ``name``."""
    t = schema.records
    with ledger.engine.connect() as conn:
        cursor = conn.execute(
            select(outbox.outbox_cursors.c.cursor).where(outbox.outbox_cursors.c.destination == name)
        ).scalar()
        position = -1 if cursor is None else int(cursor)
        beyond = conn.execute(select(func.count()).where(and_(_selection(before), t.c.seq > position))).scalar_one()
        g = outbox.outbox_gaps
        gaps = conn.execute(
            select(func.count())
            .select_from(t.join(g, and_(t.c.seq >= g.c.lo, t.c.seq <= g.c.hi)))
            .where(and_(g.c.destination == name, _selection(before), t.c.seq <= position))
        ).scalar_one()
        d = outbox.dead_letters
        dead = conn.execute(
            select(func.count(func.distinct(d.c.seq)))
            .select_from(t.join(d, d.c.seq == t.c.seq))
            .where(and_(d.c.destination == name, _selection(before)))
        ).scalar_one()
    return int(beyond), int(gaps), int(dead)


def _rows(ledger: Ledger, before: datetime) -> list[dict[str, Any]]:
    t = schema.records
    with ledger.engine.connect() as conn:
        result = conn.execute(select(t).where(_selection(before)).order_by(t.c.seq))
        return [dict(row._mapping) for row in result]


def _table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    def cell(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        if isinstance(value, bool | int | str) or value is None:
            return value
        return format(value, "f")  # Decimal usage: its exact text

    columns = {name: [cell(row[name]) for row in rows] for name in COLUMNS}
    return pa.table(columns)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_archive(rows: list[dict[str, Any]], folder: Path, before: datetime) -> tuple[Path, Path]:
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"records-before-{before:%Y-%m-%d}-seq{rows[0]['seq']}-{rows[-1]['seq']}"
    path, manifest = folder / f"{stem}.parquet", folder / f"{stem}.manifest.json"
    partial = folder / f".{stem}.parquet.partial"
    pq.write_table(_table(rows), partial)
    with partial.open("rb") as stream:
        os.fsync(stream.fileno())
    partial.replace(path)
    facts = {
        "before": format_time(before),
        "rows": len(rows),
        "first_seq": rows[0]["seq"],
        "last_seq": rows[-1]["seq"],
        "file": path.name,
        "sha256": _sha256(path),
        "columns": list(COLUMNS),
    }
    manifest.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return path, manifest


def _verify(path: Path, manifest: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow.parquet as pq

    facts = json.loads(manifest.read_text(encoding="utf-8"))
    if _sha256(path) != facts["sha256"]:
        raise PruneRefused(f"prune: {path.name} does not match the checksum in {manifest.name}; nothing deleted")
    table = pq.read_table(path, columns=["id", "revision", "usage"])
    archived = set(zip(table["id"].to_pylist(), table["revision"].to_pylist(), table["usage"].to_pylist(), strict=True))
    wanted = {(r["id"], r["revision"], format(r["usage"], "f")) for r in rows}
    if archived != wanted or table.num_rows != len(rows) or facts["rows"] != len(rows):
        raise PruneRefused(
            f"prune: {path.name} holds {table.num_rows} rows, not the {len(rows)} selected; nothing deleted"
        )


def destinations_to_check(ledger: Ledger, configured: list[DestinationBase]) -> list[str]:
    """Configured destinations and every outbox the ledger has: each must have delivered."""
    from kubetally.delivery.outbox import all_destinations

    return sorted({d.name for d in configured} | {c.destination for c in all_destinations(ledger)})


def prune(
    ledger: Ledger, before: datetime, archive: Path, destinations: list[str], *, dry_run: bool = False
) -> PruneResult:
    """Archive then delete every ledger row whose period ended by ``before`` (see module doc)."""
    if not is_local_midnight(before):
        raise PruneRefused(f"--before {format_time(before)}: give a date (a UTC midnight)")
    rows = _rows(ledger, before)
    result = PruneResult(before, len(rows), None, None)
    if not rows:
        return result
    problems = []
    for name in destinations:
        beyond, gaps, dead = _undelivered(ledger, name, before)
        if beyond or gaps or dead:
            problems.append(f"{name}: {beyond} not yet delivered, {gaps} in delivery gaps, {dead} dead-lettered")
        result.checked[name] = len(rows)
    if problems:
        raise PruneRefused(
            f"prune: refusing to delete {len(rows)} rows before {before:%Y-%m-%d} that a destination has not "
            f"delivered ({'; '.join(problems)}); run kubetally deliver (and requeue dead letters) first"
        )
    if dry_run:
        return result
    result.archive, result.manifest = _write_archive(rows, archive, before)
    _verify(result.archive, result.manifest, rows)
    t = schema.records
    first, last = rows[0]["seq"], rows[-1]["seq"]
    with ledger.transaction() as conn:
        gone = conn.execute(delete(t).where(and_(_selection(before), t.c.seq >= first, t.c.seq <= last))).rowcount
        if gone != len(rows):
            # Rows changed between the archive and now: roll back, archive again next time.
            raise PruneRefused(f"prune: {gone} rows matched at delete time, {len(rows)} were archived; nothing deleted")
    from kubetally.rating.rollups import rebuild_rollups

    rebuild_rollups(ledger)
    return result


def run(
    config_files: list[str] | None, db: str | None, before: datetime, archive: Path, *, dry_run: bool = False
) -> PruneResult:
    """``kubetally prune``: the ledger and destinations of the configuration (or ``--db``)."""
    from kubetally.app.settings import SettingsResolver
    from kubetally.config.loader import discover_config_files

    files = discover_config_files(config_files)
    resolver = SettingsResolver.load(files) if files else SettingsResolver()
    configured = resolver.destinations() if files else None
    with Ledger.open(resolver.db(db), migrate=False) as ledger:
        names = destinations_to_check(ledger, configured.enabled() if configured is not None else [])
        return prune(ledger, before, archive, names, dry_run=dry_run)
