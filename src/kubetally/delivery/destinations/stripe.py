"""Stripe Billing Meters.

Ingestion (``api``):

* ``stream`` (default) — ``POST /v2/billing/meter_event_stream`` on ``meter-events.stripe.com``,
  ≤ 100 events per request, authenticated with a meter-event *session* token
  (``POST /v2/billing/meter_event_session``, valid 15 minutes) that is refreshed a minute before
  it expires, and at once when Stripe answers ``billing_meter_event_session_expired``. The
  stream validates **asynchronously**: a 200 means accepted, and an event Stripe drops later
  shows up only in Stripe's ``v1.billing.meter.error_report_triggered`` events — so everything
  we can check locally (integer, not negative, not older than 35 days, meter exists) is checked
  before sending and dead-lettered with a reason.
* ``v2`` — ``POST /v2/billing/meter_events``, one event per request, validated synchronously
  (bad events are dead-lettered with Stripe's code).
* ``v1`` — ``POST /v1/billing/meter_events`` (form-encoded, one event per request, with an
  ``Idempotency-Key`` = event id). Used automatically when the v2 endpoints are missing (404).

Every event has ``identifier`` = event id (Stripe dedupes for ≥ 24 h; ``duplicate_meter_event``
counts as delivered; the outbox cursor covers anything older) and ``timestamp`` = period start.

Meters. One meter per item and dimension values (Stripe meters cannot filter by payload, so
``gpu_hours`` of an H100 on spot is event name ``gpu_hours__h100__spot``), created on first
sight with ``sum`` aggregation. Customers: a tenant mapped under ``customers:`` uses that
customer; any other is looked up in the outbox, then by Stripe's customer search (metadata
``kubetally_tenant``), and only then created (``name`` = tenant, with an idempotency key) and
remembered in the outbox, because Stripe assigns the id (``cus_…``) that meter events must carry.

Values. Stripe meter values are integers: value = usage × ``scale`` (per-item
``item_scale``). With ``rounding: exact`` a value that is not a whole number is dead-lettered
(fix the scale and re-queue); with ``half_even`` the events of a record always add up to
round(usage × scale). Corrections: a positive delta is a new event. Stripe cannot subtract —
a value cannot be negative and the adjustment API only *cancels* whole events within 24 h of
receipt — so a downward correction is dead-lettered with that reason, for a credit note.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import urlencode

import httpx

from kubetally.config.destinations import StripeConfig
from kubetally.delivery.destinations.base import (
    BackendUsage,
    BatchRejected,
    FatalError,
    HttpDestination,
    SendResult,
    TransientError,
    body_text,
    dimension_values,
    json_body,
    resolve_secret,
    snake,
)
from kubetally.delivery.events import Action, Event
from kubetally.periods import parse_time

MAX_STREAM_BATCH = 100
MAX_AGE = timedelta(days=35)
SESSION_MARGIN = timedelta(seconds=60)


def form_encode(data: Mapping[str, Any]) -> str:
    """Stripe v1 ``deepObject`` form encoding: ``payload[stripe_customer_id]=cus_1``."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), inner)
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(f"{prefix}[]", inner)
        elif isinstance(value, bool):
            pairs.append((prefix, "true" if value else "false"))
        elif value is not None:
            pairs.append((prefix, str(value)))

    walk("", data)
    return urlencode(pairs)


def _error(body: Any) -> Mapping[str, Any]:
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


