"""Fake OpenMeter (Cloud spec by default): CloudEvents ingestion, meters, subjects, customers.

* ``POST /api/v1/events`` accepts ``application/cloudevents+json`` (one event),
  ``application/cloudevents-batch+json`` (array) and ``application/json`` (either); success is
  **204**. Every event is validated against the spec's ``Event`` (which, unlike CloudEvents,
  requires ``subject``) *and* against ``../shared/contracts/cloudevents/cloudevents.json``.
* Dedup on ``(source, id)``: a repeat is accepted (204) and counted once.
* The OSS handler forwards events one by one and stops at the first failure, so a rejected batch
  is **partially** ingested: events before the rejected one are kept (contracts.md §4).
  ``reject_events`` reproduces that; schema errors reject the whole request (decoding fails first).
* Errors are RFC 7807 ``application/problem+json``.
* ``cloud=False`` uses the self-hosted spec, which applies no authentication.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.responses import Response

from kubetally.testing.backends.base import Call, FakeBackend, bearer_token, json_response, reason
from kubetally.testing.contracts import Spec, cloudevent_errors, load_spec

PROBLEM_JSON = "application/problem+json"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID (48-bit ms time + 80 random bits, Crockford base32), the id format OpenMeter uses."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OpenMeterBackend(FakeBackend):
    name: ClassVar[str] = "openmeter"
    spec_name: ClassVar[str | None] = "openmeter"
    default_api_key: ClassVar[str] = "om_test_token"
    default_reject_status: ClassVar[int] = 400

    def __init__(self, *, cloud: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cloud = cloud
        if not cloud:
            self.spec = load_spec("openmeter-selfhosted")

    def event_key(self, event: Mapping[str, Any]) -> Hashable:
        """OpenMeter dedups on ``(source, id)``."""
        return (event.get("source"), event.get("id"))

    # -- contract -----------------------------------------------------------------------------
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
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": reason(status),
            "status": status,
            "detail": message,
            "instance": call.path if call else "",
        }
        if details:
            body["extensions"] = details
        return json_response(body, status, headers, media_type=PROBLEM_JSON)

    def rate_limit_headers(self, retry_after: float) -> dict[str, str]:
        seconds = str(max(0, round(retry_after)))
        return {"Retry-After": seconds, "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": seconds}

    def authenticate(self, call: Call) -> Response | None:
        if not self.cloud:
            return None
        token = bearer_token(call)
        if token is None:
            self.violation(call, "missing 'Authorization: Bearer <token>' (contract: CloudTokenAuth)")
            return self.error(401, "missing API token", call=call)
        if token != self.api_key:
            return self.error(401, "invalid API token", call=call)
        return None

    def validate_body(self, call: Call, spec: Spec, schema: Mapping[str, Any]) -> None:
        super().validate_body(call, spec, schema)
        if call.problems or call.operation_id != "ingestEvents":
            return
        events = call.payload if isinstance(call.payload, list) else [call.payload]
        problems = cloudevent_errors(events, "cloudevents")
        if problems:
            call.problems.extend(problems)
            call.problem_status = 400

    # -- routing --------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Response:
        handler = self._handlers.get(call.operation_id)
        if handler is None:
            return self.not_implemented(call)
        response: Response = handler(self, call)
        return response

    # -- events ---------------------------------------------------------------------------------
    def _ingest(self, call: Call) -> Response:
        events = call.payload if isinstance(call.payload, list) else [call.payload]
        for index, event in enumerate(events):
            status = self.rejected(event)
            if status is not None:
                return self.error(
                    status,
                    f"event {index} (id {event.get('id')!r}, source {event.get('source')!r}) "
                    "was rejected; earlier events in the request were ingested",
                    details={"index": index, "id": event.get("id"), "source": event.get("source")},
                    call=call,
                )
            with self._lock:
                self._events.setdefault(self.event_key(event), dict(event))
        return Response(status_code=204)

    # -- meters ---------------------------------------------------------------------------------
    def _create_meter(self, call: Call) -> Response:
        body = call.payload
        with self._lock:
            if self.get_object("meters", body["slug"]) is not None:
                return self.error(409, f"meter with slug {body['slug']!r} already exists", call=call)
            now = _now_iso()
            meter = {"id": new_ulid(), "createdAt": now, "updatedAt": now, **body}
            self.store_object("meters", body["slug"], meter)
        return json_response(meter, 201)

    def _find_meter(self, key: str) -> dict[str, Any] | None:
        return self.get_object("meters", key) or next(
            (m for m in self.objects.get("meters", {}).values() if m["id"] == key), None
        )

    def _get_meter(self, call: Call) -> Response:
        meter = self._find_meter(call.params["meterIdOrSlug"])
        if meter is None:
            return self.error(404, f"meter not found: {call.params['meterIdOrSlug']}", call=call)
        return json_response(meter)

    def _list_meters(self, call: Call) -> Response:
        return json_response(list(self.objects.get("meters", {}).values()))

    def _delete_meter(self, call: Call) -> Response:
        meter = self._find_meter(call.params["meterIdOrSlug"])
        if meter is None:
            return self.error(404, f"meter not found: {call.params['meterIdOrSlug']}", call=call)
        with self._lock:
            self._objects["meters"].pop(meter["slug"], None)
        return Response(status_code=204)

    # -- subjects & customers ---------------------------------------------------------------------
    def _upsert_subjects(self, call: Call) -> Response:
        out = []
        with self._lock:
            for item in call.payload:
                current = self.get_object("subjects", item["key"])
                now = _now_iso()
                subject = {**(current or {"id": new_ulid(), "createdAt": now}), **item, "updatedAt": now}
                self.store_object("subjects", item["key"], subject)
                out.append(subject)
        return json_response(out)

    def _create_customer(self, call: Call) -> Response:
        body = call.payload
        if "key" not in body and "usageAttribution" not in body:
            self.violation(call, "customer needs either key or usageAttribution.subjectKeys")
            return self.error(400, "either key or usageAttribution.subjectKeys must be provided", call=call)
        now = _now_iso()
        customer = {"id": new_ulid(), "createdAt": now, "updatedAt": now, **body}
        if "usageAttribution" not in customer:
            customer["usageAttribution"] = {"subjectKeys": [body["key"]]}
        with self._lock:
            key = str(body.get("key") or customer["id"])
            if self.get_object("customers", key) is not None:
                return self.error(409, f"customer with key {key!r} already exists", call=call)
            self.store_object("customers", key, customer)
        return json_response(customer, 201)

    _handlers: ClassVar[dict[str, Any]] = {
        "ingestEvents": _ingest,
        "createMeter": _create_meter,
        "getMeter": _get_meter,
        "listMeters": _list_meters,
        "deleteMeter": _delete_meter,
        "upsertSubject": _upsert_subjects,
        "createCustomer": _create_customer,
    }
