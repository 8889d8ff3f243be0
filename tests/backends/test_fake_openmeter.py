"""The fake OpenMeter validates CloudEvents ingestion (spec + CloudEvents schema) and setup calls."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from .helpers import assert_documented

BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"


def _auth(be: Any, content_type: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {be.api_key}"}
    if content_type:
        headers["Content-Type"] = content_type
    return headers


def _event(n: int, **changes: Any) -> dict[str, Any]:
    # Shape of the spec's Event example: CloudEvents 1.0 plus the required subject.
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "kubetally/cluster-a",
        "type": "gpu_usage",
        "subject": "tenant-a",
        "time": "2026-11-27T10:00:00.001Z",
        "data": {"gpu_seconds": "25"},
        **changes,
    }


def _post(be: Any, body: Any, content_type: str = BATCH) -> httpx.Response:
    return httpx.post(f"{be.base_url}/api/v1/events", content=json.dumps(body), headers=_auth(be, content_type))


def test_batch_single_and_plain_json_are_accepted_with_204(openmeter: Any) -> None:
    batch = _post(openmeter, [_event(1), _event(2)])
    single = _post(openmeter, _event(3), SINGLE)
    plain = _post(openmeter, [_event(4)], "application/json")

    assert [r.status_code for r in (batch, single, plain)] == [204, 204, 204]
    assert batch.content == b""
    assert set(openmeter.events) == {("kubetally/cluster-a", f"evt-{i}") for i in range(1, 5)}
    assert openmeter.violations == []


def test_dedup_on_id_and_source(openmeter: Any) -> None:
    assert _post(openmeter, [_event(1), _event(1)]).status_code == 204
    assert _post(openmeter, [_event(1), _event(1, source="kubetally/cluster-b")]).status_code == 204

    assert set(openmeter.events) == {("kubetally/cluster-a", "evt-1"), ("kubetally/cluster-b", "evt-1")}


@pytest.mark.parametrize(
    ("body", "content_type", "violation"),
    [
        ([{k: v for k, v in _event(1).items() if k != "subject"}], BATCH, "body/0: 'subject' is a required property"),
        ([_event(1, id="")], BATCH, "body/0/id: '' should be non-empty"),
        ([_event(1, data="25")], BATCH, "body/0/data: '25' is not of type 'object'"),
        # Not covered by OpenMeter's Event schema; caught by the CloudEvents JSON schema.
        ([_event(1, data_base64=5)], BATCH, "cloudevents/0/data_base64: 5 is not of type 'string', 'null'"),
        (_event(1), BATCH, "body: {"),
        ([_event(1)], SINGLE, "body: [{"),
    ],
)
def test_invalid_events_are_400_problem_and_violation(
    openmeter: Any, body: Any, content_type: str, violation: str
) -> None:
    response = _post(openmeter, body, content_type)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["title"], problem["status"], problem["instance"]) == (
        "about:blank",
        "Bad Request",
        400,
        "/api/v1/events",
    )
    assert_documented(openmeter.spec, "POST", "/api/v1/events", response)
    assert len(openmeter.violations) == 1
    assert openmeter.violations[0].startswith(f"POST /api/v1/events: {violation}")
    assert openmeter.events == {}


def test_wrong_content_type_is_violation(openmeter: Any) -> None:
    response = httpx.post(
        f"{openmeter.base_url}/api/v1/events", content=json.dumps([_event(1)]), headers=_auth(openmeter, "text/plain")
    )

    assert response.status_code == 400
    assert len(openmeter.violations) == 1
    assert "content type 'text/plain' not accepted" in openmeter.violations[0]


def test_rejected_event_ingests_the_prefix_only(openmeter: Any) -> None:
    openmeter.reject_events(lambda e: e["id"] == "evt-2")
    response = _post(openmeter, [_event(1), _event(2), _event(3)])

    assert response.status_code == 400
    assert response.json()["extensions"] == {"index": 1, "id": "evt-2", "source": "kubetally/cluster-a"}
    assert set(openmeter.events) == {("kubetally/cluster-a", "evt-1")}
    openmeter.reject_events(None)
    assert _post(openmeter, [_event(1), _event(2), _event(3)]).status_code == 204
    assert len(openmeter.events) == 3
    assert openmeter.violations == []


def test_faults_and_auth(openmeter: Any) -> None:
    openmeter.fail_next(429, retry_after=2)
    openmeter.fail_next(503)
    limited = _post(openmeter, [_event(1)])
    overloaded = _post(openmeter, [_event(1)])
    wrong = httpx.post(
        f"{openmeter.base_url}/api/v1/events",
        content=json.dumps([_event(1)]),
        headers={"Authorization": "Bearer nope", "Content-Type": BATCH},
    )

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert limited.json()["title"] == "Too Many Requests"
    assert overloaded.status_code == 503
    assert_documented(openmeter.spec, "POST", "/api/v1/events", overloaded)
    assert wrong.status_code == 401
    assert openmeter.events == {}

    openmeter.go_down()
    with pytest.raises(httpx.ConnectError):
        _post(openmeter, [_event(1)])
    openmeter.come_up()
    openmeter.hang_next(0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{openmeter.base_url}/api/v1/events",
            content=json.dumps([_event(1)]),
            headers=_auth(openmeter, BATCH),
            timeout=0.1,
        )
    time.sleep(0.6)
    assert list(openmeter.events) == [("kubetally/cluster-a", "evt-1")]
    assert openmeter.violations == []


def test_meters_subjects_customers(openmeter: Any) -> None:
    h = _auth(openmeter)
    meter = httpx.post(
        f"{openmeter.base_url}/api/v1/meters",
        headers=h,
        json={
            "slug": "gpu_seconds",
            "aggregation": "SUM",
            "eventType": "gpu_usage",
            "valueProperty": "$.gpu_seconds",
            "groupBy": {"gpu_model": "$.gpu_model"},
            "name": "GPU seconds",
        },
    )
    assert meter.status_code == 201
    assert_documented(openmeter.spec, "POST", "/api/v1/meters", meter)
    bad_slug = httpx.post(
        f"{openmeter.base_url}/api/v1/meters",
        headers=h,
        json={"slug": "GPU-Seconds", "aggregation": "SUM", "eventType": "gpu_usage"},
    )
    assert bad_slug.status_code == 400
    got = httpx.get(f"{openmeter.base_url}/api/v1/meters/gpu_seconds", headers=h)
    assert (got.status_code, got.json()["id"]) == (200, meter.json()["id"])

    subjects = httpx.post(
        f"{openmeter.base_url}/api/v1/subjects", headers=h, json=[{"key": "tenant-a", "displayName": "Tenant A"}]
    )
    assert subjects.status_code == 200
    assert_documented(openmeter.spec, "POST", "/api/v1/subjects", subjects)

    customer = httpx.post(
        f"{openmeter.base_url}/api/v1/customers",
        headers=h,
        json={"name": "Tenant A", "key": "tenant-a", "currency": "USD"},
    )
    assert customer.status_code == 201
    assert_documented(openmeter.spec, "POST", "/api/v1/customers", customer)
    keyless = httpx.post(f"{openmeter.base_url}/api/v1/customers", headers=h, json={"name": "No key"})
    assert keyless.status_code == 400

    assert set(openmeter.objects) == {"meters", "subjects", "customers"}
    assert len(openmeter.violations) == 2
    assert openmeter.violations[0].startswith("POST /api/v1/meters: body/slug: 'GPU-Seconds' does not match")
    assert (
        openmeter.violations[1] == "POST /api/v1/customers: customer needs either key or usageAttribution.subjectKeys"
    )


@pytest.mark.usefixtures("contracts_available")
def test_self_hosted_flavour_needs_no_auth() -> None:
    from kubetally.testing.backends import start_backend

    with start_backend("openmeter", cloud=False) as be:
        response = httpx.post(
            f"{be.base_url}/api/v1/events", content=json.dumps([_event(1)]), headers={"Content-Type": BATCH}
        )
        assert response.status_code == 204
        assert be.violations == []
