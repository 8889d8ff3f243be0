"""Reconciliation: does what the billing backend will invoice equal the ledger?

Three columns per tenant and item over a range of period starts:

* **ledger** — the current revision of every record the destination is meant to get;
* **acknowledged** — what the outbox says the backend accepted: the events of every revision
  at or below the cursor (outside gaps), minus the dead letters;
* **backend** — what the backend itself reports through its own usage API, where it has one
  (:meth:`~kubetally.delivery.destinations.base.HttpDestination.reported_usage`).

Ledger and outbox are exact Decimals and must be equal; the backend may differ by the rounding
of its units (Stripe's integer meter values, OpenMeter's doubles) and by nothing more. Every
difference is listed, and where one acknowledged event explains it (a lost event is missing
exactly its quantity, a double-counted one adds exactly its quantity) that event is named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from kubetally.config.destinations import DestinationBase
from kubetally.delivery import tables
from kubetally.delivery.destinations.base import BackendUsage
from kubetally.delivery.events import Event, events_for
from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger
from kubetally.periods import format_time
from kubetally.record import PROVIDER_KINDS, normalize

Key = tuple[str, str]
_SHOWN = Decimal("1e-9")


@dataclass
class Cell:
    """One tenant and item: the three columns and what went into them."""

    tenant: str
    item: str
    unit: str
    ledger: Decimal = Decimal(0)
    acknowledged: Decimal = Decimal(0)
    backend: Decimal | None = None
    #: records (not revisions) in the cell: each may be rounded once by the backend
    records: int = 0
    #: acknowledged events with their quantities, to name the one behind a difference
    events: list[tuple[str, Decimal]] = field(default_factory=list)
    #: events of the ledger the backend was not told about (pending or dead-lettered)
    unacknowledged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Difference:
    tenant: str
    item: str
    unit: str
    #: ``outbox`` (ledger vs acknowledged) or ``backend`` (acknowledged vs backend)
    between: str
    expected: Decimal
    got: Decimal
    tolerance: Decimal
    #: events that explain it, each with what happened to it
    events: tuple[str, ...] = ()

    def describe(self) -> str:
        gap = self.got - self.expected
        amount = f"{_fmt(abs(gap))} {self.unit}".strip()
        if self.between == "outbox":
            what = f"outbox acknowledged {_fmt(self.got)}, ledger has {_fmt(self.expected)}: {amount} not acknowledged"
        elif gap < 0:
            what = f"backend reports {_fmt(self.got)}, outbox acknowledged {_fmt(self.expected)}: {amount} missing"
        else:
            what = f"backend reports {_fmt(self.got)}, outbox acknowledged {_fmt(self.expected)}: {amount} too much"
        if self.tolerance >= _SHOWN:  # a float's last bits are noise, not worth a word
            what += f" (rounding allows {_fmt(self.tolerance)})"
        if self.events:
            what += "; " + ", ".join(self.events)
        return f"{self.tenant} {self.item}: {what}"


@dataclass
class Reconciliation:
    destination: str
    kind: str
    start: datetime
    end: datetime
    cells: list[Cell]
    differences: list[Difference]
    #: why there is no backend column (None: the backend said)
    backend_unavailable: str | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "kind": self.kind,
            "start": format_time(self.start),
            "end": format_time(self.end),
            "backend_unavailable": self.backend_unavailable,
            "rows": [
                {
                    "tenant": c.tenant,
                    "item": c.item,
                    "unit": c.unit,
                    "ledger": c.ledger,
                    "acknowledged": c.acknowledged,
                    "backend": c.backend,
                }
                for c in self.cells
            ],
            "differences": [d.describe() for d in self.differences],
        }


def _fmt(value: Decimal) -> str:
    return format(normalize(value), "f")


def _selected(config: DestinationBase | None, kind: str, item: str, start: datetime) -> bool:
    """The engine's own selection: items the destination is limited to, and ``since``."""
    if kind in PROVIDER_KINDS and not (config is not None and config.provider_records):
        return False
    if config is None:
        return True
    if config.items is not None and item not in config.items:
        return False
    return not (config.since is not None and start < config.since)


def _dead_events(ledger: Ledger, destination: str) -> set[str]:
    from sqlalchemy import select

    d = tables.dead_letters
    with ledger.engine.connect() as conn:
        return set(conn.execute(select(d.c.event_id).where(d.c.destination == destination)).scalars())