class StripeDestination(HttpDestination):
    kind = "stripe"
    max_batch = MAX_STREAM_BATCH
    #: one batch at a time: the stream session is refreshed by a send
    max_in_flight = 1
    max_age: timedelta | None = MAX_AGE

    def __init__(self, config: StripeConfig, environ: Mapping[str, str] | None = None):
        key = resolve_secret(f"destination {config.name}", config.api_key_env, config.api_key_file, environ)
        headers = {"Authorization": f"Bearer {key}"}
        if config.stripe_version:
            headers["Stripe-Version"] = config.stripe_version
        self.mode = config.api
        if self.mode != "stream":
            self.max_batch = 1
        super().__init__(config, config.url, headers)
        self.stripe = config
        self.label_keys = tuple(config.dimensions)
        self.stream_url = config.stream_url.rstrip("/")
        self._session: tuple[str, datetime] | None = None
        self._meters: dict[str, str] | None = None
        self._customers: dict[str, str] = {}

    # -- values ------------------------------------------------------------------------------

    def scale(self, item: str) -> Decimal:
        return self.stripe.item_scale.get(item, self.stripe.scale)

    def value(self, event: Event) -> Decimal:
        scale = self.scale(event.item)
        if self.stripe.rounding == "exact":
            return event.quantity * scale
        total = (event.total * scale).quantize(Decimal(1), ROUND_HALF_EVEN)
        if event.action is Action.delta:
            before = ((event.total - event.quantity) * scale).quantize(Decimal(1), ROUND_HALF_EVEN)
            return total - before
        if event.action is Action.reversal:
            return event.quantity * scale
        return total

    def check(self, event: Event) -> str | None:
        value = self.value(event)
        if value < 0:
            return (
                f"stripe cannot subtract: a downward correction of {format(event.quantity, 'f')} "
                f"{event.unit} (meter values are never negative and meter event adjustments only cancel "
                "whole events within 24 h); issue a credit note"
            )
        if value != value.to_integral_value():
            return (
                f"stripe meter values are integers: {format(event.quantity, 'f')} × scale "
                f"{self.scale(event.item)} = {format(value, 'f')}; set scale/item_scale (or rounding: "
                "half_even) on the destination and re-queue"
            )
        return None

    def event_name(self, event: Event) -> str:
        suffix = "".join(f"__{snake(v)}" for _, v in dimension_values(event, self.label_keys))
        return (self.code(event.item) + suffix)[:100]

    def event_payload(self, event: Event) -> dict[str, Any]:
        return {
            "event_name": self.event_name(event),
            "identifier": event.id,
            "payload": {
                self.stripe.customer_payload_key: self._customers[event.tenant],
                self.stripe.value_payload_key: str(int(self.value(event))),
            },
        }

    # -- setup -------------------------------------------------------------------------------

    def prepare(self, events: Sequence[Event]) -> dict[str, str]:
        if self._meters is None:
            self._meters = self._list_meters()
        for event in events:
            name = self.event_name(event)
            if name not in self._meters:
                self._meters[name] = self._create_meter(name, event)
        for tenant in sorted({e.tenant for e in events} - set(self._customers)):
            self._customers[tenant] = self._customer(tenant)
        return {}

    def _list_meters(self) -> dict[str, str]:
        meters: dict[str, str] = {}
        after: str | None = None
        while True:
            params = {"status": "active", "limit": "100"}
            if after:
                params["starting_after"] = after
            response = self.request("GET", "/v1/billing/meters", params=params)
            if response.status_code != 200:
                raise self.unexpected("list meters", response)
            body = self.answer(response, "list meters")
            for meter in body.get("data", []):
                meters[meter["event_name"]] = meter["id"]
            if not body.get("has_more") or not body.get("data"):
                return meters
            after = body["data"][-1]["id"]

    def _create_meter(self, name: str, event: Event) -> str:
        values = " ".join(v for _, v in dimension_values(event, self.label_keys))
        form = {
            "display_name": f"{event.item} {values}".strip()[:250],
            "event_name": name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": self.stripe.customer_payload_key, "type": "by_id"},
            "value_settings": {"event_payload_key": self.stripe.value_payload_key},
        }
        response = self.request("POST", "/v1/billing/meters", content=form_encode(form), headers=self._form())
        if response.status_code == 200:
            return str(self.answer(response, f"create meter {name}", "id"))
        if response.status_code == 400 and _error(json_body(response)).get("param") == "event_name":
            # created meanwhile (another replica): read the list again
            self._meters = None
            raise TransientError(f"stripe: meter {name} exists already; re-reading meters")
        raise self.unexpected(f"create meter {name}", response)

    def _customer(self, tenant: str) -> str:
        assert self.store is not None
        ref = self.mapped_customer(tenant)
        if ref is not None:
            return ref.customer  # an existing Stripe customer: never create a second one
        known = self.store.get_object("customer", tenant)
        if known:
            return known
        found = self._find_customer(tenant)
        if found:
            self.store.put_object("customer", tenant, found, {"name": tenant, "found": "search"})
            return found
        form = {"name": tenant, "metadata": {"kubetally_tenant": tenant}}
        response = self.request(
            "POST",
            "/v1/customers",
            content=form_encode(form),
            headers={**self._form(), "Idempotency-Key": f"kubetally-customer-{self.name}-{tenant}"},
        )
        if response.status_code != 200:
            raise self.unexpected(f"create customer for tenant {tenant}", response)
        customer_id = str(self.answer(response, f"create customer for tenant {tenant}", "id"))
        self.store.put_object("customer", tenant, customer_id, {"name": tenant})
        return customer_id

    def _find_customer(self, tenant: str) -> str | None:
        """The customer an earlier kubetally made for ``tenant`` (metadata ``kubetally_tenant``),
        found with Stripe's customer search, so that a lost outbox (a new ledger, another agent
        delivering to the same account, an idempotency key older than 24 h) never creates a
        second customer. Search is eventually consistent (seconds): a customer created moments
        ago is covered by the create's idempotency key instead. Several matches are a hold, not
        a guess: the destination stops and names them."""
        quoted = tenant.replace("\\", "\\\\").replace("'", "\\'")
        response = self.request(
            "GET", "/v1/customers/search", params={"query": f"metadata['kubetally_tenant']:'{quoted}'", "limit": "10"}
        )
        if response.status_code == 404:
            return None  # search not offered (e.g. accounts in India): idempotent create only
        if response.status_code != 200:
            raise self.unexpected(f"search customers for tenant {tenant}", response)
        data = self.answer(response, f"search customers for tenant {tenant}", "data") or []
        # Sorted: the search's order among customers created in the same second is not stable.
        ids = sorted(str(c["id"]) for c in data if (c.get("metadata") or {}).get("kubetally_tenant") == tenant)
        if len(ids) > 1:
            raise FatalError(
                f"stripe: {len(ids)} customers carry metadata kubetally_tenant={tenant!r} ({', '.join(ids)}); "
                f"map the tenant to one of them under customers: in destination {self.name}"
            )
        return ids[0] if ids else None

    # -- reading back ------------------------------------------------------------------------

    def reported_usage(
        self, start: datetime, end: datetime, tenants: Collection[str], items: Collection[str]
    ) -> BackendUsage:
        """Stripe's meter event summaries, per customer and meter, back in ledger units.

        An item has one meter per combination of dimension values (``code__value``), so its
        usage is the sum over those meters. Values were rounded per record to ``1/scale``.
        """
        meters = self._list_meters()
        usage = BackendUsage(quantum={item: 1 / self.scale(item) for item in items})
        if self.stripe.rounding == "exact":
            usage.quantum = {}
        window = {"start_time": str(int(start.timestamp())), "end_time": str(int(end.timestamp()))}
        for tenant in sorted(tenants):
            customer = self.store.get_object("customer", tenant) if self.store is not None else None
            if not customer:
                continue  # never sent: Stripe holds nothing for this tenant
            for item in sorted(items):
                code = self.code(item)
                total = Decimal(0)
                for name, meter_id in sorted(meters.items()):
                    if name != code and not name.startswith(code + "__"):
                        continue
                    path = f"/v1/billing/meters/{meter_id}/event_summaries"
                    response = self.request("GET", path, params={"customer": customer, **window})
                    if response.status_code != 200:
                        raise self.unexpected(f"event summaries of meter {name}", response)
                    for summary in self.answer(response, f"event summaries of meter {name}", "data"):
                        total += Decimal(str(summary["aggregated_value"]))
                if total:
                    usage.totals[(tenant, item)] = total / self.scale(item)
        return usage

    @staticmethod
    def _form() -> dict[str, str]:
        return {"Content-Type": "application/x-www-form-urlencoded"}

    # -- sending -----------------------------------------------------------------------------

    def send(self, events: Sequence[Event]) -> SendResult:
        if self.mode == "stream":
            return self._send_stream(events)
        result = SendResult()
        for event in events:  # max_batch is 1 outside stream mode
            if self._send_v2(event) if self.mode == "v2" else self._send_v1(event):
                result.duplicates.add(event.id)
        return result

    def _session_token(self) -> str:
        now = datetime.now(UTC)
        if self._session is None or self._session[1] - SESSION_MARGIN <= now:
            response = self.request("POST", "/v2/billing/meter_event_session")
            if response.status_code == 404:
                self._fall_back("meter event session", response)
            if response.status_code != 200:
                raise self.unexpected("create meter event session", response)
            token = self.answer(response, "create meter event session", "authentication_token")
            expires = self.answer(response, "create meter event session", "expires_at")
            self._session = (str(token), parse_time(str(expires)))
        return self._session[0]

    def _send_stream(self, events: Sequence[Event]) -> SendResult:
        body = {"events": [{**self.event_payload(e), "timestamp": _rfc3339(e.timestamp)} for e in events]}
        for attempt in range(2):
            token = self._session_token()
            response = self.request(
                "POST",
                f"{self.stream_url}/v2/billing/meter_event_stream",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                passthrough=(401,),
            )
            if response.status_code == 200:
                return SendResult()
            if response.status_code == 401:
                code = _error(json_body(response)).get("code")
                self._session = None
                if code == "billing_meter_event_session_expired" and attempt == 0:
                    continue  # new session, same events
                raise FatalError(f"stripe: meter event stream: HTTP 401: {body_text(response)}", status=401)
            if response.status_code == 404:
                self._fall_back("meter event stream", response)
            raise self._rejection("meter event stream", response)
        raise TransientError("stripe: meter event session expired twice in a row")

    def _send_v2(self, event: Event) -> bool:
        body = {**self.event_payload(event), "timestamp": _rfc3339(event.timestamp)}
        response = self.request("POST", "/v2/billing/meter_events", json=body)
        if response.status_code == 200:
            return False
        if response.status_code == 404 and _error(json_body(response)).get("code") in (None, "not_found"):
            self._fall_back("v2 meter events", response)
        if _error(json_body(response)).get("code") == "duplicate_meter_event":
            return True
        raise self._rejection("v2 meter event", response)

    def _send_v1(self, event: Event) -> bool:
        form = {**self.event_payload(event), "timestamp": int(event.timestamp.timestamp())}
        response = self.request(
            "POST",
            "/v1/billing/meter_events",
            content=form_encode(form),
            headers={**self._form(), "Idempotency-Key": event.id},
        )
        if response.status_code == 200:
            return False
        error = _error(json_body(response))
        if error.get("code") == "duplicate_meter_event" or (
            error.get("param") == "identifier" and "already" in str(error.get("message", ""))
        ):
            return True
        raise self._rejection("v1 meter event", response)

    def _rejection(self, what: str, response: httpx.Response) -> Exception:
        error = _error(json_body(response))
        if error.get("code") == "too_many_concurrent_requests":
            return TransientError(f"stripe: {what}: too_many_concurrent_requests", status=response.status_code)
        if response.status_code in (400, 404, 413, 422):
            detail = error.get("code") or error.get("type") or ""
            message = error.get("message") or body_text(response)
            return BatchRejected(
                f"stripe: {what}: HTTP {response.status_code} {detail}: {message}".strip(), status=response.status_code
            )
        return self.unexpected(what, response)

    def _fall_back(self, what: str, response: httpx.Response) -> None:
        if self.mode == "v1":
            raise self.unexpected(what, response)
        self.mode = "v1"
        self.max_batch = 1
        raise TransientError(f"stripe: {what} not available (HTTP 404); falling back to the v1 API")


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
