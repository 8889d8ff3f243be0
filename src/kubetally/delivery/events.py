"""Ledger record → canonical delivery event.

Everything about an event is derived from the ledger row — never from the wall clock — so a
retry, a replay after a crash or a second replica produces byte-identical events, and each
backend's idempotency key (Lago ``transaction_id``, Stripe ``identifier``, Metronome
``transaction_id``, OpenMeter ``id``+``source``) deduplicates them:

* ``id`` = ``<record id>-<revision>`` (``-undo`` suffix for a reversal, see below);
* ``timestamp`` = the period start (inside the billed period for every backend);
* ``quantity`` = what the backend must *add* to its sum.

Corrections. Backends sum events, so a revision ``r`` of a record is sent as the difference to
revision ``r-1``: one *delta* event ``usage_r - usage_{r-1}`` with id ``<record>-<r>``. When a
label the destination prices or groups by (e.g. ``gpu_sku``) changed too, a delta would land
on the wrong price, so the correction is a *reversal* of the old quantity under the old labels
(``<record>-<r>-undo``, negative) plus the full new quantity under the new labels. A revision
that changes nothing the destination can see yields no event. Destinations that cannot take
negative quantities dead-letter those events with a clear reason (see each adapter).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from kubetally.periods import format_time
from kubetally.record import UsageRecord, dumps_exact, normalize


class Action(StrEnum):
    #: first measurement of a period: the full quantity
    usage = "usage"
    #: a revision: the difference to the previous revision
    delta = "delta"
    #: a revision that moved the usage to other labels: minus the previous quantity
    reversal = "reversal"


@dataclass(frozen=True)
class Event:
    """One usage event as every destination sees it before its own encoding."""

    id: str
    seq: int
    record_id: str
    revision: int
    action: Action
    quantity: Decimal
    #: the record's usage at this revision (what the period totals after this event)
    total: Decimal
    timestamp: datetime
    period_end: datetime
    period: str
    kind: str
    category: str
    item: str
    name: str
    namespace: str
    cluster: str
    project: str
    tenant: str
    unit: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def trusted(cls, *values: Any) -> Event:
        """An event from values already in canonical form, all fields in declaration order
        (the outbox's hot path: a frozen dataclass's ``__init__`` sets each field through
        ``object.__setattr__``, which is most of the cost of an event)."""
        event = object.__new__(cls)
        event.__dict__.update(zip(_FIELDS, values, strict=True))
        return event

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON shape (file destination, webhook ``data``, dead-letter detail)."""
        return {
            "id": self.id,
            "record_id": self.record_id,
            "revision": self.revision,
            "action": str(self.action),
            "tenant": self.tenant,
            "cluster": self.cluster,
            "project": self.project,
            "namespace": self.namespace,
            "name": self.name,
            "kind": self.kind,
            "category": self.category,
            "item": self.item,
            "period": self.period,
            "start": format_time(self.timestamp),
            "end": format_time(self.period_end),
            "quantity": self.quantity,
            "total": self.total,
            "unit": self.unit,
            "labels": dict(sorted(self.labels.items())),
        }

    def to_json(self) -> str:
        return dumps_exact(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        from kubetally.periods import parse_time

        return cls(
            id=data["id"],
            seq=int(data.get("seq", 0)),
            record_id=data["record_id"],
            revision=int(data["revision"]),
            action=Action(data["action"]),
            quantity=Decimal(str(data["quantity"])),
            total=Decimal(str(data["total"])),
            timestamp=parse_time(data["start"]),
            period_end=parse_time(data["end"]),
            period=data["period"],
            kind=data["kind"],
            category=data["category"],
            item=data["item"],
            name=data["name"],
            namespace=data["namespace"],
            cluster=data["cluster"],
            project=data["project"],
            tenant=data["tenant"],
            unit=data["unit"],
            labels=dict(data.get("labels", {})),
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        return cls.from_dict(json.loads(line, parse_float=Decimal))


_FIELDS = tuple(f.name for f in fields(Event))


def event_id(record_id: str, revision: int, *, reversal: bool = False) -> str:
    """Deterministic event id: stable across retries, replays and replicas (≤ 40 chars)."""
    return f"{record_id}-{revision}" + ("-undo" if reversal else "")


def _event(
    record: UsageRecord, seq: int, action: Action, quantity: Decimal, source: UsageRecord | None = None
) -> Event:
    """``source`` supplies the labels (the previous revision's, for a reversal)."""
    labels = (source or record).labels
    return Event(
        id=event_id(record.id, record.revision, reversal=action is Action.reversal),
        seq=seq,
        record_id=record.id,
        revision=record.revision,
        action=action,
        quantity=normalize(quantity),
        total=record.usage,
        timestamp=record.start,
        period_end=record.start + record.period.length,
        period=str(record.period),
        kind=record.kind,
        category=record.category,
        item=record.item,
        name=record.name,
        namespace=record.namespace,
        cluster=record.cluster,
        project=record.project,
        tenant=record.tenant,
        unit=record.unit,
        labels=dict(labels),
    )


def _visible(labels: Mapping[str, str], keys: Collection[str] | None) -> dict[str, str]:
    if keys is None:
        return dict(labels)
    return {k: v for k, v in labels.items() if k in keys}


def events_for(
    record: UsageRecord,
    seq: int,
    previous: UsageRecord | None,
    *,
    label_keys: Collection[str] | None = None,
) -> list[Event]:
    """The events that bring a backend from ``previous`` (revision r-1) to ``record``.

    ``label_keys`` are the labels the destination prices or groups by (``None``: all labels);
    a change in any of them turns a delta into reversal + full quantity.
    """
    if record.revision == 0:
        return [_event(record, seq, Action.usage, record.usage)]
    if previous is None:
        raise ValueError(
            f"record {record.id} revision {record.revision}: revision {record.revision - 1} "
            "is missing from the ledger, cannot compute the correction"
        )
    if _visible(previous.labels, label_keys) == _visible(record.labels, label_keys):
        delta = record.usage - previous.usage
        if delta == 0:
            return []
        return [_event(record, seq, Action.delta, delta)]
    events = []
    if previous.usage != 0:
        events.append(_event(record, seq, Action.reversal, -previous.usage, source=previous))
    if record.usage != 0:
        events.append(_event(record, seq, Action.usage, record.usage))
    return events
