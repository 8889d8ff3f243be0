"""Stripe Billing Meters: meters per item/SKU, customers, the v2 stream with session refresh,
the synchronous v2 and v1 endpoints, integer values, 35-day window, no negative corrections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from kubetally.config.destinations import StripeConfig
from kubetally.delivery.engine import Deliverer, build_all, deliver_once
from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to

from .helpers import FAST, record, sum_by

RECENT = floor_to(datetime.now(UTC) - timedelta(days=3), timedelta(days=1))


def cfg(be: Any, **extra: Any) -> StripeConfig:
    extra.setdefault("scale", "3600")
    return StripeConfig(
        type="stripe", url=be.base_url, stream_url=be.stream_base_url, retry_initial=timedelta(milliseconds=20), **extra
    )


def run(ledger: Ledger, be: Any, **extra: Any) -> Any:
    summary = deliver_once(ledger, [cfg(be, **extra)], environ={"STRIPE_API_KEY": be.api_key}, policy=FAST)
    return summary.destinations[0]


def per_meter(be: Any) -> dict[tuple[str, str], Decimal]:
    customers = {c["id"]: c["name"] for c in be.objects["customers"].values()}
    return sum_by(
        be.events.values(),
        lambda e: (customers[e["payload"]["stripe_customer_id"]], e["event_name"]),
        lambda e: e["payload"]["value"],
    )


def hours(h: int, usage: str, tenant: str = "acme", sku: str | None = "H100") -> Any:
    return record(tenant, "gpu_hours", h, usage, start=RECENT, sku=sku)


def test_stream_delivers_to_meters_per_sku_with_integer_values(sqlite_ledger: Ledger, stripe: Any) -> None:
    sqlite_ledger.write([hours(0, "1.5"), hours(1, "0.25", sku="T4"), hours(2, "2", tenant="beta")])
    result = run(sqlite_ledger, stripe)
    assert (result.delivered, result.dead_lettered, result.error) == (3, 0, None)
    assert per_meter(stripe) == {
        ("acme", "gpu_hours__h100"): Decimal(5400),
        ("acme", "gpu_hours__t4"): Decimal(900),
        ("beta", "gpu_hours__h100"): Decimal(7200),
    }
    meters = {m["event_name"]: m for m in stripe.objects["meters"].values()}
    assert sorted(meters) == ["gpu_hours__h100", "gpu_hours__t4"]
    assert meters["gpu_hours__h100"]["default_aggregation"] == {"formula": "sum"}
    assert sorted(c["name"] for c in stripe.objects["customers"].values()) == ["acme", "beta"]
    assert {e["identifier"] for e in stripe.events.values()} == {f"{r.id}-0" for r in sqlite_ledger.records()}
    assert stripe.async_errors == []
    assert stripe.violations == []
    # customers are remembered: a second run creates none
    sqlite_ledger.write([hours(3, "1")])
    assert run(sqlite_ledger, stripe).delivered == 1
    assert len(stripe.objects["customers"]) == 2


def test_expired_session_is_renewed_and_the_batch_resent(sqlite_ledger: Ledger, stripe: Any) -> None:
    built, configs, _ = build_all([cfg(stripe)], {"STRIPE_API_KEY": stripe.api_key})
    deliverer = Deliverer(sqlite_ledger, built, configs, policy=FAST)
    sqlite_ledger.write([hours(0, "1")])
    deliverer.run_once()
    stripe.expire_sessions()
    sqlite_ledger.write([hours(1, "1"), hours(2, "1")])
    [result] = deliverer.run_once().destinations
    deliverer.close()
    assert (result.delivered, result.error) == (2, None)
    sessions = [r for r in stripe.requests if r.path == "/v2/billing/meter_event_session"]
    assert len(sessions) == 2
    assert len(stripe.events) == 3
    assert stripe.violations == []


def test_synchronous_v2_and_v1_dead_letter_what_stripe_refuses(sqlite_ledger: Ledger, stripe: Any) -> None:
    recs = [hours(h, "1") for h in range(4)]
    sqlite_ledger.write(recs)
    stripe.reject_events(lambda e: e.get("identifier") == f"{recs[2].id}-0")
    v2 = run(sqlite_ledger, stripe, api="v2")
    assert (v2.delivered, v2.dead_lettered) == (3, 1)
    [letter] = Outbox(sqlite_ledger, "stripe").dead_letters()
    assert letter.event_id == f"{recs[2].id}-0" and "payload_invalid_value" in letter.reason
    v1 = run(sqlite_ledger, stripe, api="v1", name="stripe-v1")
    assert (v1.delivered, v1.duplicates, v1.dead_lettered) == (0, 3, 1)
    assert stripe.violations == []


def test_v1_sends_form_encoded_events(sqlite_ledger: Ledger, stripe: Any) -> None:
    sqlite_ledger.write([hours(0, "2")])
    result = run(sqlite_ledger, stripe, api="v1")
    assert (result.delivered, result.error) == (1, None)
    [event] = stripe.events.values()
    assert event["payload"]["value"] == "7200"
    [posted] = [r for r in stripe.requests if r.path == "/v1/billing/meter_events"]
    assert posted.headers["content-type"] == "application/x-www-form-urlencoded"
    assert posted.headers["idempotency-key"] == event["identifier"]
    assert stripe.violations == []


def test_what_stripe_can_never_take_is_dead_lettered_with_the_reason(sqlite_ledger: Ledger, stripe: Any) -> None:
    old = record("acme", "gpu_hours", 0, "1", start=RECENT - timedelta(days=40))
    fractional = hours(0, "0.0001")
    down = hours(1, "2")
    sqlite_ledger.write([old, fractional, down])
    first = run(sqlite_ledger, stripe)
    assert (first.delivered, first.dead_lettered) == (1, 2)
    sqlite_ledger.write([down.model_copy(update={"usage": Decimal("3")})])
    sqlite_ledger.write([down.model_copy(update={"usage": Decimal("1")})])
    second = run(sqlite_ledger, stripe)
    assert (second.delivered, second.dead_lettered) == (1, 1)
    reasons = {row.event_id: row.reason for row in Outbox(sqlite_ledger, "stripe").dead_letters()}
    assert reasons[f"{old.id}-0"].startswith("too old: period start")
    assert "more than 35 days ago" in reasons[f"{old.id}-0"]
    assert reasons[f"{fractional.id}-0"].startswith("stripe meter values are integers: 0.0001 × scale 3600 = 0.36")
    assert reasons[f"{down.id}-2"].startswith("stripe cannot subtract")
    assert per_meter(stripe) == {("acme", "gpu_hours__h100"): Decimal(10800)}
    assert stripe.violations == []


def test_half_even_rounding_keeps_each_record_exact_in_whole_units(sqlite_ledger: Ledger, stripe: Any) -> None:
    rec = hours(0, "0.4")
    sqlite_ledger.write([rec])
    run(sqlite_ledger, stripe, scale="1", rounding="half_even")
    sqlite_ledger.write([rec.model_copy(update={"usage": Decimal("1.6")})])
    result = run(sqlite_ledger, stripe, scale="1", rounding="half_even")
    assert result.dead_lettered == 0
    assert per_meter(stripe) == {("acme", "gpu_hours__h100"): Decimal(2)}  # round(1.6)
