"""``kubetally reconcile`` against each contract-validating fake backend.

The ledger (by hand): acme gpu_hours 1.25 (hour 0) + 2.5 (hour 1) = 3.75 hours;
beta gpu_hours 0.75 (hour 0) + 3 (hour 1) = 3.75 hours. After delivery the backend is made to
lose acme's hour-1 event (it then reports 3.75 - 2.5 = 1.25) and to count beta's hour-0 event
twice (3.75 + 0.75 = 4.5). Reconcile must name both events and exit 1; once the vendor repairs
its data it must agree and exit 0.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kubetally.cli.main import app
from kubetally.config.destinations import DestinationsConfig
from kubetally.delivery.destinations import build_destination
from kubetally.delivery.engine import deliver_once
from kubetally.delivery.reconcile import reconcile
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to, format_time
from kubetally.record import UsageRecord

from .helpers import FAST, record

runner = CliRunner()
RECENT = floor_to(datetime.now(UTC) - timedelta(days=3), timedelta(days=1))
MONTH = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
LAST_MONTH = (MONTH - timedelta(days=1)).replace(day=1)
KEYS = {
    "lago": "LAGO_API_KEY",
    "stripe": "STRIPE_API_KEY",
    "openmeter": "OPENMETER_API_KEY",
    "metronome": "METRONOME_API_TOKEN",
}


def fleet(start: datetime) -> list[UsageRecord]:
    return [
        record("acme", "gpu_hours", 0, "1.25", start=start),
        record("acme", "gpu_hours", 1, "2.5", start=start),
        record("beta", "gpu_hours", 0, "0.75", start=start),
        record("beta", "gpu_hours", 1, "3", start=start),
    ]


def destination(kind: str, be: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"type": kind, "url": be.base_url, "retry_initial": "1s"}
    if kind == "stripe":
        raw.update(stream_url=be.stream_base_url, scale="3600")  # 1.25 h = 4500 GPU-seconds, an integer
    return raw


def window(kind: str) -> tuple[datetime, datetime]:
    """Lago sums whole (calendar-month) billing periods: the current one (``lago``) or a
    closed one read back through ``past_usage`` (``lago-past``); the others any range inside
    their backdating limits (Stripe 35 days, Metronome 34)."""
    if kind == "lago":
        return MONTH, (MONTH + timedelta(days=32)).replace(day=1)
    if kind == "lago-past":
        return LAST_MONTH, MONTH
    return RECENT, RECENT + timedelta(days=1)


def backdate_subscriptions(be: Any, when: datetime) -> None:
    """As an operator who subscribed the tenants at ``when``: Lago bills a period only when
    the subscription was running in it."""
    for external_id, sub in be.objects.get("subscriptions", {}).items():
        be.store_object("subscriptions", external_id, {**sub, "started_at": format_time(when)})


def key_of(be: Any, event_id: str) -> Hashable:
    [key] = [k for k in be.events if event_id == k or (isinstance(k, tuple) and event_id in k)]
    return key


def run_reconcile(tmp_path: Path, db: str, kind: str, be: Any, period: tuple[datetime, datetime] | None = None) -> Any:
    config = tmp_path / "kubetally.yaml"
    raw = destination(kind, be)
    lines = "".join(f"    {k}: {v}\n" for k, v in raw.items() if k != "type")
    config.write_text(f"destinations:\n  - type: {kind}\n{lines}")
    start, end = period or window(kind)
    args = ["reconcile", "--db", db, "-c", str(config), "--from", format_time(start), "--to", format_time(end)]
    return runner.invoke(app, args, env={KEYS[kind]: be.api_key, "COLUMNS": "250"})


@pytest.mark.parametrize("case", ["lago", "lago-past", "stripe", "openmeter"])
def test_lost_and_double_counted_events_are_named_and_fail(
    case: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kind = case.split("-")[0]
    be = request.getfixturevalue(kind)
    start, _ = window(case)
    records = fleet(start)
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db) as ledger:
        ledger.write(records)
        configs = DestinationsConfig.model_validate([destination(kind, be)])
        summary = deliver_once(ledger, configs, environ={KEYS[kind]: be.api_key}, policy=FAST)
        assert summary.destinations[0].delivered == 4
    if case == "lago-past":
        backdate_subscriptions(be, LAST_MONTH + timedelta(days=2))  # mid-month: that month is billed

    agreed = run_reconcile(tmp_path, db, kind, be, window(case))
    assert agreed.exit_code == 0, agreed.output
    assert "agrees" in agreed.output and "DIFFERENCE" not in agreed.output

    lost, doubled = f"{records[1].id}-0", f"{records[2].id}-0"
    be.lose_event(key_of(be, lost))
    be.double_count(key_of(be, doubled))
    failed = run_reconcile(tmp_path, db, kind, be, window(case))
    assert failed.exit_code == 1, failed.output
    differences = sorted(line for line in failed.output.splitlines() if line.startswith("DIFFERENCE"))
    assert differences == [
        "DIFFERENCE acme gpu_hours: backend reports 1.25, outbox acknowledged 3.75: 2.5 hours missing; "
        f"event {lost} (2.5) acknowledged but not counted by the backend",
        "DIFFERENCE beta gpu_hours: backend reports 4.5, outbox acknowledged 3.75: 0.75 hours too much; "
        f"event {doubled} (0.75) counted twice by the backend",
    ]

    be.repair()
    fixed = run_reconcile(tmp_path, db, kind, be, window(case))
    assert fixed.exit_code == 0, fixed.output
    assert be.violations == []


def test_lago_over_two_periods_and_before_the_subscription(tmp_path: Path, lago: Any) -> None:
    """acme's 3.75 h fall in last month and beta's 3.75 h in this one. The range last month +
    this month is two whole periods: past_usage gives acme 3.75, current_usage beta 3.75, and it
    agrees. A range that is not whole periods (from the 2nd of last month) has no backend
    column, naming the periods. With the subscriptions started this month (as the adapter
    creates them), Lago bills nothing of last month: acme's 3.75 h are a difference."""
    records = [*fleet(LAST_MONTH)[:2], *fleet(MONTH)[2:]]
    db = str(tmp_path / "ledger.db")
    with Ledger.open(db) as ledger:
        ledger.write(records)
        configs = DestinationsConfig.model_validate([destination("lago", lago)])
        assert (
            deliver_once(ledger, configs, environ={KEYS["lago"]: lago.api_key}, policy=FAST).destinations[0].delivered
            == 4
        )
    both = (LAST_MONTH, (MONTH + timedelta(days=32)).replace(day=1))

    unbilled = run_reconcile(tmp_path, db, "lago", lago, both)
    assert unbilled.exit_code == 1, unbilled.output
    assert [line for line in unbilled.output.splitlines() if line.startswith("DIFFERENCE")] == [
        "DIFFERENCE acme gpu_hours: backend reports 0, outbox acknowledged 3.75: 3.75 hours missing"
    ]

    backdate_subscriptions(lago, LAST_MONTH)
    agreed = run_reconcile(tmp_path, db, "lago", lago, both)
    assert agreed.exit_code == 0, agreed.output

    partial = run_reconcile(tmp_path, db, "lago", lago, (LAST_MONTH + timedelta(days=1), both[1]))
    assert partial.exit_code == 0, partial.output  # ledger and outbox agree; no backend column
    assert "lago sums whole billing periods only" in partial.output
    assert f"{format_time(LAST_MONTH)} to {format_time(MONTH)}" in partial.output
    assert lago.violations == []


