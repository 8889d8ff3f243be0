"""Fake Lago (``/api/v1``): usage events plus the setup objects needed to bill them.

Behaviour follows the spec and, where the spec is silent, lago-api's services as read for
``../shared/reference/contracts.md``:

* ``POST /events/batch`` takes at most 100 events; more → 422 ``{"events": ["too_many_events"]}``,
  none → ``no_events``. One bad event rejects the **whole batch** (lago-api rolls the transaction
  back) with ``error_details`` keyed by the event's index: ``{"3": {"transaction_id": [...]}}``.
* Dedup, default ("postgres" pipeline): ``transaction_id`` is unique per
  ``external_subscription_id``; a repeat is 422 ``{"transaction_id": ["value_already_exist"]}``.
  With ``pipeline="clickhouse"`` the key is ``(transaction_id, timestamp)`` and a repeat silently
  overwrites (200) — and an event without timestamp gets reception time, i.e. a *new* key.
* Unknown metric codes are accepted (Lago ignores them later, it does not reject them).
* Property values that are JSON integers fail the spec (``oneOf`` string/integer/number is
  ambiguous for integers): the fake reports that as a violation, as contracts.md recommends
  sending strings.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from starlette.responses import Response

from kubetally.testing.backends.base import Call, FakeBackend, bearer_token, json_response, reason
from kubetally.testing.contracts import Spec

MAX_BATCH = 100
Pipeline = Literal["postgres", "clickhouse"]


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(value: Any) -> Decimal | None:
    """Lago does ``Float(timestamp)``: integers or numeric strings, decimals allowed."""
    if isinstance(value, bool):
        return None
    try:
        parsed = Decimal(str(value))
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def _timestamp_iso(seconds: Decimal) -> str:
    whole = int(seconds)
    millis = int((seconds - whole) * 1000)
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{millis:03d}Z"


def _month_start(when: datetime) -> datetime:
    return when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def _detail_key(path: list[Any]) -> tuple[str | None, str]:
    """Map a schema error path to (event index or None, field) for Lago's ``error_details``."""
    parts = [p for p in path if p not in ("event", "events")]
    if path and path[0] == "events" and parts and isinstance(parts[0], int):
        return str(parts[0]), str(parts[1]) if len(parts) > 1 else "base"
    return None, str(parts[0]) if parts else "base"


