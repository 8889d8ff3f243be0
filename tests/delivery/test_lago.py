"""Lago: events, setup (metrics with SKU filters, plan, customers, subscriptions), every failure
mode of the fake, offboarding — every request checked against Lago's OpenAPI contract."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from kubetally.config.destinations import LagoConfig
from kubetally.delivery.destinations.base import ItemSpec
from kubetally.delivery.engine import deliver_once
from kubetally.delivery.outbox import Outbox
from kubetally.ledger.store import Ledger

from .helpers import FAST, fleet, ledger_totals, record, sum_by


def cfg(be: Any, **extra: Any) -> LagoConfig:
    return LagoConfig(type="lago", url=be.base_url, retry_initial=timedelta(milliseconds=20), **extra)


def env(be: Any) -> dict[str, str]:
    return {"LAGO_API_KEY": be.api_key}


def run(ledger: Ledger, be: Any, **kwargs: Any) -> Any:
    destinations = kwargs.pop("destinations", None) or [cfg(be)]
    kwargs.setdefault("policy", FAST)
    summary = deliver_once(ledger, destinations, environ=env(be), **kwargs)
    return summary.destinations[0]


def totals(be: Any) -> dict[tuple[str, str], Decimal]:
    return sum_by(
        be.events.values(),
        lambda e: (e["external_subscription_id"].removeprefix("kt-"), e["code"]),
        lambda e: e["properties"]["quantity"],
    )


def test_everything_arrives_once_with_exact_totals(ledger: Ledger, lago: Any) -> None:
    ledger.write(fleet(4, 30))
    result = run(ledger, lago)
    assert (result.delivered, result.duplicates, result.dead_lettered, result.pending, result.error) == (
        240,
        0,
        0,
        0,
        None,
    )
    assert totals(lago) == ledger_totals(ledger)
    assert lago.violations == []
    batches = [r.json()["events"] for r in lago.requests if r.path.endswith("/events/batch")]
    # 240 events in batches of 100; two are in flight at once, so they may arrive in any order
    assert sorted(len(b) for b in batches) == [40, 100, 100]
    event = next(iter(lago.events.values()))
    assert isinstance(event["timestamp"], int)
    assert all(isinstance(v, str) for v in event["properties"].values())
    assert run(ledger, lago).delivered == 0  # nothing twice


def test_bootstrap_creates_metrics_with_sku_filters_plan_and_subscriptions(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(
        [
            record("acme", "gpu_hours", 0, "1", sku="H100", capacity="spot"),
            record("acme", "gpu_hours", 1, "1", sku="T4", capacity="on-demand"),
            record("beta", "cpu_core_hours", 0, "3"),
        ]
    )
    items = [ItemSpec("gpu_hours", "GPU", "hours", "GPU hours"), ItemSpec("storage_gb_hours")]
    assert run(sqlite_ledger, lago, items=items).delivered == 3
    objects = lago.objects
    metrics = objects["billable_metrics"]
    assert sorted(metrics) == ["cpu_core_hours", "gpu_hours", "storage_gb_hours"]
    gpu = metrics["gpu_hours"]
    assert (gpu["name"], gpu["aggregation_type"], gpu["field_name"]) == ("GPU hours", "sum_agg", "quantity")
    assert sorted((f["key"], f["values"]) for f in gpu["filters"]) == [
        ("capacity_type", ["on-demand", "spot"]),
        ("gpu_sku", ["H100", "T4"]),
    ]
    plan = objects["plans"]["vcluster-standard"]
    charges = {c["billable_metric_code"]: c for c in plan["charges"]}
    assert sorted(charges) == ["cpu_core_hours", "gpu_hours", "storage_gb_hours"]
    assert sorted(str(sorted(f["values"].items())) for f in charges["gpu_hours"]["filters"]) == [
        "[('capacity_type', ['on-demand']), ('gpu_sku', ['T4'])]",
        "[('capacity_type', ['spot']), ('gpu_sku', ['H100'])]",
    ]
    assert charges["gpu_hours"]["properties"] == {"amount": "0"}
    assert sorted(objects["customers"]) == ["kt-acme", "kt-beta"]
    subs = objects["subscriptions"]
    assert {k: (v["plan_code"], v["status"]) for k, v in subs.items()} == {
        "kt-acme": ("vcluster-standard", "active"),
        "kt-beta": ("vcluster-standard", "active"),
    }
    assert lago.violations == []


def test_new_sku_extends_filters_and_keeps_prices_set_by_the_operator(sqlite_ledger: Ledger, lago: Any) -> None:
    import httpx

    sqlite_ledger.write([record("acme", "gpu_hours", 0, "1", sku="H100")])
    run(sqlite_ledger, lago)
    plan = lago.objects["plans"]["vcluster-standard"]
    [charge] = plan["charges"]
    priced = {
        "id": charge["lago_id"],
        "billable_metric_id": charge["lago_billable_metric_id"],
        "charge_model": "standard",
        "properties": {"amount": "2.5"},
        "filters": [{"invoice_display_name": "H100", "properties": {"amount": "4.1"}, "values": {"gpu_sku": ["H100"]}}],
    }
    body = {
        "plan": {
            "name": plan["name"],
            "code": plan["code"],
            "interval": "monthly",
            "amount_cents": 0,
            "amount_currency": "USD",
            "pay_in_advance": False,
            "charges": [priced],
        }
    }
    headers = {"Authorization": f"Bearer {lago.api_key}"}
    assert httpx.put(f"{lago.base_url}/plans/vcluster-standard", json=body, headers=headers).status_code == 200
    sqlite_ledger.write([record("acme", "gpu_hours", 1, "1", sku="B200"), record("acme", "lb_hours", 0, "1")])
    assert run(sqlite_ledger, lago).delivered == 2
    plan = lago.objects["plans"]["vcluster-standard"]
    charges = {c["billable_metric_code"]: c for c in plan["charges"]}
    gpu = charges["gpu_hours"]
    assert gpu["properties"] == {"amount": "2.5"}
    assert {f["values"]["gpu_sku"][0]: f["properties"]["amount"] for f in gpu["filters"]} == {
        "H100": "4.1",
        "B200": "0",
    }
    assert charges["lb_hours"]["properties"] == {"amount": "0"}
    assert lago.objects["billable_metrics"]["gpu_hours"]["filters"] == [{"key": "gpu_sku", "values": ["B200", "H100"]}]
    assert lago.violations == []


def test_bootstrap_waits_until_lago_is_up(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(fleet(2, 2))
    lago.go_down()
    threading.Timer(1.0, lago.come_up).start()
    started = time.monotonic()
    result = run(sqlite_ledger, lago, items=[ItemSpec("gpu_hours")])
    assert time.monotonic() - started >= 1.0
    assert (result.delivered, result.error) == (8, None)
    assert result.retries >= 1
    assert totals(lago) == ledger_totals(sqlite_ledger)


def test_429_honours_retry_after_and_500_is_retried(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(fleet(2, 5))
    run(sqlite_ledger, lago)  # setup done
    sqlite_ledger.write([record("gamma", "gpu_hours", h, "1.5") for h in range(5)])
    lago.fail_next(429, retry_after=1)
    lago.fail_next(500, times=2)
    started = time.monotonic()
    result = run(sqlite_ledger, lago)
    assert time.monotonic() - started >= 1.0
    assert (result.delivered, result.retries, result.error) == (5, 3, None)
    assert totals(lago) == ledger_totals(sqlite_ledger)


def test_timeout_then_resend_counts_as_already_there(sqlite_ledger: Ledger, lago: Any) -> None:
    from kubetally.delivery.engine import Deliverer, build_all
    from kubetally.delivery.retry import RetryPolicy

    built, configs, _ = build_all([cfg(lago, timeout=timedelta(seconds=0.5))], env(lago))
    slow_retry = RetryPolicy(initial=timedelta(seconds=1), jitter=0.0)
    deliverer = Deliverer(sqlite_ledger, built, configs, policy=slow_retry)
    sqlite_ledger.write([record("acme", "gpu_hours", 0, "1")])
    deliverer.run_once()  # setup done, the next request is the batch
    sqlite_ledger.write([record("acme", "gpu_hours", h, "2") for h in range(1, 4)])
    lago.hang_next(0.7)  # Lago stores the batch after we stopped waiting at 0.5 s
    [result] = deliverer.run_once().destinations
    deliverer.close()
    assert (result.delivered, result.duplicates, result.retries, result.error) == (0, 3, 1, None)
    assert totals(lago) == ledger_totals(sqlite_ledger)
    assert lago.violations == []


def test_one_bad_event_is_isolated_and_dead_lettered(sqlite_ledger: Ledger, lago: Any) -> None:
    records = fleet(3, 10)
    bad = records[17]
    sqlite_ledger.write(records)
    lago.reject_events(lambda e: e["transaction_id"] == f"{bad.id}-0")
    result = run(sqlite_ledger, lago)
    assert (result.delivered, result.dead_lettered, result.pending) == (59, 1, 0)
    [letter] = Outbox(sqlite_ledger, "lago").dead_letters()
    assert (letter.event_id, letter.tenant, letter.item, letter.quantity, letter.status) == (
        f"{bad.id}-0",
        bad.tenant,
        bad.item,
        bad.usage,
        422,
    )
    assert "value_is_invalid" in letter.reason
    expected = ledger_totals(sqlite_ledger)
    expected[(bad.tenant, bad.item)] -= bad.usage
    assert totals(lago) == {k: v for k, v in expected.items() if v}
    lago.reject_events(None)
    Outbox(sqlite_ledger, "lago").requeue()
    again = run(sqlite_ledger, lago)
    assert (again.delivered, again.dead_lettered) == (1, 0)
    assert totals(lago) == ledger_totals(sqlite_ledger)


def test_a_second_outbox_over_the_same_lago_finds_everything_there(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(fleet(2, 10))
    run(sqlite_ledger, lago)
    replica = run(sqlite_ledger, lago, destinations=[cfg(lago, name="replica")])
    assert (replica.delivered, replica.duplicates, replica.dead_lettered) == (0, 40, 0)
    assert totals(lago) == ledger_totals(sqlite_ledger)


def test_revisions_are_deltas_and_reversals_summing_to_the_ledger(sqlite_ledger: Ledger, lago: Any) -> None:
    a = record("acme", "gpu_hours", 0, "2", sku="H100")
    b = record("acme", "gpu_hours", 1, "5", sku="H100")
    sqlite_ledger.write([a, b])
    run(sqlite_ledger, lago)
    sqlite_ledger.write(
        [a.model_copy(update={"usage": Decimal("2.75")}), b.model_copy(update={"usage": Decimal("4.5")})]
    )
    sqlite_ledger.write([a.model_copy(update={"usage": Decimal("2.75"), "labels": {"gpu_sku": "A100"}})])
    result = run(sqlite_ledger, lago)
    assert (result.delivered, result.dead_lettered) == (4, 0)
    by_id = {e["transaction_id"]: e for e in lago.events.values()}
    assert by_id[f"{a.id}-1"]["properties"]["quantity"] == "0.75"
    assert by_id[f"{b.id}-1"]["properties"]["quantity"] == "-0.5"
    assert by_id[f"{a.id}-2-undo"]["properties"]["quantity"] == "-2.75"
    assert by_id[f"{a.id}-2-undo"]["properties"]["gpu_sku"] == "H100"
    assert by_id[f"{a.id}-2"]["properties"]["gpu_sku"] == "A100"
    assert totals(lago) == ledger_totals(sqlite_ledger) == {("acme", "gpu_hours"): Decimal("7.25")}
    per_sku = sum_by(lago.events.values(), lambda e: e["properties"]["gpu_sku"], lambda e: e["properties"]["quantity"])
    assert per_sku == {"H100": Decimal("4.5"), "A100": Decimal("2.75")}


def test_wrong_key_stops_without_dead_letters(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(fleet(1, 3))
    summary = deliver_once(sqlite_ledger, [cfg(lago)], environ={"LAGO_API_KEY": "wrong"}, policy=FAST)
    [result] = summary.destinations
    assert not summary.ok
    assert result.error is not None and "HTTP 401" in result.error and "check the API key" in result.error
    assert "wrong" not in result.error
    assert (result.delivered, result.dead_lettered, result.pending) == (0, 0, 6)


def test_gives_up_after_max_wait_and_keeps_everything_pending(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(fleet(1, 3))
    run(sqlite_ledger, lago)
    sqlite_ledger.write([record("t0", "gpu_hours", 9, "1")])
    lago.go_down()
    result = run(sqlite_ledger, lago, max_wait=timedelta(seconds=0.5))
    assert result.error is not None and result.error.startswith("lago: gave up after")
    assert (result.delivered, result.pending) == (0, 1)
    lago.come_up()
    assert run(sqlite_ledger, lago).delivered == 1


def test_tenant_without_usage_past_the_grace_is_offboarded(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write([record("leaving", "gpu_hours", h, "1") for h in range(3)])
    sqlite_ledger.write([record("staying", "gpu_hours", h, "1") for h in range(30)])
    result = run(sqlite_ledger, lago, destinations=[cfg(lago, offboard_grace=timedelta(hours=24))])
    assert result.offboarded == ["leaving"]
    subs = lago.objects["subscriptions"]
    assert (subs["kt-leaving"]["status"], subs["kt-staying"]["status"]) == ("terminated", "active")
    assert run(sqlite_ledger, lago).offboarded == []  # done once
    assert Outbox(sqlite_ledger, "lago").tenant_states() == {"leaving": "offboarded", "staying": "active"}
    # the tenant comes back: a new subscription
    sqlite_ledger.write([record("leaving", "gpu_hours", 40, "1")])
    assert run(sqlite_ledger, lago).delivered == 1
    assert lago.objects["subscriptions"]["kt-leaving"]["status"] == "active"
    assert lago.violations == []


@pytest.mark.parametrize("records", [0])
def test_nothing_to_deliver_still_bootstraps(sqlite_ledger: Ledger, lago: Any, records: int) -> None:
    result = run(sqlite_ledger, lago, items=[ItemSpec("gpu_hours")])
    assert (result.delivered, result.pending, result.error) == (records, 0, None)
    assert list(lago.objects["billable_metrics"]) == ["gpu_hours"]
    assert list(lago.objects["plans"]) == ["vcluster-standard"]


def test_garbage_answer_is_retried_not_fatal(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write(fleet(1, 2))
    lago.fail_next(200, body="<html>upstream proxy says hello</html>")
    result = run(sqlite_ledger, lago)
    assert (result.delivered, result.retries, result.error) == (4, 1, None)
    assert totals(lago) == ledger_totals(sqlite_ledger)


VC_TENANT = "vcluster/vc-ns/team-a"
#: "/" written "~2f" (its UTF-8 byte in hex): one URL path segment, the same on every run.
VC_ID = "kt-vcluster~2fvc-ns~2fteam-a"


def test_a_tenant_id_with_slashes_is_offboarded_through_a_url_safe_id(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write([record(VC_TENANT, "gpu_hours", h, "1") for h in range(3)])
    sqlite_ledger.write([record("staying", "gpu_hours", h, "1") for h in range(30)])
    result = run(sqlite_ledger, lago, destinations=[cfg(lago, offboard_grace=timedelta(hours=24))])
    assert result.offboarded == [VC_TENANT]
    subs = lago.objects["subscriptions"]
    assert (subs[VC_ID]["status"], subs["kt-staying"]["status"]) == ("terminated", "active")
    assert subs[VC_ID]["name"] == VC_TENANT  # the readable tenant id stays on the subscription
    assert {e["external_subscription_id"] for e in lago.events.values()} == {VC_ID, "kt-staying"}
    deletes = [r.path for r in lago.requests if r.method == "DELETE"]
    assert deletes == [f"/api/v1/subscriptions/{VC_ID}"]
    assert lago.violations == []


def test_a_404_on_terminate_is_checked_not_assumed(sqlite_ledger: Ledger, lago: Any) -> None:
    from kubetally.delivery.destinations.base import DeliveryError
    from kubetally.delivery.destinations.lago import LagoDestination

    sqlite_ledger.write([record(VC_TENANT, "gpu_hours", 0, "1")])
    assert run(sqlite_ledger, lago).delivered == 1  # customer and subscription exist, active
    lago_dest = LagoDestination(cfg(lago), environ=env(lago))
    try:
        # The DELETE answers 404 although the subscription is active (a proxy, a wrong id):
        # offboarding fails loudly instead of counting the tenant as terminated.
        lago.fail_next(404)
        with pytest.raises(DeliveryError, match="still active after a 404"):
            lago_dest.offboard(VC_TENANT)
        assert lago.objects["subscriptions"][VC_ID]["status"] == "active"
        lago_dest.offboard(VC_TENANT)  # terminates
        assert lago.objects["subscriptions"][VC_ID]["status"] == "terminated"
        # Terminated already: Lago's 404 is confirmed by finding it terminated, and accepted.
        lago_dest.offboard(VC_TENANT)
    finally:
        lago_dest.close()
    assert lago.violations == []
