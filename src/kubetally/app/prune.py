"""``kubetally prune --before DATE``: archive old ledger rows to Parquet, then delete them.

Order, so that a crash at any point loses nothing and a re-run finishes the job:

1. Select every ledger row (every revision) whose period ended by ``DATE``.
2. Refuse — before writing anything — when a configured destination has not delivered one of
   them: its cursor has not passed the row, the row sits in a gap, or the row was
   dead-lettered. The message names the counts per destination.
3. Write the rows to ``<archive>/records-before-<DATE>-seq<first>-<last>.parquet`` (a temporary
   file renamed into place) and, with a price book, the same range as FOCUS rows to
   ``focus-before-<DATE>-seq<first>-<last>.parquet`` (``kubetally export focus --per hour
   --rows resource`` from the first record's hour to ``DATE``, in ``billing.timezone``, unpriced
   usage left out and listed), and a manifest beside them with each file's row count and
   SHA-256, the seq range and the FOCUS ``BilledCost`` total. A different selection gets a
   different name, so an archive is never overwritten by one holding other rows.
4. Read the files back and check their checksums, the records' (id, revision) set against the
   selection and the FOCUS row count and cost total; only then delete exactly those rows, in
   one transaction that re-checks the count.
5. Rebuild the usage rollups, so that reports and the records agree again.

A crash before step 4 leaves the rows in the ledger (a re-run writes the same archive again);
after it, nothing is left to select and a re-run says so.

Quantities are archived as their exact decimal text, times as UTC.

The FOCUS rows are the *current* revision of each record (the raw file holds every revision);
graduated tiers count from the local month start, so a range that starts inside a month whose
beginning was pruned before is rated without that context (prune on month boundaries).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, select

from kubetally.config.destinations import DestinationBase
from kubetally.delivery import tables as outbox
from kubetally.errors import KubetallyError
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to, format_time, is_local_midnight, zone_name

if TYPE_CHECKING:
    from kubetally.config.loader import Config
    from kubetally.rating.pricebook import PriceBook

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
    #: The FOCUS rows of the range (None without a price book) and how many.
    focus_archive: Path | None = None
    focus_rows: int = 0
    focus_billed: Decimal = Decimal(0)


@dataclass
class FocusInputs:
    """What rates the FOCUS archive: the price book and config of ``kubetally export focus``."""

    pricebook: PriceBook
    config: Config | None


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


def _write_focus(
    ledger: Ledger, rows: list[dict[str, Any]], folder: Path, before: datetime, focus: FocusInputs
) -> tuple[Path, dict[str, Any]]:
    """The range as FOCUS rows (hourly charge periods, resource grain) and its manifest facts."""
    from kubetally.reports.focus import export_focus

    start = floor_to(min(r["start"] for r in rows).astimezone(UTC), timedelta(hours=1))
    path = folder / f"focus-before-{before:%Y-%m-%d}-seq{rows[0]['seq']}-{rows[-1]['seq']}.parquet"
    result = export_focus(
        ledger, focus.pricebook, focus.config, start, before, path, fmt="parquet", grain="hour", rows="resource",
        skip_unpriced=True,
    )  # fmt: skip
    with path.open("rb") as stream:
        os.fsync(stream.fileno())
    zone = focus.config.settings.billing.zone if focus.config is not None else UTC
    facts = {
        "file": path.name,
        "rows": result.rows,
        "sha256": _sha256(path),
        "from": format_time(start),
        "to": format_time(before),
        "timezone": zone_name(zone),
        "currency": focus.pricebook.currency,
        "billed_cost": format(Decimal(result.billed_micros).scaleb(-6), "f"),
        "skipped_unpriced": {k: format(v, "f") for k, v in sorted(result.skipped.items())},
    }
    return path, facts


def _write_archive(
    ledger: Ledger, rows: list[dict[str, Any]], folder: Path, before: datetime, focus: FocusInputs | None
) -> tuple[Path, Path, Path | None]:
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"records-before-{before:%Y-%m-%d}-seq{rows[0]['seq']}-{rows[-1]['seq']}"
    path, manifest = folder / f"{stem}.parquet", folder / f"{stem}.manifest.json"
    focus_path, focus_facts = _write_focus(ledger, rows, folder, before, focus) if focus else (None, None)
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
        "focus": focus_facts,
    }
    manifest.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return path, manifest, focus_path


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
    focus = facts.get("focus")
    if focus is not None:
        focus_path = path.with_name(focus["file"])
        if _sha256(focus_path) != focus["sha256"]:
            raise PruneRefused(
                f"prune: {focus_path.name} does not match the checksum in {manifest.name}; nothing deleted"
            )
        costs = pq.read_table(focus_path, columns=["BilledCost"])["BilledCost"].to_pylist()
        billed = sum(costs, Decimal(0))
        if len(costs) != focus["rows"] or billed != Decimal(focus["billed_cost"]):
            raise PruneRefused(
                f"prune: {focus_path.name} holds {len(costs)} rows billing {billed}, not the {focus['rows']} rows "
                f"billing {focus['billed_cost']} of {manifest.name}; nothing deleted"
            )


def destinations_to_check(ledger: Ledger, configured: list[DestinationBase]) -> list[str]:
    """Configured destinations and every outbox the ledger has: each must have delivered."""
    from kubetally.delivery.outbox import all_destinations

    return sorted({d.name for d in configured} | {c.destination for c in all_destinations(ledger)})


def prune(
    ledger: Ledger,
    before: datetime,
    archive: Path,
    destinations: list[str],
    *,
    dry_run: bool = False,
    focus: FocusInputs | None = None,
) -> PruneResult:
    """Archive then delete every ledger row whose period ended by ``before`` (see module doc);
    with ``focus``, the range is archived as FOCUS rows too."""
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
    result.archive, result.manifest, result.focus_archive = _write_archive(ledger, rows, archive, before, focus)
    _verify(result.archive, result.manifest, rows)
    focus_facts = json.loads(result.manifest.read_text(encoding="utf-8"))["focus"]
    if focus_facts is not None:
        result.focus_rows, result.focus_billed = focus_facts["rows"], Decimal(focus_facts["billed_cost"])
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
    config_files: list[str] | None,
    db: str | None,
    before: datetime,
    archive: Path,
    *,
    dry_run: bool = False,
    prices: str | None = None,
) -> PruneResult:
    """``kubetally prune``: the ledger and destinations of the configuration (or ``--db``); the
    FOCUS archive is rated with ``--prices`` or the config's price book (none: raw rows only)."""
    from kubetally.app.settings import SettingsResolver
    from kubetally.config.loader import discover_config_files
    from kubetally.rating.resolve import resolve_pricebook

    files = discover_config_files(config_files)
    resolver = SettingsResolver.load(files) if files else SettingsResolver()
    configured = resolver.destinations() if files else None
    config = resolver.config if files else None
    focus = None
    if prices is not None or (config is not None and config.pricing is not None):
        focus = FocusInputs(resolve_pricebook(prices, config)[0], config)
    with Ledger.open(resolver.db(db), migrate=False) as ledger:
        names = destinations_to_check(ledger, configured.enabled() if configured is not None else [])
        return prune(ledger, before, archive, names, dry_run=dry_run, focus=focus)