def ledger_and_outbox(
    ledger: Ledger,
    destination: str,
    start: datetime,
    end: datetime,
    *,
    config: DestinationBase | None = None,
    label_keys: Any = None,
) -> dict[Key, Cell]:
    """The ledger and acknowledged columns, per (tenant, item)."""
    outbox = Outbox(ledger, destination)
    rows, done = outbox.history(start, end)
    dead = _dead_events(ledger, destination)
    cells: dict[Key, Cell] = {}
    latest: dict[str, int] = {}
    for pending in rows:
        latest[pending.record.id] = max(latest.get(pending.record.id, -1), pending.record.revision)
    for pending in rows:
        rec = pending.record
        if not _selected(config, rec.kind, rec.item, rec.start):
            continue
        cell = cells.setdefault((rec.tenant, rec.item), Cell(rec.tenant, rec.item, rec.unit))
        if rec.revision == latest[rec.id]:
            cell.ledger += rec.usage
            cell.records += 1
        try:
            events: list[Event] = events_for(rec, pending.seq, pending.previous, label_keys=label_keys)
        except ValueError:  # an earlier revision is outside the range or gone: compare totals
            events = events_for(rec.model_copy(update={"revision": 0}), pending.seq, None)
        for event in events:
            if done(pending.seq) and event.id not in dead:
                cell.acknowledged += event.quantity
                cell.events.append((event.id, event.quantity))
            else:
                state = "dead-lettered" if event.id in dead else "pending"
                cell.unacknowledged.append(f"event {event.id} ({_fmt(event.quantity)}) {state}")
    return cells


def _explain(cell: Cell, gap: Decimal, usage: BackendUsage) -> tuple[str, ...]:
    """Acknowledged events whose quantity alone accounts for ``gap`` (negative: missing),
    within the rounding of that one event."""
    what = "acknowledged but not counted by the backend" if gap < 0 else "counted twice by the backend"
    return tuple(
        f"event {event_id} ({_fmt(quantity)}) {what}"
        for event_id, quantity in cell.events
        if quantity and abs(abs(quantity) - abs(gap)) <= usage.tolerance(cell.item, 1, quantity)
    )


def compare(cells: Mapping[Key, Cell], usage: BackendUsage | None) -> list[Difference]:
    """Every difference, ledger vs outbox first, then outbox vs backend."""
    out: list[Difference] = []
    backend = usage is not None and usage.unavailable is None
    keys = set(cells)
    if backend:
        assert usage is not None
        keys |= set(usage.totals)
    for key in sorted(keys):
        cell = cells.get(key) or Cell(key[0], key[1], "")
        if cell.ledger != cell.acknowledged:
            out.append(
                Difference(
                    cell.tenant,
                    cell.item,
                    cell.unit,
                    "outbox",
                    cell.ledger,
                    cell.acknowledged,
                    Decimal(0),
                    tuple(cell.unacknowledged),
                )
            )
        if not backend:
            continue
        assert usage is not None
        cell.backend = usage.totals.get(key, Decimal(0))
        tolerance = usage.tolerance(cell.item, max(cell.records, 1), cell.acknowledged)
        gap = cell.backend - cell.acknowledged
        if abs(gap) > tolerance:
            out.append(
                Difference(
                    cell.tenant,
                    cell.item,
                    cell.unit,
                    "backend",
                    cell.acknowledged,
                    cell.backend,
                    tolerance,
                    _explain(cell, gap, usage),
                )
            )
    return out


def reconcile(
    ledger: Ledger,
    destination: Any,
    start: datetime,
    end: datetime,
    *,
    config: DestinationBase | None = None,
) -> Reconciliation:
    """Reconcile one built destination adapter (the caller closes it) over ``[start, end)``."""
    outbox = Outbox(ledger, destination.name)
    destination.bind(outbox)
    cells = ledger_and_outbox(
        ledger, destination.name, start, end, config=config, label_keys=getattr(destination, "label_keys", None)
    )
    reader = getattr(destination, "reported_usage", None)
    if reader is None:
        usage = BackendUsage(unavailable=f"{destination.kind} has no usage read")
    else:
        usage = reader(start, end, sorted({t for t, _ in cells}), sorted({i for _, i in cells}))
    differences = compare(cells, usage)
    ordered = [cells[k] for k in sorted(cells)]
    ordered += [Cell(k[0], k[1], "", backend=usage.totals[k]) for k in sorted(set(usage.totals) - set(cells))]
    return Reconciliation(destination.name, destination.kind, start, end, ordered, differences, usage.unavailable)