def test_metronome_has_no_usage_read_so_the_outbox_is_checked_alone(tmp_path: Path, metronome: Any) -> None:
    """Metronome's contract (derived from its SDK) has ingest but no usage read: the backend
    column is empty and says why; a dead-lettered event is still a difference (ledger 3.75 vs
    acknowledged 3.75 - 2.5 = 1.25 for acme), fixed by re-queueing it."""
    records = fleet(RECENT)
    db = str(tmp_path / "ledger.db")
    lost = f"{records[1].id}-0"
    metronome.reject_events(lambda e: e["transaction_id"] == lost)
    environ = {"METRONOME_API_TOKEN": metronome.api_key}
    configs = DestinationsConfig.model_validate([destination("metronome", metronome)])
    with Ledger.open(db) as ledger:
        ledger.write(records)
        result = deliver_once(ledger, configs, environ=environ, policy=FAST).destinations[0]
        assert (result.delivered, result.dead_lettered) == (3, 1)

    failed = run_reconcile(tmp_path, db, "metronome", metronome)
    assert failed.exit_code == 1, failed.output
    assert "backend column empty: metronome's contract has no usage read" in failed.output
    differences = [line for line in failed.output.splitlines() if line.startswith("DIFFERENCE")]
    assert differences == [
        "DIFFERENCE acme gpu_hours: outbox acknowledged 1.25, ledger has 3.75: 2.5 hours not acknowledged; "
        f"event {lost} (2.5) dead-lettered"
    ]

    metronome.reject_events(None)
    requeue = runner.invoke(
        app,
        ["deliver", "--db", db, "--to", "metronome", "--url", metronome.base_url, "--requeue", "all"],
        env={**environ, "COLUMNS": "200"},
    )
    assert requeue.exit_code == 0, requeue.output
    fixed = run_reconcile(tmp_path, db, "metronome", metronome)
    assert fixed.exit_code == 0, fixed.output
    assert sum(Decimal(e["properties"]["quantity"]) for e in metronome.events.values()) == Decimal("7.5")
    assert metronome.violations == []


