"""Fake Stripe Billing Meters: v1 (form) meters/customers/meter events, v2 (JSON) meter events,
meter-event sessions and the high-throughput stream.

Documented behaviour reproduced (``../shared/reference/contracts.md`` §2 and the spec extract):

* auth: ``Authorization: Bearer <secret key>`` or HTTP Basic with the key as user name; the stream
  accepts only a session ``authentication_token`` (15 min). After :meth:`StripeBackend.expire_sessions`
  the stream answers 401 ``billing_meter_event_session_expired`` (type ``temporary_session_expired``).
* v1 bodies are form/deepObject; they are decoded, coerced by the schema and validated (the v1
  schemas set ``additionalProperties: false``, so unknown fields are violations).
* meter events: ``identifier`` is unique (the fake never forgets, Stripe keeps ≥24 h); the v2 sync
  endpoint answers 400 ``duplicate_meter_event``, v1 400 ``invalid_request_error`` with
  ``param=identifier`` (v1 code not documented). Timestamps older than 35 days or more than 5 min in
  the future are rejected (codes ``timestamp_too_far_in_past`` / ``timestamp_in_future``, Stripe's
  meter error-report reason codes). The event must name an active meter (``no_meter`` /
  ``archived_meter``) unless the fake is built with ``require_meter=False``; the payload must carry
  the meter's customer and value keys; values must be non-negative integers (``payload_invalid_value``).
* the stream (≤100 events) is **asynchronous**: a well-formed request always gets 200 ``{}``; bad
  events are dropped and listed in :attr:`StripeBackend.async_errors` (Stripe reports them later as
  ``v1.billing.meter.error_report_triggered``).
* v1 ``Idempotency-Key``: the same key and body replay the first answer; the same key with a
  different body is 409 ``idempotency_error``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from starlette.responses import Response

from kubetally.testing.backends.base import Call, FakeBackend, bearer_token, json_response
from kubetally.testing.backends.form_encoding import FormError, coerce, decode_form
from kubetally.testing.backends.idempotency import IdempotencyCache
from kubetally.testing.contracts import Spec

#: One clause of the search queries the fake understands: ``metadata['key']:'value'`` or ``name:'value'``.
_CLAUSE = re.compile(r"(?P<key>metadata\['[^'\]]+'\]|name):'(?P<value>(?:[^'\\]|\\.)*)'")
SESSION_TTL = timedelta(minutes=15)
MAX_PAST = timedelta(days=35)
MAX_FUTURE = timedelta(minutes=5)
MAX_STREAM_BATCH = 100
STREAM_PATH = "/v2/billing/meter_event_stream"
SESSION_EXPIRED_DOC = "https://docs.stripe.com/api/v2/billing-meter-stream"

_V2_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    429: "rate_limited",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bracket(path: list[str]) -> str:
    """``["payload", "value"]`` → ``payload[value]`` (Stripe's way to name a parameter)."""
    return path[0] + "".join(f"[{p}]" for p in path[1:]) if path else ""


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class EventProblem(Exception):
    """A meter event Stripe refuses: v2 ``code``, message, v1 ``param`` and HTTP status."""

    def __init__(self, code: str, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.status = status


class StripeBackend(FakeBackend):
    name: ClassVar[str] = "stripe"
    spec_name: ClassVar[str | None] = "stripe"
    default_api_key: ClassVar[str] = "sk_test_kubetally"
    default_reject_status: ClassVar[int] = 400

    def __init__(self, *, require_meter: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.require_meter = require_meter
        self._sessions: dict[str, datetime] = {}
        self._idempotency = IdempotencyCache()
        self._async_errors: list[dict[str, Any]] = []

    # -- extras -------------------------------------------------------------------------------
    @property
    def stream_base_url(self) -> str:
        """Production streams go to ``meter-events.stripe.com``; the fake serves both hosts."""
        return self.base_url

    @property
    def async_errors(self) -> list[dict[str, Any]]:
        """Stream events dropped during asynchronous processing: ``{identifier, code, message}``."""
        with self._lock:
            return list(self._async_errors)

    def expire_sessions(self) -> None:
        """Make every issued stream token expired (as after 15 minutes)."""
        with self._lock:
            past = _now() - timedelta(seconds=1)
            for token in self._sessions:
                self._sessions[token] = past

    def _reset_vendor_state(self) -> None:
        self._sessions.clear()
        self._idempotency.clear()
        self._async_errors.clear()

    def event_key(self, event: Mapping[str, Any]) -> Hashable:
        """Stripe dedups on ``identifier``."""
        return event.get("identifier")

    # -- errors & auth --------------------------------------------------------------------------
    def error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
        call: Call | None = None,
        error_type: str | None = None,
    ) -> Response:
        if call is not None and call.path.startswith("/v2/"):
            body: dict[str, Any] = {"code": code or _V2_CODES.get(status, "internal_error"), "message": message}
            if error_type:
                body["type"] = error_type
            return json_response({"error": body}, status, headers)
        kind = error_type or (
            "idempotency_error" if status == 409 else "api_error" if status >= 500 else "invalid_request_error"
        )
        v1: dict[str, Any] = {"type": kind, "message": message}
        if code or status == 429:
            v1["code"] = code or "rate_limit"
        if isinstance(details, str):
            v1["param"] = details
        return json_response({"error": v1}, status, headers)

    def authenticate(self, call: Call) -> Response | None:
        header = call.headers.get("authorization", "")
        if call.path == STREAM_PATH:
            return self._authenticate_stream(call)
        key = bearer_token(call)
        if key is None and header.lower().startswith("basic "):
            try:
                key = base64.b64decode(header[6:].strip(), validate=True).decode().split(":", 1)[0]
            except (binascii.Error, UnicodeDecodeError):
                key = None
        if key is None:
            self.violation(call, "missing or malformed Authorization (contract: basicAuth or bearerAuth)")
            return self.error(401, "You did not provide an API key.", call=call)
        if key != self.api_key:
            masked = f"{key[:8]}****{key[-4:]}" if len(key) > 12 else "****"
            return self.error(401, f"Invalid API Key provided: {masked}", code="invalid_api_key", call=call)
        return None

    def _authenticate_stream(self, call: Call) -> Response | None:
        token = bearer_token(call)
        if token is None:
            self.violation(call, "missing 'Authorization: Bearer <authentication_token>' on the stream")
            return self.error(401, "No authentication token provided.", call=call)
        with self._lock:
            expires = self._sessions.get(token)
        if expires is None:
            if token == self.api_key:
                self.violation(call, "stream called with the secret key instead of a meter event session token")
            return self.error(401, "Invalid authentication token.", call=call)
        if expires <= _now():
            return json_response(
                {
                    "error": {
                        "code": "billing_meter_event_session_expired",
                        "type": "temporary_session_expired",
                        "message": "The meter event session has expired; create a new one.",
                        "doc_url": SESSION_EXPIRED_DOC,
                    }
                },
                401,
            )
        return None

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, call: Call) -> None:
        if call.content_type != "application/x-www-form-urlencoded":
            super().decode(call)
            return
        try:
            decoded = decode_form(call.body)
        except (FormError, UnicodeDecodeError) as exc:
            call.problems.append(f"form body cannot be decoded ({exc})")
            return
        assert call.match is not None and self.spec is not None
        schema = self.spec.request_schema(call.match.operation, call.content_type)
        call.payload = coerce(decoded, self.spec.inlined(schema)) if schema is not None else decoded

    def validate_body(self, call: Call, spec: Spec, schema: Mapping[str, Any]) -> None:
        """Schema errors phrased as Stripe does, with ``param`` in bracket notation."""
        if spec.known_valid(schema, call.payload):
            return
        params: list[str] = []
        for err in spec.validator(schema).iter_errors(call.payload):
            path = [str(p) for p in err.absolute_path]
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                allowed = set(err.schema.get("properties") or {})
                for name in sorted(set(err.instance) - allowed):
                    param = _bracket([*path, name])
                    params.append(param)
                    call.problems.append(f"Received unknown parameter: {param}")
            elif err.validator == "required":
                name = err.message.split("'")[1] if "'" in err.message else "?"
                param = _bracket([*path, name])
                params.append(param)
                call.problems.append(f"Missing required param: {param}.")
            else:
                param = _bracket(path) or "body"
                params.append(param)
                call.problems.append(f"Invalid {param}: {err.message[:300]}")
        if call.problems:
            call.problem_status = 400
            call.problem_details = params[0]
        else:
            spec.errors(schema, call.payload)  # remembers the valid shape

    def contract_error(self, call: Call) -> Response:
        if call.problem_status == 404:
            return self.error(404, f"Unrecognized request URL ({call.method}: {call.path}).", call=call)
        param = call.problem_details if isinstance(call.problem_details, str) else None
        return self.error(
            call.problem_status,
            "; ".join(call.problems)[:2000],
            details=param,
            code="parameter_unknown"
            if call.problems[0].startswith("Received unknown")
            else "parameter_missing"
            if call.problems[0].startswith("Missing required")
            else "parameter_invalid"
            if param
            else None,
            call=call,
        )

    # -- routing --------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Response:
        handler = self._handlers.get(call.operation_id)
        if handler is None:
            return self.not_implemented(call)
        if call.method == "POST" and call.path.startswith("/v1/"):
            return self._idempotency.run(call, lambda c: handler(self, c), self._idempotency_conflict)
        response: Response = handler(self, call)
        return response

    def _idempotency_conflict(self, call: Call) -> Response:
        return self.error(
            409,
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            call=call,
        )

    # -- meters ---------------------------------------------------------------------------------
    def _meter_by_event_name(self, event_name: str) -> dict[str, Any] | None:
        meters = [m for m in self.objects.get("meters", {}).values() if m["event_name"] == event_name]
        active = [m for m in meters if m["status"] == "active"]
        return (active or meters)[0] if meters else None

    def _create_meter(self, call: Call) -> Response:
        body = call.payload
        with self._lock:
            existing = self._meter_by_event_name(body["event_name"])
            if existing is not None and existing["status"] == "active":
                return self.error(
                    400,
                    f"An active meter with event_name `{body['event_name']}` already exists.",
                    details="event_name",
                    call=call,
                )
            now = int(_now().timestamp())
            meter = {
                "id": _new_id("mtr"),
                "object": "billing.meter",
                "created": now,
                "customer_mapping": {
                    "event_payload_key": (body.get("customer_mapping") or {}).get(
                        "event_payload_key", "stripe_customer_id"
                    ),
                    "type": "by_id",
                },
                "default_aggregation": {"formula": body["default_aggregation"]["formula"]},
                "display_name": body["display_name"],
                "event_name": body["event_name"],
                "livemode": False,
                "status": "active",
                "status_transitions": {"deactivated_at": None},
                "updated": now,
                "value_settings": {
                    "event_payload_key": (body.get("value_settings") or {}).get("event_payload_key", "value")
                },
            }
            if body.get("event_time_window"):
                # Omitted when unset: the spec's nullable enum lacks null, so a null fails strict validation.
                meter["event_time_window"] = body["event_time_window"]
            self.store_object("meters", meter["id"], meter)
        return json_response(meter)

    def _list_meters(self, call: Call) -> Response:
        status = call.query["status"][0] if call.query.get("status") else None
        meters = [m for m in self.objects.get("meters", {}).values() if status in (None, m["status"])]
        return json_response({"object": "list", "data": meters, "has_more": False, "url": "/v1/billing/meters"})

    def _meter_or_404(self, call: Call) -> dict[str, Any] | Response:
        meter = self.get_object("meters", call.params["id"])
        if meter is None:
            return self.error(
                404, f"No such billing meter: '{call.params['id']}'", code="resource_missing", details="id", call=call
            )
        return meter

    def _get_meter(self, call: Call) -> Response:
        meter = self._meter_or_404(call)
        return meter if isinstance(meter, Response) else json_response(meter)

    def _update_meter(self, call: Call) -> Response:
        with self._lock:
            meter = self._meter_or_404(call)
            if isinstance(meter, Response):
                return meter
            if "display_name" in (call.payload or {}):
                meter = {**meter, "display_name": call.payload["display_name"], "updated": int(_now().timestamp())}
                self.store_object("meters", meter["id"], meter)
        return json_response(meter)

    def _set_meter_status(self, call: Call, status: str) -> Response:
        with self._lock:
            meter = self._meter_or_404(call)
            if isinstance(meter, Response):
                return meter
            now = int(_now().timestamp())
            meter = {
                **meter,
                "status": status,
                "updated": now,
                "status_transitions": {"deactivated_at": now if status == "inactive" else None},
            }
            self.store_object("meters", meter["id"], meter)
        return json_response(meter)

    def _event_summaries(self, call: Call) -> Response:
        meter = self._meter_or_404(call)
        if isinstance(meter, Response):
            return meter
        customer = call.query["customer"][0]
        start, end = int(call.query["start_time"][0]), int(call.query["end_time"][0])
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        values: list[tuple[int, int]] = []
        for event in self.counted_events():
            seconds = self._event_seconds(event)
            if (
                event["event_name"] == meter["event_name"]
                and event["payload"].get(customer_key) == customer
                and start <= seconds < end
            ):
                values.append((seconds, int(event["payload"].get(value_key, "1"))))
        formula = meter["default_aggregation"]["formula"]
        if formula == "count":
            aggregated = len(values)
        elif formula == "last":
            aggregated = max(values)[1] if values else 0
        else:
            aggregated = sum(v for _, v in values)
        summary = {
            "id": _new_id("mtrusg"),
            "object": "billing.meter_event_summary",
            "aggregated_value": aggregated,
            "start_time": start,
            "end_time": end,
            "livemode": False,
            "meter": meter["id"],
        }
        return json_response(
            {
                "object": "list",
                "data": [summary],
                "has_more": False,
                "url": f"/v1/billing/meters/{meter['id']}/event_summaries",
            }
        )

    # -- customers ------------------------------------------------------------------------------
    def _create_customer(self, call: Call) -> Response:
        body = call.payload or {}
        customer = {
            "id": _new_id("cus"),
            "object": "customer",
            "created": int(_now().timestamp()),
            "email": body.get("email"),
            "name": body.get("name"),
            "description": body.get("description"),
            "metadata": body.get("metadata") or {},
            "livemode": False,
        }
        self.store_object("customers", str(customer["id"]), customer)
        return json_response(customer)

    def _search_customers(self, call: Call) -> Response:
        """``GET /v1/customers/search``: the clauses kubetally sends — ``metadata['k']:'v'`` and
        ``name:'v'`` joined by ``AND`` — evaluated exactly; any other query is a 400, as Stripe
        answers a query it cannot parse."""
        query = call.query.get("query", [""])[0]
        clauses = []
        for part in re.split(r"\s+AND\s+", query.strip()):
            found = _CLAUSE.fullmatch(part)
            if found is None:
                return self.error(400, f"Invalid search query: {query!r}", details="query", call=call)
            key, value = found.group("key"), re.sub(r"\\(.)", r"\1", found.group("value"))
            clauses.append((key, value))

        def matches(customer: Mapping[str, Any]) -> bool:
            for key, value in clauses:
                if key.startswith("metadata["):
                    if (customer.get("metadata") or {}).get(key[10:-2]) != value:
                        return False
                elif customer.get("name") != value:
                    return False
            return True

        found_customers = sorted(
            (c for c in self.objects.get("customers", {}).values() if matches(c)), key=lambda c: (c["created"], c["id"])
        )
        return json_response(
            {
                "object": "search_result",
                "data": found_customers,
                "has_more": False,
                "next_page": None,
                "url": "/v1/customers/search",
            }
        )

    # -- meter events ---------------------------------------------------------------------------
    @staticmethod
    def _event_seconds(event: Mapping[str, Any]) -> int:
        ts = event.get("timestamp")
        if isinstance(ts, str):
            return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())
        return int(ts) if ts is not None else int(_now().timestamp())

    def _check_event(self, event: Mapping[str, Any]) -> None:
        """Raise :class:`EventProblem` for anything Stripe would refuse in this meter event."""
        reject_status = self.rejected(event)
        if reject_status is not None:
            raise EventProblem(
                "payload_invalid_value", f"Event {event.get('identifier')!r} was rejected.", "payload", reject_status
            )
        ts = event.get("timestamp")
        if ts is not None:
            try:
                moment = (
                    datetime.fromtimestamp(ts, UTC)
                    if isinstance(ts, int)
                    else datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
                )
            except (ValueError, OverflowError) as exc:
                raise EventProblem("invalid_timestamp", f"Invalid timestamp {ts!r}.", "timestamp") from exc
            if moment.tzinfo is None:
                raise EventProblem("invalid_timestamp", f"Timestamp {ts!r} has no time zone.", "timestamp")
            now = _now()
            if moment < now - MAX_PAST:
                raise EventProblem(
                    "timestamp_too_far_in_past", "Timestamp must be within the past 35 calendar days.", "timestamp"
                )
            if moment > now + MAX_FUTURE:
                raise EventProblem(
                    "timestamp_in_future", "Timestamp must be at most 5 minutes in the future.", "timestamp"
                )
        payload = event.get("payload") or {}
        meter = self._meter_by_event_name(str(event.get("event_name")))
        if meter is None:
            if self.require_meter:
                raise EventProblem(
                    "no_meter", f"No active meter found for event_name {event.get('event_name')!r}.", "event_name"
                )
            customer_key, value_key, formula = "stripe_customer_id", "value", "sum"
        else:
            if meter["status"] != "active":
                raise EventProblem(
                    "archived_meter", f"The meter for {meter['event_name']!r} is inactive.", "event_name"
                )
            customer_key = meter["customer_mapping"]["event_payload_key"]
            value_key = meter["value_settings"]["event_payload_key"]
            formula = meter["default_aggregation"]["formula"]
        if customer_key not in payload:
            raise EventProblem(
                "payload_no_customer_defined", f"Payload is missing {customer_key!r}.", f"payload[{customer_key}]"
            )
        if value_key not in payload:
            if formula != "count":
                raise EventProblem(
                    "payload_no_value_defined", f"Payload is missing {value_key!r}.", f"payload[{value_key}]"
                )
        elif not str(payload[value_key]).isdigit():
            raise EventProblem(
                "payload_invalid_value", "The value must be a positive integer.", f"payload[{value_key}]"
            )

    def _accept(self, event: dict[str, Any]) -> dict[str, Any]:
        """Dedup and store; raises ``duplicate_meter_event``. Returns the stored event."""
        stored = dict(event)
        stored.setdefault("identifier", str(uuid.uuid4()))
        with self._lock:
            if stored["identifier"] in self._events:
                raise EventProblem(
                    "duplicate_meter_event",
                    f"An event with identifier {stored['identifier']!r} already exists.",
                    "identifier",
                )
            self._events[stored["identifier"]] = stored
        return stored

    def _v1_meter_event(self, call: Call) -> Response:
        try:
            self._check_event(call.payload)
            stored = self._accept({k: v for k, v in call.payload.items() if k != "expand"})
        except EventProblem as problem:
            v1_code = None if problem.code == "duplicate_meter_event" else problem.code
            return self.error(problem.status, problem.message, code=v1_code, details=problem.param, call=call)
        return json_response(
            {
                "object": "billing.meter_event",
                "created": int(_now().timestamp()),
                "event_name": stored["event_name"],
                "identifier": stored["identifier"],
                "livemode": False,
                "payload": stored["payload"],
                "timestamp": stored.get("timestamp", int(_now().timestamp())),
            }
        )

    def _v2_meter_event(self, call: Call) -> Response:
        try:
            self._check_event(call.payload)
            stored = self._accept(call.payload)
        except EventProblem as problem:
            return self.error(problem.status, problem.message, code=problem.code, call=call)
        return json_response(self._v2_event_view(stored))

    @staticmethod
    def _v2_event_view(stored: Mapping[str, Any]) -> dict[str, Any]:
        now = _iso(_now())
        return {
            "object": "v2.billing.meter_event",
            "created": now,
            "event_name": stored["event_name"],
            "identifier": stored["identifier"],
            "livemode": False,
            "payload": stored["payload"],
            "timestamp": stored.get("timestamp") or now,
        }

    def _create_session(self, call: Call) -> Response:
        token = f"mes_tok_{secrets.token_urlsafe(24)}"
        created = _now()
        with self._lock:
            self._sessions[token] = created + SESSION_TTL
        return json_response(
            {
                "id": _new_id("mes"),
                "object": "v2.billing.meter_event_session",
                "authentication_token": token,
                "created": _iso(created),
                "expires_at": _iso(created + SESSION_TTL),
                "livemode": False,
            }
        )

    def _stream(self, call: Call) -> Response:
        events = call.payload["events"]
        if len(events) > MAX_STREAM_BATCH:
            self.violation(call, f"stream request with {len(events)} events exceeds the documented {MAX_STREAM_BATCH}")
            return self.error(400, f"Supports up to {MAX_STREAM_BATCH} events per request.", call=call)
        for event in events:
            try:
                self._check_event(event)
                self._accept(event)
            except EventProblem as problem:
                with self._lock:
                    self._async_errors.append(
                        {"identifier": event.get("identifier"), "code": problem.code, "message": problem.message}
                    )
        return json_response({})

    def _adjust(self, call: Call, v2: bool) -> Response:
        body = call.payload
        identifier = (body.get("cancel") or {}).get("identifier")
        with self._lock:
            event = self._events.get(identifier) if identifier else None
            if event is None or event.get("event_name") != body["event_name"]:
                return self.error(
                    400,
                    f"No meter event with identifier {identifier!r} to cancel.",
                    code="invalid_cancel_configuration",
                    details="cancel[identifier]",
                    call=call,
                )
            del self._events[identifier]
        adjustment = {
            "object": "v2.billing.meter_event_adjustment" if v2 else "billing.meter_event_adjustment",
            "event_name": body["event_name"],
            "livemode": False,
            "status": "complete",
            "type": "cancel",
            "cancel": {"identifier": identifier},
        }
        if v2:
            adjustment.update({"id": _new_id("mea"), "created": _iso(_now())})
        self.store_object("meter_event_adjustments", str(identifier), adjustment)
        return json_response(adjustment)

    _handlers: ClassVar[dict[str, Any]] = {
        "PostBillingMeters": _create_meter,
        "GetBillingMeters": _list_meters,
        "GetBillingMetersId": _get_meter,
        "PostBillingMetersId": _update_meter,
        "PostBillingMetersIdDeactivate": lambda self, call: self._set_meter_status(call, "inactive"),
        "PostBillingMetersIdReactivate": lambda self, call: self._set_meter_status(call, "active"),
        "GetBillingMetersIdEventSummaries": _event_summaries,
        "PostCustomers": _create_customer,
        "GetCustomersSearch": _search_customers,
        "PostBillingMeterEvents": _v1_meter_event,
        "PostBillingMeterEventAdjustments": lambda self, call: self._adjust(call, v2=False),
        "PostV2BillingMeterEvents": _v2_meter_event,
        "PostV2BillingMeterEventSession": _create_session,
        "PostV2BillingMeterEventStream": _stream,
        "PostV2BillingMeterEventAdjustments": lambda self, call: self._adjust(call, v2=True),
    }
