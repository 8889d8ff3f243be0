"""The fake Stripe validates v1 form and v2 JSON meter requests and behaves as documented."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .helpers import assert_documented


def _auth(be: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {be.api_key}"}


def _setup(be: Any, *, formula: str = "sum") -> str:
    """A meter for ``gpu_seconds`` and a customer; returns the customer id."""
    meter = httpx.post(
        f"{be.base_url}/v1/billing/meters",
        headers=_auth(be),
        data={"display_name": "GPU seconds", "event_name": "gpu_seconds", "default_aggregation[formula]": formula},
    )
    assert meter.status_code == 200
    customer = httpx.post(
        f"{be.base_url}/v1/customers",
        headers=_auth(be),
        data={"name": "Tenant A", "email": "a@example.com", "metadata[tenant]": "a"},
    )
    assert customer.status_code == 200
    return str(customer.json()["id"])


def _v1_event(customer: str, identifier: str = "evt-1", **extra: str) -> dict[str, str]:
    return {
        "event_name": "gpu_seconds",
        "payload[stripe_customer_id]": customer,
        "payload[value]": "25",
        "identifier": identifier,
        "timestamp": str(int(time.time()) - 60),
        **extra,
    }


def _v2_event(customer: str, identifier: str = "evt-1", value: str = "25", **extra: Any) -> dict[str, Any]:
    return {
        "event_name": "gpu_seconds",
        "payload": {"stripe_customer_id": customer, "value": value},
        "identifier": identifier,
        "timestamp": datetime.now(UTC).isoformat(),
        **extra,
    }


def _session(be: Any) -> str:
    response = httpx.post(f"{be.base_url}/v2/billing/meter_event_session", headers=_auth(be))
    assert response.status_code == 200
    return str(response.json()["authentication_token"])


def test_setup_objects_are_documented(stripe: Any) -> None:
    customer = _setup(stripe)
    meters = httpx.get(f"{stripe.base_url}/v1/billing/meters", params={"status": "active"}, headers=_auth(stripe))

    assert meters.status_code == 200
    assert_documented(stripe.spec, "GET", "/v1/billing/meters", meters)
    meter = meters.json()["data"][0]
    assert (
        meter["event_name"],
        meter["customer_mapping"]["event_payload_key"],
        meter["value_settings"]["event_payload_key"],
    ) == ("gpu_seconds", "stripe_customer_id", "value")
    assert customer.startswith("cus_")
    assert set(stripe.objects) == {"meters", "customers"}
    assert stripe.objects["customers"][customer]["metadata"] == {"tenant": "a"}

    again = httpx.post(
        f"{stripe.base_url}/v1/billing/meters",
        headers=_auth(stripe),
        data={"display_name": "dup", "event_name": "gpu_seconds", "default_aggregation[formula]": "sum"},
    )
    assert again.status_code == 400
    assert again.json()["error"]["param"] == "event_name"

    bad_enum = httpx.get(f"{stripe.base_url}/v1/billing/meters", params={"status": "gone"}, headers=_auth(stripe))
    assert bad_enum.status_code == 400
    assert stripe.violations == ["GET /v1/billing/meters: query/status: 'gone' is not one of ['active', 'inactive']"]


def test_v1_meter_event_accepted_with_bearer_or_basic(stripe: Any) -> None:
    customer = _setup(stripe)
    response = httpx.post(f"{stripe.base_url}/v1/billing/meter_events", headers=_auth(stripe), data=_v1_event(customer))
    basic = base64.b64encode(f"{stripe.api_key}:".encode()).decode()
    second = httpx.post(
        f"{stripe.base_url}/v1/billing/meter_events",
        headers={"Authorization": f"Basic {basic}"},
        data=_v1_event(customer, "evt-2"),
    )

    assert response.status_code == 200
    assert second.status_code == 200
    assert_documented(stripe.spec, "POST", "/v1/billing/meter_events", response)
    assert response.json()["payload"] == {"stripe_customer_id": customer, "value": "25"}
    assert set(stripe.events) == {"evt-1", "evt-2"}
    assert isinstance(stripe.events["evt-1"]["timestamp"], int)  # form text coerced as the schema says
    assert stripe.requests[-1].headers["content-type"] == "application/x-www-form-urlencoded"
    assert stripe.violations == []


@pytest.mark.parametrize(
    ("changes", "param", "code", "message"),
    [
        ({"bogus": "1"}, "bogus", "parameter_unknown", "Received unknown parameter: bogus"),
        ({"payload[value]": None}, None, None, None),  # fine for the schema; the meter needs a value (below)
        ({"event_name": None}, "event_name", "parameter_missing", "Missing required param: event_name."),
        ({"timestamp": "yesterday"}, "timestamp", "parameter_invalid", "Invalid timestamp: 'yesterday' is not of type"),
    ],
)
def test_v1_invalid_bodies_are_violations(
    stripe: Any, changes: dict[str, Any], param: str | None, code: str | None, message: str | None
) -> None:
    customer = _setup(stripe)
    data = {k: v for k, v in {**_v1_event(customer), **changes}.items() if v is not None}
    response = httpx.post(f"{stripe.base_url}/v1/billing/meter_events", headers=_auth(stripe), data=data)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is None:  # schema-valid, refused by the meter: not a contract violation
        assert error["code"] == "payload_no_value_defined"
        assert error["param"] == "payload[value]"
        assert stripe.violations == []
        return
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"].startswith(message)
    assert len(stripe.violations) == 1
    assert stripe.violations[0].startswith(f"POST /v1/billing/meter_events: {message}")
    assert stripe.events == {}


def test_v1_duplicate_identifier_counts_once(stripe: Any) -> None:
    customer = _setup(stripe)
    first = httpx.post(f"{stripe.base_url}/v1/billing/meter_events", headers=_auth(stripe), data=_v1_event(customer))
    again = httpx.post(f"{stripe.base_url}/v1/billing/meter_events", headers=_auth(stripe), data=_v1_event(customer))

    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json()["error"]["param"] == "identifier"
    assert list(stripe.events) == ["evt-1"]


def test_v1_idempotency_key_replays_or_conflicts(stripe: Any) -> None:
    customer = _setup(stripe)
    headers = {**_auth(stripe), "Idempotency-Key": "k-1"}
    body = _v1_event(customer)
    first = httpx.post(f"{stripe.base_url}/v1/billing/meter_events", headers=headers, data=body)
    replay = httpx.post(f"{stripe.base_url}/v1/billing/meter_events", headers=headers, data=body)
    conflict = httpx.post(
        f"{stripe.base_url}/v1/billing/meter_events", headers=headers, data={**body, "identifier": "other"}
    )

    assert (first.status_code, replay.status_code, conflict.status_code) == (200, 200, 409)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert conflict.json()["error"]["type"] == "idempotency_error"
    assert list(stripe.events) == ["evt-1"]


def test_timestamp_window_35_days_past_5_minutes_future(stripe: Any) -> None:
    customer = _setup(stripe)
    old = str(int((datetime.now(UTC) - timedelta(days=35, minutes=1)).timestamp()))
    future = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    edge = str(int((datetime.now(UTC) - timedelta(days=34, hours=23)).timestamp()))

    too_old = httpx.post(
        f"{stripe.base_url}/v1/billing/meter_events",
        headers=_auth(stripe),
        data=_v1_event(customer, "old", timestamp=old),
    )
    in_future = httpx.post(
        f"{stripe.base_url}/v2/billing/meter_events",
        headers=_auth(stripe),
        json=_v2_event(customer, "future", timestamp=future),
    )
    ok = httpx.post(
        f"{stripe.base_url}/v1/billing/meter_events",
        headers=_auth(stripe),
        data=_v1_event(customer, "edge", timestamp=edge),
    )

    assert too_old.status_code == 400
    assert (too_old.json()["error"]["code"], too_old.json()["error"]["param"]) == (
        "timestamp_too_far_in_past",
        "timestamp",
    )
    assert in_future.status_code == 400
    assert in_future.json()["error"]["code"] == "timestamp_in_future"
    assert ok.status_code == 200
    assert list(stripe.events) == ["edge"]
    assert stripe.violations == []


def test_v2_meter_events_documented_errors(stripe: Any) -> None:
    customer = _setup(stripe)
    url = f"{stripe.base_url}/v2/billing/meter_events"
    ok = httpx.post(url, headers=_auth(stripe), json=_v2_event(customer))
    dup = httpx.post(url, headers=_auth(stripe), json=_v2_event(customer))
    no_meter = httpx.post(url, headers=_auth(stripe), json={**_v2_event(customer, "x1"), "event_name": "cpu"})
    bad_value = httpx.post(url, headers=_auth(stripe), json=_v2_event(customer, "x2", value="1.5"))
    no_customer = httpx.post(
        url, headers=_auth(stripe), json={"event_name": "gpu_seconds", "identifier": "x3", "payload": {"value": "1"}}
    )

    assert ok.status_code == 200
    assert_documented(stripe.spec, "POST", "/v2/billing/meter_events", ok)
    assert ok.json()["object"] == "v2.billing.meter_event"
    expected = [
        (dup, "duplicate_meter_event"),
        (no_meter, "no_meter"),
        (bad_value, "payload_invalid_value"),
        (no_customer, "payload_no_customer_defined"),
    ]
    for response, code in expected:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
        # The spec's default response is a oneOf that also lists the generic v2.error, so check the
        # specific documented schema for each code.
        assert stripe.spec.errors(f"#/components/schemas/v2.error.{code}", response.json()) == []
    assert list(stripe.events) == ["evt-1"]
    assert stripe.violations == []


def test_v2_invalid_type_is_violation(stripe: Any) -> None:
    customer = _setup(stripe)
    response = httpx.post(
        f"{stripe.base_url}/v2/billing/meter_events",
        headers=_auth(stripe),
        json={**_v2_event(customer), "payload": {"stripe_customer_id": customer, "value": 25}},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_invalid"
    assert stripe.violations == ["POST /v2/billing/meter_events: Invalid payload[value]: 25 is not of type 'string'"]


def test_stream_session_expiry_and_async_rejection(stripe: Any) -> None:
    customer = _setup(stripe)
    token = _session(stripe)
    url = f"{stripe.stream_base_url}/v2/billing/meter_event_stream"
    stripe.reject_events(lambda e: e["identifier"] == "s2")
    events = [
        _v2_event(customer, "s1"),
        _v2_event(customer, "s2"),
        _v2_event(customer, "s1"),
        {**_v2_event(customer, "s3"), "event_name": "unknown"},
    ]

    accepted = httpx.post(url, json={"events": events}, headers={"Authorization": f"Bearer {token}"})
    assert accepted.status_code == 200
    assert accepted.json() == {}
    assert list(stripe.events) == ["s1"]
    assert [(e["identifier"], e["code"]) for e in stripe.async_errors] == [
        ("s2", "payload_invalid_value"),
        ("s1", "duplicate_meter_event"),
        ("s3", "no_meter"),
    ]

    stripe.expire_sessions()
    expired = httpx.post(
        url, json={"events": [_v2_event(customer, "s4")]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "billing_meter_event_session_expired"
    assert expired.json()["error"]["type"] == "temporary_session_expired"
    assert stripe.spec.errors("#/components/schemas/v2.error.billing_meter_event_session_expired", expired.json()) == []

    fresh = httpx.post(
        url, json={"events": [_v2_event(customer, "s4")]}, headers={"Authorization": f"Bearer {_session(stripe)}"}
    )
    assert fresh.status_code == 200
    assert list(stripe.events) == ["s1", "s4"]
    assert stripe.violations == []


def test_stream_limits_and_auth_are_contract(stripe: Any) -> None:
    customer = _setup(stripe)
    url = f"{stripe.base_url}/v2/billing/meter_event_stream"
    too_many = httpx.post(
        url,
        json={"events": [_v2_event(customer, f"e{i}") for i in range(101)]},
        headers={"Authorization": f"Bearer {_session(stripe)}"},
    )
    with_secret_key = httpx.post(url, json={"events": [_v2_event(customer)]}, headers=_auth(stripe))

    assert too_many.status_code == 400
    assert with_secret_key.status_code == 401
    assert stripe.events == {}
    assert stripe.violations == [
        "POST /v2/billing/meter_event_stream: stream request with 101 events exceeds the documented 100",
        "POST /v2/billing/meter_event_stream: stream called with the secret key instead of a meter event session token",
    ]


def test_auth_errors(stripe: Any) -> None:
    wrong = httpx.post(f"{stripe.base_url}/v1/customers", headers={"Authorization": "Bearer sk_test_wrong_key_123"})
    missing = httpx.post(f"{stripe.base_url}/v2/billing/meter_event_session")

    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "invalid_request_error"
    assert "sk_test_wrong_key_123" not in wrong.text  # key is masked
    assert missing.status_code == 401
    assert stripe.violations == [
        "POST /v2/billing/meter_event_session: missing or malformed Authorization (contract: basicAuth or bearerAuth)"
    ]


def test_faults_429_500_down_hang(stripe: Any) -> None:
    customer = _setup(stripe)
    stripe.fail_next(429, retry_after=1)
    stripe.fail_next(500)
    url = f"{stripe.base_url}/v1/billing/meter_events"
    limited = httpx.post(url, headers=_auth(stripe), data=_v1_event(customer))
    broken = httpx.post(url, headers=_auth(stripe), data=_v1_event(customer))

    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json() == {
        "error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too Many Requests"}
    }
    assert broken.status_code == 500
    assert broken.json()["error"]["type"] == "api_error"
    assert stripe.events == {}

    stripe.go_down()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, headers=_auth(stripe), data=_v1_event(customer))
    stripe.come_up()
    stripe.hang_next(0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, headers=_auth(stripe), data=_v1_event(customer), timeout=0.1)
    time.sleep(0.6)
    assert list(stripe.events) == ["evt-1"]
    assert stripe.violations == []


def test_event_summaries_and_cancel_adjustment(stripe: Any) -> None:
    customer = _setup(stripe)
    for i in range(3):
        assert (
            httpx.post(
                f"{stripe.base_url}/v2/billing/meter_events",
                headers=_auth(stripe),
                json=_v2_event(customer, f"e{i}", value=str(10 + i)),
            ).status_code
            == 200
        )
    cancel = httpx.post(
        f"{stripe.base_url}/v2/billing/meter_event_adjustments",
        headers=_auth(stripe),
        json={"event_name": "gpu_seconds", "type": "cancel", "cancel": {"identifier": "e0"}},
    )
    assert cancel.status_code == 200
    assert_documented(stripe.spec, "POST", "/v2/billing/meter_event_adjustments", cancel)

    meter_id = next(iter(stripe.objects["meters"]))
    now = int(time.time())
    start, end = (now - 3600) // 60 * 60, (now + 120) // 60 * 60
    summary = httpx.get(
        f"{stripe.base_url}/v1/billing/meters/{meter_id}/event_summaries",
        headers=_auth(stripe),
        params={"customer": customer, "start_time": start, "end_time": end},
    )
    assert summary.status_code == 200
    assert_documented(stripe.spec, "GET", f"/v1/billing/meters/{meter_id}/event_summaries", summary)
    assert summary.json()["data"][0]["aggregated_value"] == 23
    missing_param = httpx.get(
        f"{stripe.base_url}/v1/billing/meters/{meter_id}/event_summaries",
        headers=_auth(stripe),
        params={"customer": customer},
    )
    assert missing_param.status_code == 400
    assert stripe.violations == [
        f"GET /v1/billing/meters/{meter_id}/event_summaries: query parameter 'end_time' is required by the contract",
        f"GET /v1/billing/meters/{meter_id}/event_summaries: query parameter 'start_time' is required by the contract",
    ]