def test_stripe_rounding_to_whole_units_is_not_a_difference(tmp_path: Path, stripe: Any) -> None:
    """scale 1, half_even: acme's records reach Stripe as round(1.25) = 1 and round(2.5) = 2
    hours, 3 in all against 3.75 in the ledger: 0.75 off, within the 2 × 0.5 its two records
    may be rounded by. Losing the 1.25-hour event (sent as 1) puts it 3.75 - 2 = 1.75 off,
    beyond that: a difference, and that event is named."""
    db = str(tmp_path / "ledger.db")
    records = fleet(RECENT)[:2]
    raw = {**destination("stripe", stripe), "scale": "1", "rounding": "half_even"}
    with Ledger.open(db) as ledger:
        ledger.write(records)
        configs = DestinationsConfig.model_validate([raw])
        environ = {"STRIPE_API_KEY": stripe.api_key}
        assert deliver_once(ledger, configs, environ=environ, policy=FAST).destinations[0].delivered == 2
        assert sorted(int(e["payload"]["value"]) for e in stripe.events.values()) == [1, 2]
        built = build_destination(configs.destinations[0], environ)
        try:
            result = reconcile(ledger, built, RECENT, RECENT + timedelta(days=1), config=configs.destinations[0])
            assert result.ok and [(c.ledger, c.acknowledged, c.backend) for c in result.cells] == [
                (Decimal("3.75"), Decimal("3.75"), Decimal(3))
            ]
            stripe.lose_event(f"{records[0].id}-0")
            result = reconcile(ledger, built, RECENT, RECENT + timedelta(days=1), config=configs.destinations[0])
        finally:
            built.close()
    assert [d.describe() for d in result.differences] == [
        "acme gpu_hours: backend reports 2, outbox acknowledged 3.75: 1.75 hours missing (rounding allows 1); "
        f"event {records[0].id}-0 (1.25) acknowledged but not counted by the backend"
    ]  # 1.25 reached Stripe as 1: within one record's 0.5 of the 1.75; 2.5 (sent as 2) is not


def test_provider_records_are_not_delivered_unless_asked(tmp_path: Path) -> None:
    """A node's capacity (8 GPU-h) and idle (5 GPU-h) belong to the provider: a destination
    skips them by default and gets only acme's 3 GPU-h; with ``provider_records`` (and a tenant
    to bill them to) it gets all three."""
    acme = record("acme", "gpu_hours", 0, "3", start=RECENT)
    provider = [
        acme.model_copy(update={"id": f"{i:032x}", "kind": kind, "tenant": "", "usage": Decimal(q)})
        for i, (kind, q) in enumerate((("NodeCapacity", "8"), ("NodeIdle", "5")), start=1)
    ]
    with Ledger.open(str(tmp_path / "ledger.db")) as ledger:
        ledger.write([acme, *provider])
        plain = {"type": "file", "name": "plain", "path": str(tmp_path / "plain.jsonl")}
        asked = {
            "type": "file",
            "name": "asked",
            "path": str(tmp_path / "asked.jsonl"),
            "provider_records": True,
            "unassigned_tenant": "provider",
        }
        summary = deliver_once(ledger, DestinationsConfig.model_validate([plain, asked]), policy=FAST)
        assert [(d.delivered, d.skipped) for d in summary.destinations] == [(1, 2), (3, 0)]
    plain = [json.loads(line) for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    asked = [json.loads(line) for line in (tmp_path / "asked.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["tenant"]) for e in plain] == [("gpu", "acme")]
    assert sorted((e["kind"], e["tenant"], e["quantity"]) for e in asked) == [
        ("NodeCapacity", "provider", 8),
        ("NodeIdle", "provider", 5),
        ("gpu", "acme", 3),
    ]
