"""Fake Metronome: ``POST /v1/ingest`` plus customers and billable metrics.

The contract is *derived* from Metronome's SDK (see ``../shared/contracts/SOURCES.md``); where it
and the docs are silent the fake makes a conservative, documented choice:

* ingest takes a bare JSON array of 1–100 events (``Content-Encoding: gzip`` accepted); a
  ``transaction_id`` already accepted is a duplicate and silently ignored (200), as documented
  (34-day window; the fake never forgets);
* timestamps must be RFC 3339 with a 4-digit year, at most 24 h in the future and at most 34 days
  old (the docs state the future limit; the past limit is the backdating window, rejection
  assumed) → 400;
* error bodies are ``{"message": ...}`` (body shape not documented); a batch with one bad event
  is rejected **whole** (not documented either — the safe assumption for an adapter);
* ``Idempotency-Key`` on any POST: same key and body replay the first answer, different body → 409;
* 429s carry ``Retry-After`` and ``retry-after-ms``, which the official SDK honours.
"""

from __future__ import annotations

import gzip
import re
import uuid
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from starlette.responses import Response

from kubetally.testing.backends.base import Call, FakeBackend, bearer_token, json_response
from kubetally.testing.backends.idempotency import IdempotencyCache

MAX_PAST = timedelta(days=34)
MAX_FUTURE = timedelta(hours=24)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class MetronomeBackend(FakeBackend):
    name: ClassVar[str] = "metronome"
    spec_name: ClassVar[str | None] = "metronome"
    default_api_key: ClassVar[str] = "metronome-test-token"
    default_reject_status: ClassVar[int] = 400

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._idempotency = IdempotencyCache()

    def _reset_vendor_state(self) -> None:
        self._idempotency.clear()

    def event_key(self, event: Mapping[str, Any]) -> Hashable:
        """Metronome dedups on ``transaction_id``."""
        return event.get("transaction_id")

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
        return json_response({"message": message}, status, headers)

    def rate_limit_headers(self, retry_after: float) -> dict[str, str]:
        return {"Retry-After": str(max(0, round(retry_after))), "retry-after-ms": str(int(retry_after * 1000))}

    def authenticate(self, call: Call) -> Response | None:
        token = bearer_token(call)
        if token is None:
            self.violation(call, "missing 'Authorization: Bearer <token>' (contract: bearerAuth)")
            return self.error(401, "Unauthorized")
        if token != self.api_key:
            return self.error(401, "Unauthorized")
        return None

    def decode(self, call: Call) -> None:
        if call.headers.get("content-encoding", "").lower() == "gzip":
            try:
                call.body = gzip.decompress(call.body)
            except (OSError, EOFError) as exc:
                call.problems.append(f"Content-Encoding: gzip but the body is not gzip ({exc})")
                return
        super().decode(call)

    # -- routing --------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Response:
        handler = self._handlers.get(call.operation_id)
        if handler is None:
            return self.not_implemented(call)
        return self._idempotency.run(call, lambda c: handler(self, c), self._conflict)

    def _conflict(self, call: Call) -> Response:
        return self.error(409, "Idempotency-Key was already used with different request parameters")

    # -- ingest -----------------------------------------------------------------------------------
    def _timestamp_problem(self, call: Call, value: str) -> str | None:
        if not _RFC3339.match(value):
            self.violation(call, f"timestamp {value!r} is not RFC 3339 with a 4-digit year")
            return "timestamp must be RFC 3339"
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        now = datetime.now(UTC)
        if moment > now + MAX_FUTURE:
            return "timestamp is more than 24 hours in the future"
        if moment < now - MAX_PAST:
            return "timestamp is more than 34 days in the past"
        return None

    def _ingest(self, call: Call) -> Response:
        events: list[dict[str, Any]] = call.payload
        for index, event in enumerate(events):
            problem, status = self._timestamp_problem(call, event["timestamp"]), 400
            if problem is None:
                rejected = self.rejected(event)
                if rejected is not None:
                    problem, status = "event rejected", rejected
            if problem is not None:
                return self.error(
                    status, f"Invalid event at index {index} (transaction_id {event['transaction_id']!r}): {problem}"
                )
        with self._lock:
            for event in events:
                self._events.setdefault(event["transaction_id"], dict(event))
        return Response(status_code=200)

    # -- setup ------------------------------------------------------------------------------------
    def _create_customer(self, call: Call) -> Response:
        body = call.payload
        aliases = list(body.get("ingest_aliases") or [])
        with self._lock:
            taken = {
                alias: c["id"] for c in self._objects.get("customers", {}).values() for alias in c["ingest_aliases"]
            }
            clash = [alias for alias in aliases if alias in taken]
            if clash:
                return self.error(409, f"ingest alias {clash[0]!r} is already in use by another customer")
            customer_id = str(uuid.uuid4())
            customer = {
                "id": customer_id,
                "external_id": body.get("external_id") or customer_id,
                "ingest_aliases": aliases,
                "name": body["name"][:160],
                "custom_fields": body.get("custom_fields") or {},
            }
            self.store_object("customers", customer_id, customer)
        return json_response({"data": customer})

    def _create_metric(self, call: Call) -> Response:
        body = call.payload
        if "sql" in body:
            mixed = sorted(
                set(body)
                & {"aggregation_type", "aggregation_key", "event_type_filter", "property_filters", "group_keys"}
            )
            if mixed:
                self.violation(call, f"sql is mutually exclusive with {', '.join(mixed)}")
                return self.error(400, f"sql is mutually exclusive with {', '.join(mixed)}")
        elif "aggregation_type" not in body:
            self.violation(call, "aggregation_type is required when sql is not provided")
            return self.error(400, "aggregation_type is required when sql is not provided")
        elif body["aggregation_type"] != "COUNT" and "aggregation_key" not in body:
            self.violation(call, "aggregation_key is required for a non-COUNT metric without sql")
            return self.error(400, "aggregation_key is required when sql is not provided")
        metric_id = str(uuid.uuid4())
        self.store_object("billable_metrics", metric_id, {"id": metric_id, **body})
        return json_response({"data": {"id": metric_id}})

    _handlers: ClassVar[dict[str, Any]] = {
        "ingestUsage": _ingest,
        "createCustomer": _create_customer,
        "createBillableMetric": _create_metric,
    }
