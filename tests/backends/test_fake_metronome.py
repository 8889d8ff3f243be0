"""The fake Metronome validates ingest/customers/metrics against the derived contract."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .helpers import assert_documented


def _auth(be: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {be.api_key}"}


def _event(n: int, **changes: Any) -> dict[str, Any]:
    # Field set from the SDK's usage_ingest_params (customer_id may be an ingest alias).
    return {
        "transaction_id": f"tx-{n}",
        "customer_id": "team@example.com",
        "event_type": "gpu_usage",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "properties": {"gpu_seconds": "25", "gpu_model": "h100"},
        **changes,
    }


def test_ingest_array_is_accepted_and_deduplicated(metronome: Any) -> None:
    first = httpx.post(f"{metronome.base_url}/v1/ingest", json=[_event(1), _event(2)], headers=_auth(metronome))
    again = httpx.post(
        f"{metronome.base_url}/v1/ingest", json=[_event(1), _event(3), _event(3)], headers=_auth(metronome)
    )

    assert (first.status_code, first.content) == (200, b"")
    assert again.status_code == 200  # duplicates are ignored, not rejected
    assert list(metronome.events) == ["tx-1", "tx-2", "tx-3"]
    assert metronome.events["tx-1"] == _event(1) | {"timestamp": metronome.events["tx-1"]["timestamp"]}
    assert metronome.violations == []


def test_gzip_body_is_accepted(metronome: Any) -> None:
    body = gzip.compress(json.dumps([_event(1)]).encode())
    response = httpx.post(
        f"{metronome.base_url}/v1/ingest",
        content=body,
        headers={**_auth(metronome), "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert response.status_code == 200
    assert list(metronome.events) == ["tx-1"]


@pytest.mark.parametrize(
    ("body", "violation"),
    [
        ([], "body: [] should be non-empty"),
        ([_event(i) for i in range(101)], "body: [{"),
        ([{k: v for k, v in _event(1).items() if k != "customer_id"}], "body/0: 'customer_id' is a required property"),
        ([_event(1, properties="gpu_seconds=25")], "body/0/properties: 'gpu_seconds=25' is not of type 'object'"),
        ({"events": [_event(1)]}, "body: {'events'"),
        ([_event(1, timestamp="27/11/2026 10:00")], "body/0/timestamp: '27/11/2026 10:00' is not a 'date-time'"),
    ],
)
def test_invalid_ingest_is_400_violation(metronome: Any, body: Any, violation: str) -> None:
    response = httpx.post(f"{metronome.base_url}/v1/ingest", json=body, headers=_auth(metronome))

    assert response.status_code == 400
    assert list(response.json()) == ["message"]
    assert len(metronome.violations) == 1
    assert metronome.violations[0].startswith(f"POST /v1/ingest: {violation}")
    assert metronome.events == {}


def test_timestamp_window_34_days_and_24_hours(metronome: Any) -> None:
    now = datetime.now(UTC)
    old = httpx.post(
        f"{metronome.base_url}/v1/ingest",
        headers=_auth(metronome),
        json=[_event(1), _event(2, timestamp=(now - timedelta(days=34, minutes=5)).isoformat())],
    )
    future = httpx.post(
        f"{metronome.base_url}/v1/ingest",
        headers=_auth(metronome),
        json=[_event(3, timestamp=(now + timedelta(hours=25)).isoformat())],
    )
    ok = httpx.post(
        f"{metronome.base_url}/v1/ingest",
        headers=_auth(metronome),
        json=[
            _event(4, timestamp=(now + timedelta(hours=23)).isoformat()),
            _event(5, timestamp=(now - timedelta(days=33)).isoformat()),
        ],
    )

    assert old.status_code == 400
    assert old.json() == {
        "message": "Invalid event at index 1 (transaction_id 'tx-2'): timestamp is more than 34 days in the past"
    }
    assert future.status_code == 400
    assert ok.status_code == 200
    assert list(metronome.events) == ["tx-4", "tx-5"]  # a bad event rejects its whole batch
    assert metronome.violations == []


def test_reject_one_event_rejects_the_batch_naming_it(metronome: Any) -> None:
    metronome.reject_events(lambda e: e["transaction_id"] == "tx-2", status=422)
    response = httpx.post(f"{metronome.base_url}/v1/ingest", json=[_event(1), _event(2)], headers=_auth(metronome))

    assert response.status_code == 422
    assert response.json() == {"message": "Invalid event at index 1 (transaction_id 'tx-2'): event rejected"}
    assert metronome.events == {}
    metronome.reject_events(None)
    assert (
        httpx.post(f"{metronome.base_url}/v1/ingest", json=[_event(1), _event(2)], headers=_auth(metronome)).status_code
        == 200
    )


def test_faults(metronome: Any) -> None:
    metronome.fail_next(429, retry_after=1.5)
    metronome.fail_next(500)
    url = f"{metronome.base_url}/v1/ingest"
    limited = httpx.post(url, json=[_event(1)], headers=_auth(metronome))
    broken = httpx.post(url, json=[_event(1)], headers=_auth(metronome))

    assert limited.status_code == 429
    assert (limited.headers["Retry-After"], limited.headers["retry-after-ms"]) == ("2", "1500")
    assert limited.json() == {"message": "Too Many Requests"}
    assert broken.status_code == 500
    metronome.go_down()
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json=[_event(1)], headers=_auth(metronome))
    metronome.come_up()
    metronome.hang_next(0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=[_event(1)], headers=_auth(metronome), timeout=0.1)
    time.sleep(0.6)
    assert httpx.post(url, json=[_event(1)], headers=_auth(metronome)).status_code == 200
    assert list(metronome.events) == ["tx-1"]
    assert len(metronome.requests) == 4  # the refused one never arrived


def test_auth(metronome: Any) -> None:
    wrong = httpx.post(f"{metronome.base_url}/v1/ingest", json=[_event(1)], headers={"Authorization": "Bearer x"})
    missing = httpx.post(f"{metronome.base_url}/v1/ingest", json=[_event(1)])

    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert metronome.violations == ["POST /v1/ingest: missing 'Authorization: Bearer <token>' (contract: bearerAuth)"]


def test_customers_metrics_and_idempotency_key(metronome: Any) -> None:
    h = _auth(metronome)
    customer = httpx.post(
        f"{metronome.base_url}/v1/customers",
        headers={**h, "Idempotency-Key": "c-1"},
        json={"name": "Tenant A", "ingest_aliases": ["team@example.com"]},
    )
    replay = httpx.post(
        f"{metronome.base_url}/v1/customers",
        headers={**h, "Idempotency-Key": "c-1"},
        json={"name": "Tenant A", "ingest_aliases": ["team@example.com"]},
    )
    changed = httpx.post(
        f"{metronome.base_url}/v1/customers", headers={**h, "Idempotency-Key": "c-1"}, json={"name": "Tenant B"}
    )
    alias_clash = httpx.post(
        f"{metronome.base_url}/v1/customers",
        headers=h,
        json={"name": "Tenant C", "ingest_aliases": ["team@example.com"]},
    )

    assert customer.status_code == 200
    assert_documented(metronome.spec, "POST", "/v1/customers", customer)
    assert replay.json() == customer.json()
    assert changed.status_code == 409
    assert alias_clash.status_code == 409
    assert len(metronome.objects["customers"]) == 1

    metric = httpx.post(
        f"{metronome.base_url}/v1/billable-metrics/create",
        headers=h,
        json={
            "name": "GPU seconds",
            "aggregation_type": "SUM",
            "aggregation_key": "gpu_seconds",
            "event_type_filter": {"in_values": ["gpu_usage"]},
            "group_keys": [["gpu_model"]],
        },
    )
    assert metric.status_code == 200
    assert_documented(metronome.spec, "POST", "/v1/billable-metrics/create", metric)
    mixed = httpx.post(
        f"{metronome.base_url}/v1/billable-metrics/create",
        headers=h,
        json={"name": "x", "sql": "select 1", "aggregation_type": "SUM"},
    )
    bad_enum = httpx.post(
        f"{metronome.base_url}/v1/billable-metrics/create",
        headers=h,
        json={"name": "x", "aggregation_type": "AVERAGE", "aggregation_key": "k"},
    )
    assert (mixed.status_code, bad_enum.status_code) == (400, 400)
    assert metronome.violations == [
        "POST /v1/billable-metrics/create: sql is mutually exclusive with aggregation_type",
        "POST /v1/billable-metrics/create: body/aggregation_type: 'AVERAGE' is not one of "
        "['COUNT', 'LATEST', 'MAX', 'SUM', 'UNIQUE']",
    ]