class LagoBackend(FakeBackend):
    name: ClassVar[str] = "lago"
    spec_name: ClassVar[str | None] = "lago"
    prefix: ClassVar[str] = "/api/v1"
    base_path: ClassVar[str] = "/api/v1"
    schema_error_status: ClassVar[int] = 422
    default_api_key: ClassVar[str] = "lago-test-key"

    def __init__(self, *, pipeline: Pipeline = "postgres", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline: Pipeline = pipeline

    # -- contract -------------------------------------------------------------------------------
    def event_key(self, event: Mapping[str, Any]) -> Hashable:
        """postgres: (external_subscription_id, transaction_id); clickhouse: (transaction_id, ts)."""
        if self.pipeline == "clickhouse":
            return (event.get("transaction_id"), str(_parse_timestamp(event.get("timestamp"))))
        return (event.get("external_subscription_id"), event.get("transaction_id"))

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
        body: dict[str, Any] = {"status": status, "error": reason(status) if status != 400 else message}
        if status == 422:
            body["code"] = code or "validation_errors"
            body["error_details"] = details if isinstance(details, dict) else {"base": [message]}
        elif status in (403, 404, 405):
            body["code"] = code or {403: "feature_unavailable", 404: "object_not_found", 405: "not_allowed"}[status]
        elif code:
            body["code"] = code
        return json_response(body, status, headers)

    def rate_limit_headers(self, retry_after: float) -> dict[str, str]:
        """Lago documents ``X-RateLimit-*`` (reset = seconds); Retry-After is added for generic clients."""
        seconds = str(max(0, round(retry_after)))
        return {
            "Retry-After": seconds,
            "X-RateLimit-Limit": "500",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": seconds,
        }

    def authenticate(self, call: Call) -> Response | None:
        token = bearer_token(call)
        if token is None:
            self.violation(call, "missing 'Authorization: Bearer <api_key>' (contract: bearerAuth)")
            return self.error(401, "Unauthorized")
        if token != self.api_key:
            return self.error(401, "Unauthorized")
        return None

    def validate_body(self, call: Call, spec: Spec, schema: Mapping[str, Any]) -> None:
        if spec.known_valid(schema, call.payload):
            return
        details: dict[str, Any] = {}
        for err in spec.validator(schema).iter_errors(call.payload):
            path = list(err.absolute_path)
            if err.validator == "required":
                missing = err.message.split("'")[1] if "'" in err.message else "base"
                path = [*path, missing]
                code = "value_is_mandatory"
            else:
                code = "value_is_invalid"
            index, fld = _detail_key(path)
            target = details.setdefault(index, {}) if index is not None else details
            target.setdefault(fld, []).append(code)
            where = "/".join(str(p) for p in err.absolute_path)
            call.problems.append(f"body/{where}: {err.message[:300]}")
        if call.problems:
            call.problem_status = 422
            call.problem_details = details
        else:
            spec.errors(schema, call.payload)  # remembers the valid shape

    # -- routing --------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Response:
        handler = self._handlers.get(call.operation_id)
        if handler is None:
            return self.not_implemented(call)
        response: Response = handler(self, call)
        return response

    # -- events ---------------------------------------------------------------------------------
    def _event_problem(self, call: Call, event: Mapping[str, Any]) -> dict[str, list[str]] | None:
        timestamp = event.get("timestamp")
        if timestamp is not None and _parse_timestamp(timestamp) is None:
            self.violation(call, f"timestamp {timestamp!r} is not Unix seconds")
            return {"timestamp": ["invalid_format"]}
        return None

    def _event_view(self, event: Mapping[str, Any], received: Decimal) -> dict[str, Any]:
        ts = _parse_timestamp(event.get("timestamp"))
        sub = self.get_object("subscriptions", str(event.get("external_subscription_id")))
        return {
            "lago_id": str(uuid.uuid4()),
            "transaction_id": event["transaction_id"],
            "lago_customer_id": None,
            "code": event["code"],
            "timestamp": _timestamp_iso(ts if ts is not None else received),
            "precise_total_amount_cents": event.get("precise_total_amount_cents"),
            "properties": event.get("properties") or {},
            "lago_subscription_id": sub["lago_id"] if sub else None,
            "external_subscription_id": event["external_subscription_id"],
            "created_at": _now_iso(),
        }

    def _stored_key(self, event: Mapping[str, Any], received: Decimal) -> Hashable:
        if self.pipeline == "clickhouse" and event.get("timestamp") is None:
            return (event.get("transaction_id"), str(received))
        return self.event_key(event)

    def _ingest(self, call: Call, events: list[dict[str, Any]], batch: bool) -> Response:
        received = Decimal(str(round(datetime.now(UTC).timestamp(), 3)))
        errors: dict[str, Any] = {}
        reject_status: int | None = None
        for index, event in enumerate(events):
            problem = self._event_problem(call, event)
            if problem:
                errors[str(index)] = problem
                continue
            status = self.rejected(event)
            if status is not None:
                errors[str(index)] = {"base": ["value_is_invalid"]}
                reject_status = reject_status or status
        with self._lock:
            if not errors and self.pipeline == "postgres":
                seen: set[Hashable] = set()
                for index, event in enumerate(events):
                    key = self._stored_key(event, received)
                    if key in self._events or key in seen:
                        errors[str(index)] = {"transaction_id": ["value_already_exist"]}
                    seen.add(key)
            if not errors:
                for event in events:
                    self._events[self._stored_key(event, received)] = dict(event)
        if errors:
            status = reject_status if reject_status is not None and reject_status != 422 else 422
            details = errors if batch else errors["0"]
            return self.error(status, "Unprocessable Entity", details=details)
        views = [self._event_view(e, received) for e in events]
        return json_response({"events": views} if batch else {"event": views[0]})

    def _create_event(self, call: Call) -> Response:
        return self._ingest(call, [call.payload["event"]], batch=False)

    def _create_batch(self, call: Call) -> Response:
        events = call.payload["events"]
        if not events:
            self.violation(call, "empty batch")
            return self.error(422, "Unprocessable Entity", details={"events": ["no_events"]})
        if len(events) > MAX_BATCH:
            self.violation(call, f"batch of {len(events)} events exceeds the documented {MAX_BATCH}")
            return self.error(422, "Unprocessable Entity", details={"events": ["too_many_events"]})
        return self._ingest(call, events, batch=True)

    # -- billable metrics -------------------------------------------------------------------------
    def _metric_view(self, metric: Mapping[str, Any], lago_id: str, created_at: str) -> dict[str, Any]:
        return {
            "lago_id": lago_id,
            "name": metric["name"],
            "code": metric["code"],
            "description": metric.get("description"),
            "recurring": bool(metric.get("recurring", False)),
            "rounding_function": metric.get("rounding_function"),
            "rounding_precision": metric.get("rounding_precision"),
            "created_at": created_at,
            "expression": metric.get("expression") or "",
            "field_name": metric.get("field_name"),
            "aggregation_type": metric["aggregation_type"],
            "weighted_interval": metric.get("weighted_interval"),
            "filters": [{"key": f["key"], "values": list(f["values"])} for f in metric.get("filters") or []],
        }

    def _create_metric(self, call: Call) -> Response:
        metric = call.payload["billable_metric"]
        if (
            metric.get("aggregation_type") != "count_agg"
            and metric.get("aggregation_type")
            in {"sum_agg", "max_agg", "unique_count_agg", "weighted_sum_agg", "latest_agg"}
            and not metric.get("field_name")
            and not metric.get("expression")
        ):
            return self.error(422, "Unprocessable Entity", details={"field_name": ["value_is_mandatory"]})
        with self._lock:
            if self.get_object("billable_metrics", metric["code"]) is not None:
                return self.error(422, "Unprocessable Entity", details={"code": ["value_already_exist"]})
            view = self._metric_view(metric, str(uuid.uuid4()), _now_iso())
            self.store_object("billable_metrics", metric["code"], view)
        return json_response({"billable_metric": view})

    def _update_metric(self, call: Call) -> Response:
        code = call.params["code"]
        with self._lock:
            current = self.get_object("billable_metrics", code)
            if current is None:
                return self.error(404, "Not Found", code="billable_metric_not_found")
            merged = {**current, **call.payload["billable_metric"]}
            view = self._metric_view(merged, current["lago_id"], current["created_at"])
            objects = self._objects["billable_metrics"]
            objects.pop(code)
            objects[view["code"]] = view
        return json_response({"billable_metric": view})

    def _get_metric(self, call: Call) -> Response:
        found = self.get_object("billable_metrics", call.params["code"])
        if found is None:
            return self.error(404, "Not Found", code="billable_metric_not_found")
        return json_response({"billable_metric": found})

    def _delete_metric(self, call: Call) -> Response:
        with self._lock:
            found = self._objects.get("billable_metrics", {}).pop(call.params["code"], None)
        if found is None:
            return self.error(404, "Not Found", code="billable_metric_not_found")
        return json_response({"billable_metric": found})

    def _list(self, kind: str) -> Response:
        items = list(self.objects.get(kind, {}).values())
        meta = {"current_page": 1, "next_page": None, "prev_page": None, "total_pages": 1, "total_count": len(items)}
        return json_response({kind: items, "meta": meta})

    # -- plans ------------------------------------------------------------------------------------
    def _charge_view(self, charge: Mapping[str, Any]) -> dict[str, Any] | None:
        metric = next(
            (
                m
                for m in self.objects.get("billable_metrics", {}).values()
                if m["lago_id"] == charge["billable_metric_id"]
            ),
            None,
        )
        if metric is None:
            return None
        return {
            "lago_id": str(uuid.uuid4()),
            "lago_billable_metric_id": metric["lago_id"],
            "code": charge.get("code"),
            "billable_metric_code": metric["code"],
            "invoice_display_name": charge.get("invoice_display_name"),
            "created_at": _now_iso(),
            "charge_model": charge["charge_model"],
            "pay_in_advance": bool(charge.get("pay_in_advance", False)),
            "invoiceable": bool(charge.get("invoiceable", True)),
            "regroup_paid_fees": charge.get("regroup_paid_fees"),
            "prorated": bool(charge.get("prorated", False)),
            "min_amount_cents": int(charge.get("min_amount_cents", 0)),
            "properties": charge.get("properties") or {},
            "filters": list(charge.get("filters") or []),
            "taxes": [],
        }

    def _plan_view(self, plan: Mapping[str, Any], lago_id: str, created_at: str) -> dict[str, Any] | Response:
        charges = []
        for charge in plan.get("charges") or []:
            view = self._charge_view(charge)
            if view is None:
                return self.error(404, "Not Found", code="billable_metric_not_found")
            charges.append(view)
        return {
            "lago_id": lago_id,
            "name": plan["name"],
            "invoice_display_name": plan.get("invoice_display_name") or plan["name"],
            "created_at": created_at,
            "code": plan["code"],
            "interval": plan["interval"],
            "description": plan.get("description") or "",
            "amount_cents": plan["amount_cents"],
            "amount_currency": plan["amount_currency"],
            "trial_period": plan.get("trial_period", 0),
            "pay_in_advance": plan["pay_in_advance"],
            "bill_charges_monthly": plan.get("bill_charges_monthly"),
            "charges": charges,
            "taxes": [],
        }

    def _create_plan(self, call: Call) -> Response:
        plan = call.payload["plan"]
        with self._lock:
            if self.get_object("plans", plan["code"]) is not None:
                return self.error(422, "Unprocessable Entity", details={"code": ["value_already_exist"]})
            view = self._plan_view(plan, str(uuid.uuid4()), _now_iso())
            if isinstance(view, Response):
                return view
            self.store_object("plans", plan["code"], view)
        return json_response({"plan": view})

    def _update_plan(self, call: Call) -> Response:
        code = call.params["code"]
        with self._lock:
            current = self.get_object("plans", code)
            if current is None:
                return self.error(404, "Not Found", code="plan_not_found")
            update = call.payload["plan"]
            merged = {**current, **update}
            if "charges" not in update:  # keep stored charges, re-expressed as input
                merged["charges"] = [
                    {"billable_metric_id": c["lago_billable_metric_id"], **c} for c in current["charges"]
                ]
            view = self._plan_view(merged, current["lago_id"], current["created_at"])
            if isinstance(view, Response):
                return view
            plans = self._objects["plans"]
            plans.pop(code)
            plans[view["code"]] = view
        return json_response({"plan": view})

    def _get_plan(self, call: Call) -> Response:
        found = self.get_object("plans", call.params["code"])
        if found is None:
            return self.error(404, "Not Found", code="plan_not_found")
        return json_response({"plan": found})

    def _delete_plan(self, call: Call) -> Response:
        with self._lock:
            found = self._objects.get("plans", {}).pop(call.params["code"], None)
        if found is None:
            return self.error(404, "Not Found", code="plan_not_found")
        return json_response({"plan": found})

    # -- customers --------------------------------------------------------------------------------
    def _customer_view(self, customer: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
        view: dict[str, Any] = (
            dict(current)
            if current
            else {
                "lago_id": str(uuid.uuid4()),
                "sequential_id": len(self.objects.get("customers", {})) + 1,
                "created_at": _now_iso(),
                "account_type": "customer",
                "metadata": [],
                "taxes": [],
            }
        )
        external_id = customer["external_id"]
        view.update(
            {
                k: v
                for k, v in customer.items()
                if k
                not in {"metadata", "billing_configuration", "integration_customers", "shipping_address", "tax_codes"}
            }
        )
        view["slug"] = f"LAG-{view['sequential_id']:04d}"
        view["external_id"] = external_id
        view["applicable_timezone"] = customer.get("timezone") or view.get("applicable_timezone") or "UTC"
        view["updated_at"] = _now_iso()
        return view

    def _upsert_customer(self, external_id: str, customer: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            view = self._customer_view(customer, self.get_object("customers", external_id))
            self.store_object("customers", external_id, view)
        return view

    def _create_customer(self, call: Call) -> Response:
        customer = call.payload["customer"]
        return json_response({"customer": self._upsert_customer(customer["external_id"], customer)})

    def _get_customer(self, call: Call) -> Response:
        found = self.get_object("customers", call.params["external_customer_id"])
        if found is None:
            return self.error(404, "Not Found", code="customer_not_found")
        return json_response({"customer": found})

    def _delete_customer(self, call: Call) -> Response:
        with self._lock:
            found = self._objects.get("customers", {}).pop(call.params["external_customer_id"], None)
        if found is None:
            return self.error(404, "Not Found", code="customer_not_found")
        return json_response({"customer": found})

    # -- subscriptions ----------------------------------------------------------------------------
    def _create_subscription(self, call: Call) -> Response:
        sub = call.payload["subscription"]
        with self._lock:
            plan = self.get_object("plans", sub["plan_code"])
            if plan is None:
                return self.error(404, "Not Found", code="plan_not_found")
            customer = self.get_object("customers", sub["external_customer_id"])
            if customer is None:  # Lago creates the customer on the fly
                customer = self._upsert_customer(
                    sub["external_customer_id"], {"external_id": sub["external_customer_id"]}
                )
            current = self.get_object("subscriptions", sub["external_id"])
            if current is not None and current["status"] == "active":
                # external_id is the idempotency key: the same request returns the same subscription
                view = {**current, "plan_code": plan["code"], "plan": plan}
            else:
                now = _now_iso()
                view = {
                    "lago_id": str(uuid.uuid4()),
                    "external_id": sub["external_id"],
                    "lago_customer_id": customer["lago_id"],
                    "external_customer_id": sub["external_customer_id"],
                    "billing_time": sub.get("billing_time", "calendar"),
                    "name": sub.get("name"),
                    "plan_code": plan["code"],
                    "plan_amount_cents": plan["amount_cents"],
                    "plan_amount_currency": plan["amount_currency"],
                    "status": "active",
                    "created_at": now,
                    "canceled_at": None,
                    "started_at": sub.get("subscription_at") or now,
                    "ending_at": sub.get("ending_at"),
                    "subscription_at": sub.get("subscription_at") or now,
                    "terminated_at": None,
                    "previous_plan_code": None,
                    "next_plan_code": None,
                    "downgrade_plan_date": None,
                    "trial_ended_at": None,
                    "current_billing_period_started_at": now,
                    "current_billing_period_ending_at": None,
                    "on_termination_credit_note": "skip",  # spec enum has no null
                    "on_termination_invoice": "generate",
                    "plan": plan,
                }
            self.store_object("subscriptions", sub["external_id"], view)
        return json_response({"subscription": view})

    def _get_subscription(self, call: Call) -> Response:
        found = self.get_object("subscriptions", call.params["external_id"])
        wanted = (call.query.get("status") or ["active"])[0]
        if found is None or found["status"] != wanted:
            return self.error(404, "Not Found", code="subscription_not_found")
        return json_response({"subscription": found})

    def _subscription_for(self, call: Call) -> dict[str, Any] | None:
        external_id = call.query["external_subscription_id"][0]
        sub = self.get_object("subscriptions", external_id)
        if sub is None or sub["external_customer_id"] != call.params["external_customer_id"]:
            return None
        return sub

    def _usage_object(
        self, sub: Mapping[str, Any], start: datetime, end: datetime, wanted: str | None
    ) -> dict[str, Any]:
        """One ``CustomerUsageObject``: per billable metric, ``sum_agg`` sums
        ``properties[field_name]``, ``count_agg`` counts. Charges are not priced here (amounts
        are 0): reconciliation compares units. ``to_datetime`` is the period's last second, as
        Lago writes it (the spec's example ``2022-07-31T23:59:59Z``)."""
        external_id = sub["external_id"]
        units: dict[str, Decimal] = {}
        counts: dict[str, int] = {}
        for event in self.counted_events():
            seconds = _parse_timestamp(event.get("timestamp"))
            if event.get("external_subscription_id") != external_id or seconds is None:
                continue
            if not start.timestamp() <= seconds < end.timestamp():
                continue
            metric = self.get_object("billable_metrics", event["code"])
            if metric is None or (wanted and event["code"] != wanted):
                continue
            if metric["aggregation_type"] == "count_agg":
                value = Decimal(1)
            else:
                try:
                    value = Decimal(str((event.get("properties") or {}).get(metric["field_name"], "0")))
                except InvalidOperation:
                    continue
            units[event["code"]] = units.get(event["code"], Decimal(0)) + value
            counts[event["code"]] = counts.get(event["code"], 0) + 1
        charges = []
        for code in sorted(units):
            metric = self.get_object("billable_metrics", code) or {}
            total = format(units[code].normalize(), "f") if units[code] else "0.0"
            charges.append(
                {
                    "units": total,
                    "total_aggregated_units": total,
                    "events_count": counts[code],
                    "amount_cents": 0,
                    "amount_currency": sub.get("plan_amount_currency") or "USD",
                    "charge": {"lago_id": str(uuid.uuid5(uuid.NAMESPACE_URL, code)), "charge_model": "standard"},
                    "billable_metric": {
                        "lago_id": metric.get("lago_id", str(uuid.uuid4())),
                        "name": metric.get("name", code),
                        "code": code,
                        "aggregation_type": metric.get("aggregation_type", "sum_agg"),
                    },
                    "filters": [],
                    "grouped_usage": [],
                }
            )
        return {
            "from_datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to_datetime": (end - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "issuing_date": end.date().isoformat(),
            "lago_invoice_id": None,
            "currency": sub.get("plan_amount_currency") or "USD",
            "amount_cents": 0,
            "taxes_amount_cents": 0,
            "total_amount_cents": 0,
            "charges_usage": charges,
        }

    def _current_usage(self, call: Call) -> Response:
        """Usage of the current calendar month (the fake's plans bill monthly on calendar time)."""
        sub = self._subscription_for(call)
        if sub is None:
            return self.error(404, "Not Found", code="subscription_not_found")
        start = _month_start(datetime.now(UTC))
        wanted: str | None = next(iter(call.query.get("billable_metric_code") or []), None)
        return json_response({"customer_usage": self._usage_object(sub, start, _next_month(start), wanted)})

    def _past_usage(self, call: Call) -> Response:
        """Usage of the closed billing periods, newest first: every calendar month from the
        subscription's start up to the current one (excluded). Lago builds this from the
        periods' invoices, so events timestamped before the subscription started are in none of
        them (lago-api ``PastUsageQuery`` over ``invoice_subscriptions``); ``periods_count``
        keeps the newest n; ``page``/``per_page`` page the list."""
        sub = self._subscription_for(call)
        if sub is None:
            return self.error(404, "Not Found", code="subscription_not_found")
        wanted: str | None = next(iter(call.query.get("billable_metric_code") or []), None)
        current = _month_start(datetime.now(UTC))
        month = _month_start(datetime.fromisoformat(str(sub["started_at"]).replace("Z", "+00:00")))
        starts: list[datetime] = []
        while month < current:
            starts.insert(0, month)
            month = _next_month(month)
        count = next(iter(call.query.get("periods_count") or []), None)
        if count is not None:
            starts = starts[: max(0, int(count))]
        page = int(next(iter(call.query.get("page") or []), 1))
        per_page = int(next(iter(call.query.get("per_page") or []), 20))
        pages = max(1, -(-len(starts) // per_page))
        shown = starts[(page - 1) * per_page : page * per_page]
        body = {
            "usage_periods": [self._usage_object(sub, s, _next_month(s), wanted) for s in shown],
            "meta": {
                "current_page": page,
                "next_page": page + 1 if page < pages else None,
                "prev_page": page - 1 if page > 1 else None,
                "total_pages": pages,
                "total_count": len(starts),
            },
        }
        return json_response(body)

    def _terminate_subscription(self, call: Call) -> Response:
        with self._lock:
            found = self.get_object("subscriptions", call.params["external_id"])
            if found is None or found["status"] != "active":
                return self.error(404, "Not Found", code="subscription_not_found")
            view = {**found, "status": "terminated", "terminated_at": _now_iso()}
            self.store_object("subscriptions", call.params["external_id"], view)
        return json_response({"subscription": {k: v for k, v in view.items() if k != "plan"}})

    _handlers: ClassVar[dict[str, Any]] = {
        "createEvent": _create_event,
        "createBatchEvents": _create_batch,
        "findCustomerCurrentUsage": _current_usage,
        "findAllCustomerPastUsage": _past_usage,
        "createBillableMetric": _create_metric,
        "updateBillableMetric": _update_metric,
        "findBillableMetric": _get_metric,
        "destroyBillableMetric": _delete_metric,
        "findAllBillableMetrics": lambda self, call: self._list("billable_metrics"),
        "createPlan": _create_plan,
        "updatePlan": _update_plan,
        "findPlan": _get_plan,
        "destroyPlan": _delete_plan,
        "findAllPlans": lambda self, call: self._list("plans"),
        "createCustomer": _create_customer,
        "findCustomer": _get_customer,
        "destroyCustomer": _delete_customer,
        "findAllCustomers": lambda self, call: self._list("customers"),
        "createSubscription": _create_subscription,
        "findSubscription": _get_subscription,
        "destroySubscription": _terminate_subscription,
        "findAllSubscriptions": lambda self, call: self._list("subscriptions"),
    }
