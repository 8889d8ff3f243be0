"""Record → event: deterministic ids and timestamps, deltas and reversals for revisions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kubetally.delivery.events import Action, Event, event_id, events_for

from .helpers import START, record


def test_first_measurement_is_one_usage_event_at_period_start() -> None:
    rec = record("acme", "gpu_hours", 3, "1.250000001", sku="H100")
    [event] = events_for(rec, 7, None)
    assert event.id == f"{rec.id}-0"
    assert event.action is Action.usage
    assert event.quantity == Decimal("1.250000001")
    assert event.timestamp == rec.start
    assert event.period_end == rec.start.replace(hour=4)
    assert event.seq == 7
    assert event.labels == {"gpu_sku": "H100"}


def test_same_record_gives_byte_identical_events() -> None:
    a = events_for(record("acme", "gpu_hours", 1, "2.5"), 1, None)
    b = events_for(record("acme", "gpu_hours", 1, "2.5"), 1, None)
    assert [e.to_json() for e in a] == [e.to_json() for e in b]


def test_revision_is_a_delta_with_its_own_id() -> None:
    first = record("acme", "gpu_hours", 0, "2.5", sku="H100")
    second = first.model_copy(update={"usage": Decimal("2.75"), "revision": 1})
    third = first.model_copy(update={"usage": Decimal("1"), "revision": 2})
    [up] = events_for(second, 2, first, label_keys=("gpu_sku",))
    [down] = events_for(third, 3, second, label_keys=("gpu_sku",))
    assert (up.id, up.action, up.quantity, up.total) == (
        f"{first.id}-1",
        Action.delta,
        Decimal("0.25"),
        Decimal("2.75"),
    )
    assert (down.id, down.quantity, down.total) == (f"{first.id}-2", Decimal("-1.75"), Decimal("1"))
    assert first.usage + up.quantity + down.quantity == third.usage


def test_revision_changing_a_priced_label_is_reversal_plus_new_quantity() -> None:
    first = record("acme", "gpu_hours", 0, "3", sku="H100")
    moved = first.model_copy(update={"usage": Decimal("3.5"), "revision": 1, "labels": {"gpu_sku": "A100"}})
    undo, new = events_for(moved, 2, first, label_keys=("gpu_sku",))
    assert (undo.id, undo.action, undo.quantity, undo.labels) == (
        f"{first.id}-1-undo",
        Action.reversal,
        Decimal("-3"),
        {"gpu_sku": "H100"},
    )
    assert (new.id, new.action, new.quantity, new.labels) == (
        f"{first.id}-1",
        Action.usage,
        Decimal("3.5"),
        {"gpu_sku": "A100"},
    )


def test_label_outside_the_destination_keys_keeps_a_delta() -> None:
    first = record("acme", "gpu_hours", 0, "3", sku="H100")
    relabelled = first.model_copy(update={"revision": 1, "labels": {"gpu_sku": "H100", "team": "x"}})
    assert events_for(relabelled, 2, first, label_keys=("gpu_sku",)) == []
    # a destination that shows every label (webhook, file) gets reversal + new
    assert [e.action for e in events_for(relabelled, 2, first, label_keys=None)] == [Action.reversal, Action.usage]


def test_missing_previous_revision_is_an_error_naming_the_record() -> None:
    rec = record("acme", "gpu_hours", 0, "3").model_copy(update={"revision": 2})
    with pytest.raises(ValueError, match=f"record {rec.id} revision 2: revision 1 is missing"):
        events_for(rec, 1, None)


def test_event_json_round_trip_keeps_exact_decimals() -> None:
    [event] = events_for(record("acme", "gpu_hours", 0, "0.000277778"), 1, None)
    again = Event.from_json(event.to_json())
    assert again.quantity == Decimal("0.000277778")
    assert again.to_json() == event.to_json()
    assert '"quantity":0.000277778' in event.to_json()


def test_event_id_format() -> None:
    assert event_id("ab" * 16, 0) == "ab" * 16 + "-0"
    assert event_id("ab" * 16, 3, reversal=True) == "ab" * 16 + "-3-undo"
    assert START.isoformat() == "2026-11-01T00:00:00+00:00"
