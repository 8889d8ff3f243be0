"""Metronome, OpenMeter, webhook and file destinations against their contracts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from kubetally.config.destinations import FileConfig, MetronomeConfig, OpenMeterConfig, WebhookConfig
from kubetally.delivery import signing
from kubetally.delivery.destinations.base import ItemSpec
from kubetally.delivery.engine import deliver_once
from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to

from .helpers import FAST, fleet, ledger_totals, record, sum_by

RECENT = floor_to(datetime.now(UTC) - timedelta(days=2), timedelta(days=1))
FASTER = {"retry_initial": timedelta(milliseconds=20)}


def run(ledger: Ledger, config: Any, environ: dict[str, str], **kwargs: Any) -> Any:
    return deliver_once(ledger, [config], environ=environ, policy=FAST, **kwargs).destinations[0]


# -- Metronome -------------------------------------------------------------------------------------


def test_metronome_ingest_customers_and_metrics(sqlite_ledger: Ledger, metronome: Any) -> None:
    recs = fleet(3, 4, start=RECENT)
    old = record("t0", "gpu_hours", 0, "1", start=RECENT - timedelta(days=40))
    sqlite_ledger.write([*recs, old])
    config = MetronomeConfig(type="metronome", url=metronome.base_url, batch_size=10, **FASTER)
    environ = {"METRONOME_API_TOKEN": metronome.api_key}
    result = run(sqlite_ledger, config, environ, items=[ItemSpec("gpu_hours", display_name="GPU hours")])
    assert (result.delivered, result.dead_lettered, result.error) == (24, 1, None)
    [letter] = Outbox(sqlite_ledger, "metronome").dead_letters()
    assert letter.event_id == f"{old.id}-0" and "more than 34 days ago" in letter.reason
    got = sum_by(
        metronome.events.values(),
        lambda e: (e["customer_id"].removeprefix("kt-"), e["event_type"]),
        lambda e: e["properties"]["quantity"],
    )
    expected = ledger_totals(sqlite_ledger)
    expected[("t0", "gpu_hours")] -= old.usage
    assert got == expected
    customers = metronome.objects["customers"].values()
    assert sorted((c["name"], tuple(c["ingest_aliases"])) for c in customers) == [
        ("t0", ("kt-t0",)),
        ("t1", ("kt-t1",)),
        ("t2", ("kt-t2",)),
    ]
    metrics = sorted(metronome.objects["billable_metrics"].values(), key=lambda m: m["name"])
    assert [(m["name"], m["aggregation_type"], m["event_type_filter"]) for m in metrics] == [
        ("GPU hours", "SUM", {"in_values": ["gpu_hours"]}),
        ("cpu_core_hours", "SUM", {"in_values": ["cpu_core_hours"]}),
    ]
    # a new process does not create them again; resending is deduplicated by transaction_id
    again = run(sqlite_ledger, config.model_copy(update={"name": "metronome-2"}), environ)
    assert (again.delivered, again.dead_lettered) == (24, 1)
    assert len(metronome.objects["billable_metrics"]) == 2  # Idempotency-Key: the same metrics back
    assert len(metronome.objects["customers"]) == 3
    assert len(metronome.events) == 24
    assert metronome.violations == []


def test_metronome_rejection_and_429(sqlite_ledger: Ledger, metronome: Any) -> None:
    recs = [record("acme", "gpu_hours", h, "1.5", start=RECENT) for h in range(6)]
    sqlite_ledger.write(recs)
    metronome.fail_next(429, retry_after=0.2)
    metronome.reject_events(lambda e: e["transaction_id"] == f"{recs[4].id}-0")
    config = MetronomeConfig(type="metronome", url=metronome.base_url, **FASTER)
    result = run(sqlite_ledger, config, {"METRONOME_API_TOKEN": metronome.api_key})
    assert (result.delivered, result.dead_lettered, result.retries) == (5, 1, 1)
    [letter] = Outbox(sqlite_ledger, "metronome").dead_letters()
    assert letter.event_id == f"{recs[4].id}-0" and letter.status == 400
    assert metronome.violations == []


# -- OpenMeter -------------------------------------------------------------------------------------


def test_openmeter_cloudevents_meters_and_subjects(sqlite_ledger: Ledger, openmeter: Any) -> None:
    a = record("acme", "gpu_hours", 0, "2", sku="H100")
    sqlite_ledger.write([a, *fleet(2, 3)])
    config = OpenMeterConfig(type="openmeter", url=openmeter.base_url, **FASTER)
    environ = {"OPENMETER_API_KEY": openmeter.api_key}
    assert run(sqlite_ledger, config, environ).delivered == 13
    sqlite_ledger.write([a.model_copy(update={"usage": Decimal("1.5")})])
    assert run(sqlite_ledger, config, environ).delivered == 1
    got = sum_by(
        openmeter.events.values(),
        lambda e: (e["subject"].removeprefix("kt-"), e["type"]),
        lambda e: e["data"]["quantity"],
    )
    assert got == ledger_totals(sqlite_ledger)
    keys = set(openmeter.events)
    assert ("kubetally/c1", f"{a.id}-1") in keys
    meters = openmeter.objects["meters"]
    assert sorted(meters) == ["cpu_core_hours", "gpu_hours"]
    assert (meters["gpu_hours"]["aggregation"], meters["gpu_hours"]["valueProperty"]) == ("SUM", "$.quantity")
    assert meters["gpu_hours"]["groupBy"] == {"gpu_sku": "$.gpu_sku", "capacity_type": "$.capacity_type"}
    assert sorted(openmeter.objects["subjects"]) == ["kt-acme", "kt-t0", "kt-t1"]
    posted = [r for r in openmeter.requests if r.path == "/api/v1/events"]
    assert {r.headers["content-type"] for r in posted} == {"application/cloudevents-batch+json"}
    assert openmeter.violations == []


def test_openmeter_outage_and_bad_event(sqlite_ledger: Ledger, openmeter: Any) -> None:
    recs = fleet(2, 5)
    sqlite_ledger.write(recs)
    openmeter.fail_next(503, times=2)
    openmeter.reject_events(lambda e: e["id"] == f"{recs[3].id}-0")
    config = OpenMeterConfig(type="openmeter", url=openmeter.base_url, **FASTER)
    result = run(sqlite_ledger, config, {"OPENMETER_API_KEY": openmeter.api_key})
    assert (result.delivered, result.dead_lettered, result.error) == (19, 1, None)
    [letter] = Outbox(sqlite_ledger, "openmeter").dead_letters()
    assert letter.event_id == f"{recs[3].id}-0" and "HTTP 400" in letter.reason
    assert openmeter.violations == []


# -- webhook -------------------------------------------------------------------------------------


def test_webhook_batches_are_signed_cloudevents(sqlite_ledger: Ledger, webhook: Any) -> None:
    sqlite_ledger.write(fleet(3, 5))
    config = WebhookConfig(type="webhook", url=webhook.base_url, batch_size=7, **FASTER)
    environ = {"KUBETALLY_WEBHOOK_SECRET": webhook.api_key}
    result = run(sqlite_ledger, config, environ)
    assert (result.delivered, result.error) == (30, None)
    got = sum_by(
        webhook.events.values(), lambda e: (e["data"]["tenant"], e["data"]["item"]), lambda e: e["data"]["quantity"]
    )
    assert got == ledger_totals(sqlite_ledger)
    [first, *_] = webhook.requests
    assert first.headers["content-type"] == "application/cloudevents-batch+json"
    assert first.headers["webhook-signature"].startswith("v1,")
    assert len(first.json()) == 7
    assert signing.verify(
        signing.decode_secret(webhook.api_key),
        first.headers["webhook-id"],
        first.headers["webhook-timestamp"],
        first.body,
        first.headers["webhook-signature"],
    )
    assert webhook.violations == []


def test_webhook_single_events_and_a_missing_secret(sqlite_ledger: Ledger, webhook: Any) -> None:
    import pytest

    from kubetally.errors import ConfigError

    sqlite_ledger.write(fleet(1, 2))
    config = WebhookConfig(type="webhook", url=webhook.base_url, batch_size=1, **FASTER)
    result = run(sqlite_ledger, config, {"KUBETALLY_WEBHOOK_SECRET": webhook.api_key})
    assert result.delivered == 4
    assert {r.headers["content-type"] for r in webhook.requests} == {"application/cloudevents+json"}
    with pytest.raises(ConfigError, match="set the environment variable KUBETALLY_WEBHOOK_SECRET"):
        run(sqlite_ledger, config, {})
    assert webhook.violations == []


# -- file ------------------------------------------------------------------------------------------


def test_file_survives_a_torn_last_line_and_never_writes_twice(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    sqlite_ledger.write(fleet(2, 3))
    config = FileConfig(type="file", path=str(out))
    assert run(sqlite_ledger, config, {}).delivered == 12
    lines = out.read_text().splitlines()
    # A crash after writing, before the cursor moved: same events again, plus a torn line.
    with out.open("a") as fh:
        fh.write('{"id": "torn')
    replay = run(sqlite_ledger, config.model_copy(update={"name": "file-replay"}), {})
    assert (replay.delivered, replay.duplicates) == (0, 12)
    assert out.read_text().splitlines() == lines
    events = [json.loads(line, parse_float=Decimal) for line in lines]
    assert sum_by(events, lambda e: (e["tenant"], e["item"]), lambda e: e["quantity"]) == ledger_totals(sqlite_ledger)
