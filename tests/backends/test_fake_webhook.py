"""The fake webhook receiver checks CloudEvents bodies and Standard-Webhooks signatures."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from kubetally.delivery import signing
from kubetally.testing.backends.webhook import sign_request


def _event(n: int, **changes: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{n}",
        "source": "kubetally/cluster-a",
        "type": "kubetally.usage",
        "time": "2026-11-27T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {"gpu_seconds": "25"},
        **changes,
    }


def _post(be: Any, events: Any, msg_id: str = "msg-1", **kwargs: Any) -> httpx.Response:
    body, headers = sign_request(be.api_key, msg_id, int(time.time()), events)
    return httpx.post(be.base_url, content=body, headers=headers, **kwargs)


def test_signed_batch_and_single_are_accepted(webhook: Any) -> None:
    batch = _post(webhook, [_event(1), _event(2)])
    single = _post(webhook, _event(3), "msg-2")

    assert webhook.base_url.endswith("/hook")
    assert (batch.status_code, single.status_code) == (204, 204)
    assert set(webhook.events) == {("kubetally/cluster-a", f"evt-{i}") for i in (1, 2, 3)}
    assert webhook.requests[0].headers["content-type"] == "application/cloudevents-batch+json"
    assert webhook.violations == []


def test_duplicates_count_once(webhook: Any) -> None:
    assert _post(webhook, [_event(1), _event(1)]).status_code == 204
    assert _post(webhook, [_event(1)], "msg-2").status_code == 204

    assert list(webhook.events) == [("kubetally/cluster-a", "evt-1")]


def test_bad_signature_is_401_and_violation(webhook: Any) -> None:
    body, headers = sign_request("some-other-secret", "msg-1", int(time.time()), [_event(1)])
    wrong_secret = httpx.post(webhook.base_url, content=body, headers=headers)
    body, headers = sign_request(webhook.api_key, "msg-1", int(time.time()) - 600, [_event(1)])
    stale = httpx.post(webhook.base_url, content=body, headers=headers)
    unsigned = httpx.post(
        webhook.base_url, content=body, headers={"Content-Type": "application/cloudevents-batch+json"}
    )

    assert [r.status_code for r in (wrong_secret, stale, unsigned)] == [401, 401, 401]
    assert wrong_secret.json() == {"error": "invalid signature"}
    assert webhook.events == {}
    assert webhook.violations == [
        "POST /hook: webhook-signature does not verify (wrong secret, body or stale timestamp)",
        "POST /hook: webhook-signature does not verify (wrong secret, body or stale timestamp)",
        "POST /hook: missing signature headers: webhook-id, webhook-timestamp, webhook-signature",
    ]


@pytest.mark.usefixtures("contracts_available")
def test_whsec_secret_is_decoded_like_the_sender_does() -> None:
    from kubetally.testing.backends import start_backend

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with start_backend("webhook", api_key=secret) as be:
        body = json.dumps([_event(1)]).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/cloudevents-batch+json",
            **signing.signature_headers(signing.decode_secret(secret), "m", now, body),
        }
        assert httpx.post(be.base_url, content=body, headers=headers).status_code == 204
        assert be.violations == []


@pytest.mark.parametrize(
    ("events", "status", "violation"),
    [
        ([{k: v for k, v in _event(1).items() if k != "source"}], 400, "body/0: 'source' is a required property"),
        ([_event(1, id="")], 400, "body/0/id: '' should be non-empty"),
        ([_event(i) for i in range(101)], 413, "batch of 101 events exceeds the receiver's maximum 100"),
    ],
)
def test_invalid_cloudevents_are_violations(webhook: Any, events: Any, status: int, violation: str) -> None:
    response = _post(webhook, events)

    assert response.status_code == status
    assert webhook.violations == [f"POST /hook: {violation}"]
    assert webhook.events == {}


def test_wrong_content_type_and_path(webhook: Any) -> None:
    body = json.dumps([_event(1)]).encode()
    headers = signing.signature_headers(signing.decode_secret(webhook.api_key), "m", int(time.time()), body)
    as_json = httpx.post(webhook.base_url, content=body, headers={**headers, "Content-Type": "application/json"})
    elsewhere = httpx.post(
        webhook.base_url + "/x", content=body, headers={**headers, "Content-Type": "application/cloudevents-batch+json"}
    )

    assert (as_json.status_code, elsewhere.status_code) == (415, 404)
    assert len(webhook.violations) == 2


def test_reject_and_faults(webhook: Any) -> None:
    webhook.reject_events(lambda e: e["id"] == "evt-2")
    rejected = _post(webhook, [_event(1), _event(2)])
    assert rejected.status_code == 422
    assert rejected.json()["details"] == [{"index": 1, "source": "kubetally/cluster-a", "id": "evt-2"}]
    assert webhook.events == {}
    webhook.reject_events(None)

    webhook.fail_next(429, retry_after=4)
    webhook.fail_next(500)
    limited = _post(webhook, [_event(1)])
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "4")
    assert _post(webhook, [_event(1)]).status_code == 500
    webhook.go_down()
    with pytest.raises(httpx.ConnectError):
        _post(webhook, [_event(1)])
    webhook.come_up()
    webhook.hang_next(0.5)
    with pytest.raises(httpx.ReadTimeout):
        _post(webhook, [_event(1)], timeout=0.1)
    time.sleep(0.6)
    assert list(webhook.events) == [("kubetally/cluster-a", "evt-1")]
    assert webhook.violations == []
