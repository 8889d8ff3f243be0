"""The fake Lago accepts what the Lago spec allows, answers as documented, and injects faults."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from .helpers import assert_documented

# Values from the spec's own `example`s (components.schemas.EventInputObject).
EVENT = {
    "transaction_id": "transaction_1234567890",
    "external_subscription_id": "sub_1234567890",
    "code": "storage",
    "timestamp": "1651240791.123",
    "properties": {"gb": "10"},
}


def _auth(be: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {be.api_key}"}


def _event(n: int, **changes: Any) -> dict[str, Any]:
    return {**EVENT, "transaction_id": f"transaction_{n}", **changes}


def test_single_event_is_accepted_recorded_and_documented(lago: Any) -> None:
    response = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))

    assert response.status_code == 200
    body = response.json()["event"]
    assert body["transaction_id"] == "transaction_1234567890"
    assert body["lago_customer_id"] is None
    assert body["timestamp"] == "2022-04-29T13:59:51.123Z"
    assert body["properties"] == {"gb": "10"}
    assert_documented(lago.spec, "POST", "/events", response)
    assert lago.events == {("sub_1234567890", "transaction_1234567890"): EVENT}
    assert [(r.method, r.path) for r in lago.requests] == [("POST", "/api/v1/events")]
    assert lago.requests[0].json() == {"event": EVENT}
    assert lago.violations == []


def test_batch_of_100_is_accepted(lago: Any) -> None:
    events = [_event(i) for i in range(100)]
    response = httpx.post(f"{lago.base_url}/events/batch", json={"events": events}, headers=_auth(lago))

    assert response.status_code == 200
    assert [e["transaction_id"] for e in response.json()["events"]] == [f"transaction_{i}" for i in range(100)]
    assert_documented(lago.spec, "POST", "/events/batch", response)
    assert len(lago.events) == 100
    assert lago.violations == []


def test_batch_over_100_is_rejected_whole(lago: Any) -> None:
    events = [_event(i) for i in range(101)]
    response = httpx.post(f"{lago.base_url}/events/batch", json={"events": events}, headers=_auth(lago))

    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"events": ["too_many_events"]},
    }
    assert lago.events == {}
    assert lago.violations == ["POST /events/batch: batch of 101 events exceeds the documented 100"]


def test_missing_required_field_is_a_violation_with_lago_422(lago: Any) -> None:
    bad = {k: v for k, v in EVENT.items() if k != "external_subscription_id"}
    response = httpx.post(f"{lago.base_url}/events/batch", json={"events": [_event(1), bad]}, headers=_auth(lago))

    assert response.status_code == 422
    assert response.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"1": {"external_subscription_id": ["value_is_mandatory"]}},
    }
    assert_documented(lago.spec, "POST", "/events/batch", response)
    assert lago.events == {}
    assert lago.violations == ["POST /events/batch: body/events/1: 'external_subscription_id' is a required property"]


def test_wrong_type_and_integer_property_are_violations(lago: Any) -> None:
    """contracts.md quirk: JSON integers match both integer and number in the oneOf → invalid."""
    response = httpx.post(
        f"{lago.base_url}/events", json={"event": {**EVENT, "code": 7, "properties": {"gb": 10}}}, headers=_auth(lago)
    )

    assert response.status_code == 422
    assert response.json()["error_details"] == {"code": ["value_is_invalid"], "properties": ["value_is_invalid"]}
    assert len(lago.violations) == 2
    assert lago.violations[0] == "POST /events: body/event/code: 7 is not of type 'string'"
    assert lago.violations[1].startswith("POST /events: body/event/properties/gb: 10 is valid under each of")


def test_malformed_json_is_400(lago: Any) -> None:
    response = httpx.post(
        f"{lago.base_url}/events", content=b"{not json", headers={**_auth(lago), "Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert len(lago.violations) == 1
    assert lago.violations[0].startswith("POST /events: body is not valid JSON")


def test_wrong_content_type_and_unknown_path_are_violations(lago: Any) -> None:
    form = httpx.post(f"{lago.base_url}/events", data={"a": "b"}, headers=_auth(lago))
    unknown = httpx.post(f"{lago.base_url}/usage", json={}, headers=_auth(lago))
    wrong_method = httpx.patch(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))

    assert form.status_code == 400
    assert unknown.status_code == 404
    assert unknown.json() == {"status": 404, "error": "Not Found", "code": "object_not_found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "not_allowed"
    assert lago.violations == [
        "POST /events: content type 'application/x-www-form-urlencoded' not accepted (contract: ['application/json'])",
        "POST /usage: path /usage is not in the lago contract",
        "PATCH /events: method PATCH not allowed on /events by the contract",
    ]


def test_auth_wrong_key_401_missing_header_is_violation(lago: Any) -> None:
    wrong = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers={"Authorization": "Bearer nope"})
    missing = httpx.post(f"{lago.base_url}/events", json={"event": EVENT})

    assert wrong.status_code == 401
    assert wrong.json() == {"status": 401, "error": "Unauthorized"}
    assert missing.status_code == 401
    assert lago.violations == ["POST /events: missing 'Authorization: Bearer <api_key>' (contract: bearerAuth)"]
    assert lago.events == {}


def test_duplicate_transaction_id_counts_once_and_returns_422_naming_it(lago: Any) -> None:
    first = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))
    again = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))
    batch = httpx.post(f"{lago.base_url}/events/batch", json={"events": [_event(5), EVENT]}, headers=_auth(lago))
    other_sub = httpx.post(
        f"{lago.base_url}/events",
        json={"event": {**EVENT, "external_subscription_id": "sub_other"}},
        headers=_auth(lago),
    )

    assert first.status_code == 200
    assert again.status_code == 422
    assert again.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert batch.status_code == 422
    assert batch.json()["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert other_sub.status_code == 200  # unique per external_subscription_id
    assert set(lago.events) == {("sub_1234567890", "transaction_1234567890"), ("sub_other", "transaction_1234567890")}
    assert lago.violations == []


@pytest.mark.usefixtures("contracts_available")
def test_clickhouse_pipeline_overwrites_same_transaction_and_timestamp() -> None:
    from kubetally.testing.backends import start_backend

    with start_backend("lago", pipeline="clickhouse") as be:
        for _ in range(2):
            assert httpx.post(f"{be.base_url}/events", json={"event": EVENT}, headers=_auth(be)).status_code == 200
        later = {**EVENT, "timestamp": 1651240800}
        assert httpx.post(f"{be.base_url}/events", json={"event": later}, headers=_auth(be)).status_code == 200
        assert set(be.events) == {
            ("transaction_1234567890", "1651240791.123"),
            ("transaction_1234567890", "1651240800"),
        }
        assert be.violations == []


def test_fail_next_429_with_retry_after_then_success(lago: Any) -> None:
    lago.fail_next(429, times=2, retry_after=3)
    responses = [httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago)) for _ in range(3)]

    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].headers["Retry-After"] == "3"
    assert responses[0].headers["X-RateLimit-Reset"] == "3"
    assert responses[0].json() == {"status": 429, "error": "Too Many Requests"}
    assert len(lago.events) == 1
    assert len(lago.requests) == 3


def test_fail_next_500_and_custom_body(lago: Any) -> None:
    lago.fail_next(500)
    lago.fail_next(503, body={"oops": True})
    first = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))
    second = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))

    assert (first.status_code, first.json()) == (500, {"status": 500, "error": "Internal Server Error"})
    assert (second.status_code, second.json()) == (503, {"oops": True})
    assert lago.events == {}


def test_go_down_refuses_connections_then_comes_back_on_same_port(lago: Any) -> None:
    url = lago.base_url
    lago.go_down()
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/events", json={"event": EVENT}, headers=_auth(lago))
    lago.come_up()

    assert lago.base_url == url
    assert httpx.post(f"{url}/events", json={"event": EVENT}, headers=_auth(lago)).status_code == 200
    assert len(lago.events) == 1


def test_hang_times_out_client_and_is_still_committed(lago: Any) -> None:
    lago.hang_next(0.6)
    with pytest.raises(httpx.ReadTimeout):  # the client gave up before the answer came
        httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago), timeout=0.2)
    deadline = time.monotonic() + 10  # the hang ends after 0.6 s; a loaded machine may take longer
    while not lago.events and time.monotonic() < deadline:
        time.sleep(0.05)

    assert len(lago.events) == 1  # the vendor committed it: a retry must be deduplicated
    retry = httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago))
    assert retry.status_code == 422
    assert len(lago.events) == 1


def test_reject_one_event_rejects_whole_batch_naming_its_index(lago: Any) -> None:
    lago.reject_events(lambda e: e["transaction_id"] == "transaction_2")
    events = [_event(i) for i in range(4)]
    rejected = httpx.post(f"{lago.base_url}/events/batch", json={"events": events}, headers=_auth(lago))

    assert rejected.status_code == 422
    assert rejected.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"2": {"base": ["value_is_invalid"]}},
    }
    assert lago.events == {}

    without = [e for e in events if e["transaction_id"] != "transaction_2"]
    assert httpx.post(f"{lago.base_url}/events/batch", json={"events": without}, headers=_auth(lago)).status_code == 200
    assert len(lago.events) == 3
    assert lago.violations == []


def test_setup_metric_plan_customer_subscription_lifecycle(lago: Any) -> None:
    h = _auth(lago)
    metric = httpx.post(
        f"{lago.base_url}/billable_metrics",
        headers=h,
        json={
            "billable_metric": {
                "name": "GPU seconds",
                "code": "gpu_seconds",
                "aggregation_type": "sum_agg",
                "field_name": "seconds",
                "filters": [{"key": "gpu_model", "values": ["a100", "h100"]}],
            }
        },
    )
    assert metric.status_code == 200
    assert_documented(lago.spec, "POST", "/billable_metrics", metric)
    metric_id = metric.json()["billable_metric"]["lago_id"]
    assert metric.json()["billable_metric"]["filters"] == [{"key": "gpu_model", "values": ["a100", "h100"]}]

    dup = httpx.post(
        f"{lago.base_url}/billable_metrics",
        headers=h,
        json={
            "billable_metric": {
                "name": "GPU seconds",
                "code": "gpu_seconds",
                "aggregation_type": "sum_agg",
                "field_name": "seconds",
            }
        },
    )
    assert dup.status_code == 422
    assert dup.json()["error_details"] == {"code": ["value_already_exist"]}

    plan_body = {
        "plan": {
            "name": "GPU",
            "code": "gpu_plan",
            "interval": "monthly",
            "amount_cents": 0,
            "amount_currency": "USD",
            "pay_in_advance": False,
            "charges": [
                {"billable_metric_id": metric_id, "charge_model": "standard", "properties": {"amount": "0.0011"}}
            ],
        }
    }
    plan = httpx.post(f"{lago.base_url}/plans", headers=h, json=plan_body)
    assert plan.status_code == 200
    assert_documented(lago.spec, "POST", "/plans", plan)
    assert plan.json()["plan"]["charges"][0]["billable_metric_code"] == "gpu_seconds"

    updated = httpx.put(f"{lago.base_url}/plans/gpu_plan", headers=h, json={"plan": {"name": "GPU v2"}})
    assert updated.status_code == 200
    assert updated.json()["plan"]["name"] == "GPU v2"
    assert len(updated.json()["plan"]["charges"]) == 1
    got = httpx.get(f"{lago.base_url}/plans/gpu_plan", headers=h)
    assert (got.status_code, got.json()["plan"]["name"]) == (200, "GPU v2")
    missing = httpx.get(f"{lago.base_url}/plans/nope", headers=h)
    assert missing.status_code == 404
    assert missing.json() == {"status": 404, "error": "Not Found", "code": "plan_not_found"}

    customer = httpx.post(
        f"{lago.base_url}/customers",
        headers=h,
        json={"customer": {"external_id": "tenant-a", "name": "Tenant A", "currency": "USD"}},
    )
    assert customer.status_code == 200
    assert_documented(lago.spec, "POST", "/customers", customer)
    again = httpx.post(
        f"{lago.base_url}/customers", headers=h, json={"customer": {"external_id": "tenant-a", "name": "Tenant A2"}}
    )
    assert again.json()["customer"]["lago_id"] == customer.json()["customer"]["lago_id"]

    sub_body = {
        "subscription": {
            "external_customer_id": "tenant-a",
            "plan_code": "gpu_plan",
            "external_id": "sub-tenant-a",
            "billing_time": "calendar",
        }
    }
    sub = httpx.post(f"{lago.base_url}/subscriptions", headers=h, json=sub_body)
    assert sub.status_code == 200
    assert_documented(lago.spec, "POST", "/subscriptions", sub)
    same = httpx.post(f"{lago.base_url}/subscriptions", headers=h, json=sub_body)
    assert same.json()["subscription"]["lago_id"] == sub.json()["subscription"]["lago_id"]

    terminated = httpx.delete(f"{lago.base_url}/subscriptions/sub-tenant-a", headers=h)
    assert terminated.status_code == 200
    assert terminated.json()["subscription"]["status"] == "terminated"
    assert_documented(lago.spec, "DELETE", "/subscriptions/{external_id}".replace("{external_id}", "x"), terminated)
    assert httpx.delete(f"{lago.base_url}/subscriptions/sub-tenant-a", headers=h).status_code == 404

    assert set(lago.objects) == {"billable_metrics", "plans", "customers", "subscriptions"}
    assert list(lago.objects["customers"]) == ["tenant-a"]
    assert lago.objects["subscriptions"]["sub-tenant-a"]["status"] == "terminated"
    assert lago.violations == []


def test_plan_with_unknown_metric_is_404(lago: Any) -> None:
    response = httpx.post(
        f"{lago.base_url}/plans",
        headers=_auth(lago),
        json={
            "plan": {
                "name": "x",
                "code": "x",
                "interval": "monthly",
                "amount_cents": 0,
                "amount_currency": "USD",
                "pay_in_advance": False,
                "charges": [{"billable_metric_id": "1a901a90-1a90-1a90-1a90-1a901a901a90", "charge_model": "standard"}],
            }
        },
    )

    assert response.status_code == 404
    assert response.json()["code"] == "billable_metric_not_found"


def test_go_down_cuts_an_in_flight_request(lago: Any) -> None:
    import threading

    lago.hang_next(5)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            httpx.post(f"{lago.base_url}/events", json={"event": EVENT}, headers=_auth(lago), timeout=10)
        except httpx.TransportError as exc:
            outcome.append(exc)

    client = threading.Thread(target=send)
    client.start()
    deadline = time.monotonic() + 5
    while not lago.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    lago.go_down()
    client.join(timeout=5)

    assert len(outcome) == 1 and isinstance(outcome[0], httpx.RemoteProtocolError)  # dropped, not a 500
    assert lago.events == {}


def test_current_and_past_usage_by_calendar_month_as_documented(lago: Any) -> None:
    """A subscription started on the 10th two months ago has two closed periods (two months
    ago, last month), newest first, and the current month. 10 GB on the 15th two months ago
    and 4 + 6 GB last month sum per period; an event before the subscription is in none."""
    from datetime import UTC, datetime, timedelta

    h = _auth(lago)
    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last = (month - timedelta(days=1)).replace(day=1)
    before = (last - timedelta(days=1)).replace(day=1)
    metric = {"name": "Storage", "code": "storage", "aggregation_type": "sum_agg", "field_name": "gb"}
    created = httpx.post(f"{lago.base_url}/billable_metrics", headers=h, json={"billable_metric": metric})
    charge = {"billable_metric_id": created.json()["billable_metric"]["lago_id"], "charge_model": "standard"}
    plan = {
        "name": "P",
        "code": "p",
        "interval": "monthly",
        "amount_cents": 0,
        "amount_currency": "USD",
        "pay_in_advance": False,
        "charges": [{**charge, "properties": {"amount": "0"}}],
    }
    assert httpx.post(f"{lago.base_url}/plans", headers=h, json={"plan": plan}).is_success
    started = (before + timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sub = {"external_customer_id": "c", "plan_code": "p", "external_id": "s", "subscription_at": started}
    assert httpx.post(f"{lago.base_url}/subscriptions", headers=h, json={"subscription": sub}).is_success
    for n, (when, gb) in enumerate(
        [
            (before + timedelta(days=14), "10"),
            (last, "4"),
            (last + timedelta(days=3), "6"),
            (before - timedelta(days=1), "99"),
        ]
    ):
        event = _event(n, external_subscription_id="s", timestamp=str(int(when.timestamp())), properties={"gb": gb})
        assert httpx.post(f"{lago.base_url}/events", headers=h, json={"event": event}).is_success

    query = {"external_subscription_id": "s", "per_page": "1"}
    first = httpx.get(f"{lago.base_url}/customers/c/past_usage", headers=h, params=query)
    assert first.status_code == 200
    assert_documented(lago.spec, "GET", "/customers/c/past_usage", first)
    second = httpx.get(f"{lago.base_url}/customers/c/past_usage", headers=h, params={**query, "page": "2"})
    periods = [*first.json()["usage_periods"], *second.json()["usage_periods"]]
    assert [(p["from_datetime"][:10], p["to_datetime"][11:], p["charges_usage"][0]["units"]) for p in periods] == [
        (last.date().isoformat(), "23:59:59Z", "10"),  # 4 + 6
        (before.date().isoformat(), "23:59:59Z", "10"),  # the 99 GB before the start is in no period
    ]
    assert first.json()["meta"] == {
        "current_page": 1,
        "next_page": 2,
        "prev_page": None,
        "total_pages": 2,
        "total_count": 2,
    }
    newest = httpx.get(f"{lago.base_url}/customers/c/past_usage", headers=h, params={**query, "periods_count": "1"})
    assert newest.json()["meta"]["total_count"] == 1
    current = httpx.get(
        f"{lago.base_url}/customers/c/current_usage", headers=h, params={"external_subscription_id": "s"}
    )
    assert_documented(lago.spec, "GET", "/customers/c/current_usage", current)
    assert current.json()["customer_usage"]["from_datetime"] == month.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lago.violations == []
