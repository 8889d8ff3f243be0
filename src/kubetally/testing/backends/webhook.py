"""Fake generic webhook receiver: ``POST /hook`` with CloudEvents, signed Standard-Webhooks style.

There is no vendor contract (contracts.md §5); the fake enforces the one we publish:

* body: one CloudEvent (``application/cloudevents+json``) or a batch
  (``application/cloudevents-batch+json``, at most ``max_batch`` events, default 100), each valid
  against ``../shared/contracts/cloudevents/cloudevents.json``;
* headers ``webhook-id``, ``webhook-timestamp`` (±5 min) and ``webhook-signature`` verified with
  :mod:`kubetally.delivery.signing` — the same code the sender uses. A bad or missing signature is
  401 **and** a violation (our sender must never produce one);
* dedup on ``(source, id)``; success is 204;
* ``reject_events`` rejects the whole request (422) listing the offending events.

``api_key`` is the shared HMAC secret (``whsec_<base64>`` or plain text, see
:func:`kubetally.delivery.signing.decode_secret`).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from typing import Any, ClassVar

from starlette.responses import Response

from kubetally.delivery import signing
from kubetally.testing.backends.base import Call, FakeBackend, json_response
from kubetally.testing.contracts import cloudevent_errors

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
HOOK_PATH = "/hook"


class WebhookBackend(FakeBackend):
    name: ClassVar[str] = "webhook"
    base_path: ClassVar[str] = HOOK_PATH
    default_api_key: ClassVar[str] = "kubetally-webhook-secret"

    def __init__(self, *, max_batch: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_batch = max_batch

    def event_key(self, event: Mapping[str, Any]) -> Hashable:
        """CloudEvents: identical ``source`` and ``id`` mean the same event."""
        return (event.get("source"), event.get("id"))

    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
        call: Call | None = None,
    ) -> Response:
        body: dict[str, Any] = {"error": message}
        if details is not None:
            body["details"] = details
        return json_response(body, status, headers)

    # -- contract -----------------------------------------------------------------------------
    def check_contract(self, call: Call) -> None:
        if call.path != HOOK_PATH:
            call.problems.append(f"path {call.path} is not the webhook endpoint {HOOK_PATH}")
            call.problem_status = 404
            return
        if call.method != "POST":
            call.problems.append(f"method {call.method} not allowed (only POST)")
            call.problem_status = 405
            return
        if call.content_type not in (SINGLE, BATCH):
            call.problems.append(f"content type {call.content_type!r} not accepted ({SINGLE} or {BATCH})")
            call.problem_status = 415
            return
        self.decode(call)
        if call.problems:
            return
        if call.content_type == BATCH and not isinstance(call.payload, list):
            call.problems.append(f"{BATCH} body must be a JSON array")
        elif call.content_type == SINGLE and not isinstance(call.payload, dict):
            call.problems.append(f"{SINGLE} body must be one JSON object")
        if call.problems:
            return
        events = call.payload if isinstance(call.payload, list) else [call.payload]
        if len(events) > self.max_batch:
            call.problems.append(f"batch of {len(events)} events exceeds the receiver's maximum {self.max_batch}")
            call.problem_status = 413
            return
        call.problems.extend(cloudevent_errors(events, "body"))

    def authenticate(self, call: Call) -> Response | None:
        msg_id = call.headers.get(signing.HEADER_ID)
        timestamp = call.headers.get(signing.HEADER_TIMESTAMP)
        signature = call.headers.get(signing.HEADER_SIGNATURE)
        if not (msg_id and timestamp and signature):
            missing = [
                h
                for h, v in (
                    (signing.HEADER_ID, msg_id),
                    (signing.HEADER_TIMESTAMP, timestamp),
                    (signing.HEADER_SIGNATURE, signature),
                )
                if not v
            ]
            self.violation(call, f"missing signature headers: {', '.join(missing)}")
            return self.error(401, "missing signature headers")
        secret = signing.decode_secret(self.api_key)
        if not signing.verify(secret, msg_id, timestamp, call.body, signature):
            self.violation(call, "webhook-signature does not verify (wrong secret, body or stale timestamp)")
            return self.error(401, "invalid signature")
        return None

    # -- handling -------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Response:
        events: list[dict[str, Any]] = call.payload if isinstance(call.payload, list) else [call.payload]
        rejected = [(i, e) for i, e in enumerate(events) if self.rejected(e) is not None]
        if rejected:
            status = self.rejected(rejected[0][1]) or 422
            return self.error(
                status,
                f"{len(rejected)} event(s) rejected; nothing was accepted",
                details=[{"index": i, "source": e.get("source"), "id": e.get("id")} for i, e in rejected],
            )
        with self._lock:
            for event in events:
                self._events.setdefault(self.event_key(event), dict(event))
        return Response(status_code=204)


def sign_request(secret: str, msg_id: str, timestamp: int, events: Any) -> tuple[bytes, dict[str, str]]:
    """Body and headers for a signed webhook delivery (handy in tests and manual runs)."""
    body = json.dumps(events, separators=(",", ":")).encode()
    content_type = BATCH if isinstance(events, list) else SINGLE
    headers = {
        "Content-Type": content_type,
        **signing.signature_headers(signing.decode_secret(secret), msg_id, timestamp, body),
    }
    return body, headers
