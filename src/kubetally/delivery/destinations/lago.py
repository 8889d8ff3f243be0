"""Lago: ``POST /api/v1/events/batch`` (≤ 100 events), plus the setup Lago needs to bill.

Events. ``transaction_id`` = event id, ``external_subscription_id`` = ``kt-<tenant>``,
``timestamp`` = period start as integer Unix seconds (always explicit: Lago's ClickHouse
pipeline dedupes on (transaction_id, timestamp), so a resend without timestamp would count
twice). Property values are strings (the quantity as an exact decimal string — a JSON integer
is ambiguous under the spec's ``oneOf`` and a float loses digits); the record's labels are
properties too, so charge filters and pricing group keys can use them.

Answers. 200 → delivered. 422 whose ``error_details`` say ``transaction_id:
value_already_exist`` → those events are *already delivered*; Lago rejects the whole batch
then, so the other events are re-sent at once. 422 naming other problems per event index → those
events are dead-lettered with Lago's reason, the rest re-sent. 429/5xx/network → retried.

Corrections. ``sum_agg`` adds every event, negative values included, so a revision is a delta
event (or reversal + full quantity when a filter label changed) with its own transaction id.

Setup (``bootstrap: true``), all idempotent and retried until Lago answers:

* a ``sum_agg`` billable metric per item (code = item in snake case, ``field_name: quantity``,
  or the existing metric's field name), with **filters** on the dimension labels
  (``gpu_sku``, ``capacity_type``) whose values grow as new values appear in the data;
* one plan (``plan_code``, default ``vcluster-standard``) with a ``standard`` charge per metric
  at a skeleton price of 0 and a charge filter per observed dimension combination (so an
  H100 hour and a T4 hour, spot or on-demand, can be priced differently without manual setup).
  Existing charges and prices are kept when items or values are added;
* a customer ``kt-<tenant>`` and a subscription ``kt-<tenant>`` when a tenant first appears
  (``external_id`` is Lago's idempotency key), terminated by :meth:`offboard`.

External ids. Lago addresses customers and subscriptions by ``external_id`` in the URL path
(``DELETE /subscriptions/{external_id}``), and tenant ids hold ``/`` (``vcluster/ns/name``),
which a path segment cannot carry reliably (``%2F`` is decoded, rejected or routed elsewhere by
servers and proxies). So every character outside ``[A-Za-z0-9._-]`` is written ``~`` + its UTF-8
bytes in hex: ``vcluster/ns/a`` → ``kt-vcluster~2fns~2fa``. The mapping is deterministic and
one-to-one (``~`` itself is escaped), and ids without such characters are unchanged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from kubetally.config.destinations import LagoConfig
from kubetally.delivery.destinations.base import (
    BackendUsage,
    BatchRejected,
    HttpDestination,
    ItemSpec,
    SendResult,
    TransientError,
    body_text,
    dimension_values,
    json_body,
    resolve_secret,
)
from kubetally.delivery.events import Event
from kubetally.periods import format_time, parse_time

log = logging.getLogger("kubetally.delivery")

MAX_BATCH = 100
QUANTITY_FIELD = "quantity"

Combo = tuple[tuple[str, str], ...]


def lago_api_url(url: str) -> str:
    """vBilling's ``LAGO_API_URL`` is the host; the API lives under ``/api/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/api/v1") else url + "/api/v1"


@dataclass
class _Metric:
    code: str
    lago_id: str
    field_name: str
    name: str
    filters: dict[str, set[str]] = field(default_factory=dict)


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def path_safe(value: str) -> str:
    """``value`` with every character outside ``[A-Za-z0-9._-]`` as ``~<hex of its UTF-8>``:
    usable as one URL path segment as is, deterministic and reversible (module doc)."""
    return "".join(c if c in _SAFE else "".join(f"~{b:02x}" for b in c.encode()) for c in value)


def _is_duplicate(detail: Any) -> bool:
    if not isinstance(detail, Mapping):
        return False
    problems = detail.get("transaction_id")
    return isinstance(problems, list) and "value_already_exist" in problems and len(detail) == 1


class LagoDestination(HttpDestination):
    kind = "lago"
    max_batch = MAX_BATCH
    max_age: timedelta | None = None  # Lago documents no limit; finalized invoices ignore late events

    def __init__(self, config: LagoConfig, environ: Mapping[str, str] | None = None):
        key = resolve_secret(f"destination {config.name}", config.api_key_env, config.api_key_file, environ)
        super().__init__(config, lago_api_url(config.url), {"Authorization": f"Bearer {key}"})
        self.lago = config
        self.label_keys = tuple(config.dimensions)
        self._items: dict[str, ItemSpec] = {}
        self._metrics: dict[str, _Metric] = {}
        self._combos: dict[str, set[Combo]] = {}
        self._plan_ok = False
        self._tenants: set[str] = set()

    # -- events ------------------------------------------------------------------------------

    def customer_id(self, tenant: str) -> str:
        return path_safe(super().customer_id(tenant))

    def event_body(
        self, event: Event, subscriptions: dict[str, str] | None = None, codes: dict[str, tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        """Lago's JSON of one event. ``subscriptions`` and ``codes`` memoise the per-tenant and
        per-item parts within one batch (they are looked up again for the next batch, so a
        customer mapping that changes applies from the next request)."""
        found = codes.get(event.item) if codes is not None else None
        if found is None:
            code = self.code(event.item)
            metric = self._metrics.get(code)
            found = (code, metric.field_name if metric else QUANTITY_FIELD)
            if codes is not None:
                codes[event.item] = found
        code, quantity_field = found
        subscription = subscriptions.get(event.tenant) if subscriptions is not None else None
        if subscription is None:
            subscription = self.subscription_id(event.tenant)
            if subscriptions is not None:
                subscriptions[event.tenant] = subscription
        properties = {
            "cluster": event.cluster,
            "namespace": event.namespace,
            "project": event.project,
            "name": event.name,
            "item": event.item,
            "unit": event.unit,
            "record_id": event.record_id,
            "revision": str(event.revision),
            "action": str(event.action),
            **{k: str(v) for k, v in event.labels.items()},
            quantity_field: format(event.quantity, "f"),
        }
        return {
            "transaction_id": event.id,
            "external_subscription_id": subscription,
            "code": code,
            "timestamp": int(event.timestamp.timestamp()),
            "properties": properties,
        }

    def send(self, events: Sequence[Event]) -> SendResult:
        subscriptions: dict[str, str] = {}
        codes: dict[str, tuple[str, str]] = {}
        body = {"events": [self.event_body(e, subscriptions, codes) for e in events]}
        response = self.request("POST", "/events/batch", json=body)
        if response.status_code == 200:
            return SendResult()
        if response.status_code == 422:
            return self._handle_422(events, response)
        raise self.unexpected("POST /events/batch", response)

    def _handle_422(self, events: Sequence[Event], response: httpx.Response) -> SendResult:
        body = json_body(response)
        details = body.get("error_details") if isinstance(body, Mapping) else None
        if isinstance(details, Mapping) and len(events) == 1 and _is_duplicate(details):
            return SendResult(duplicates={events[0].id})
        by_index = {}
        if isinstance(details, Mapping) and details and all(str(k).isdigit() for k in details):
            by_index = {int(k): v for k, v in details.items() if int(k) < len(events)}
        if not by_index:
            raise BatchRejected(f"lago: HTTP 422: {body_text(response)}", status=422)
        duplicates = {events[i].id for i, d in by_index.items() if _is_duplicate(d)}
        bad = {
            events[i].id: f"lago: HTTP 422 {json.dumps(d, sort_keys=True)}"
            for i, d in by_index.items()
            if not _is_duplicate(d)
        }
        if bad:
            raise BatchRejected(f"lago: HTTP 422: {body_text(response)}", status=422, per_event=bad)
        # Only duplicates: Lago rolled the whole batch back, so send the others again now.
        rest = [e for e in events if e.id not in duplicates]
        result = self.send(rest) if rest else SendResult()
        result.duplicates |= duplicates
        return result

    # -- setup -------------------------------------------------------------------------------

    def bootstrap(self, items: Sequence[ItemSpec]) -> None:
        for spec in items:
            self._items[self.code(spec.item)] = spec
        if not self.lago.bootstrap:
            return
        for spec in items:
            self._ensure_metric(spec.item, {})
        self._ensure_plan()

    def prepare(self, events: Sequence[Event]) -> dict[str, str]:
        if not self.lago.bootstrap:
            return {}
        wanted: dict[str, tuple[str, dict[str, set[str]]]] = {}
        new_combos = False
        for event in events:
            code = self.code(event.item)
            combo = tuple(sorted(dimension_values(event, self.label_keys)))
            _, filters = wanted.setdefault(code, (event.item, {}))
            for key, value in combo:
                filters.setdefault(key, set()).add(value)
            if combo and combo not in self._combos.get(code, set()):
                self._combos.setdefault(code, set()).add(combo)
                new_combos = True
        changed = False
        for code, (item, filters) in wanted.items():
            metric = self._metrics.get(code)
            if metric is None or any(not vals <= metric.filters.get(k, set()) for k, vals in filters.items()):
                self._ensure_metric(item, filters)
                changed = True
        if changed or new_combos or not self._plan_ok:
            self._ensure_plan()
        refused: dict[str, str] = {}
        for tenant in sorted({e.tenant for e in events} - self._tenants):
            reason = self._ensure_tenant(tenant)
            if reason:
                refused.update({e.id: reason for e in events if e.tenant == tenant})
        return refused

    def _ensure_metric(self, item: str, filters: Mapping[str, set[str]]) -> None:
        code = self.code(item)
        metric = self._metrics.get(code)
        if metric is None:
            response = self.request("GET", f"/billable_metrics/{quote(code, safe='')}")
            if response.status_code == 200:
                metric = self._parse_metric(self.answer(response, f"GET billable metric {code}", "billable_metric"))
            elif response.status_code == 404:
                metric = self._create_metric(item, filters)
            else:
                raise self.unexpected(f"GET billable metric {code}", response)
            self._metrics[code] = metric
        missing = {k: v - metric.filters.get(k, set()) for k, v in filters.items()}
        if any(missing.values()):
            merged = {k: set(v) for k, v in metric.filters.items()}
            for key, values in filters.items():
                merged.setdefault(key, set()).update(values)
            body = {
                "billable_metric": {
                    "name": metric.name,
                    "code": code,
                    "aggregation_type": "sum_agg",
                    "field_name": metric.field_name,
                    "filters": _filters(merged),
                }
            }
            response = self.request("PUT", f"/billable_metrics/{quote(code, safe='')}", json=body)
            if response.status_code != 200:
                raise self.unexpected(f"PUT billable metric {code}", response)
            self._metrics[code] = self._parse_metric(
                self.answer(response, f"PUT billable metric {code}", "billable_metric")
            )

    def _create_metric(self, item: str, filters: Mapping[str, set[str]]) -> _Metric:
        code = self.code(item)
        spec = self._items.get(code)
        name = spec.display_name if spec and spec.display_name else item
        body = {
            "billable_metric": {
                "name": name,
                "code": code,
                "description": f"kubetally item {item}" + (f" ({spec.unit})" if spec and spec.unit else ""),
                "aggregation_type": "sum_agg",
                "field_name": QUANTITY_FIELD,
                "recurring": False,
                "filters": _filters(filters),
            }
        }
        response = self.request("POST", "/billable_metrics", json=body)
        if response.status_code == 200:
            return self._parse_metric(self.answer(response, f"create billable metric {code}", "billable_metric"))
        if response.status_code == 422:  # created meanwhile by another replica: read it
            again = self.request("GET", f"/billable_metrics/{quote(code, safe='')}")
            if again.status_code == 200:
                return self._parse_metric(self.answer(again, f"GET billable metric {code}", "billable_metric"))
        raise self.unexpected(f"create billable metric {code}", response)

    @staticmethod
    def _parse_metric(view: Mapping[str, Any]) -> _Metric:
        return _Metric(
            code=view["code"],
            lago_id=view["lago_id"],
            field_name=view.get("field_name") or QUANTITY_FIELD,
            name=view.get("name") or view["code"],
            filters={f["key"]: set(f.get("values") or []) for f in view.get("filters") or []},
        )

    def _charge(self, metric: _Metric, combos: set[Combo]) -> dict[str, Any]:
        return {
            "billable_metric_id": metric.lago_id,
            "charge_model": "standard",
            "pay_in_advance": False,
            "invoiceable": True,
            "properties": {"amount": "0"},
            "filters": [_charge_filter(c) for c in sorted(combos)],
        }

    def _ensure_plan(self) -> None:
        code = self.lago.plan_code
        response = self.request("GET", f"/plans/{quote(code, safe='')}")
        if response.status_code == 404:
            body = {
                "plan": {
                    "name": self.lago.plan_name,
                    "code": code,
                    "interval": self.lago.interval,
                    "amount_cents": 0,
                    "amount_currency": self.lago.currency,
                    "pay_in_advance": False,
                    "charges": [
                        self._charge(m, self._combos.get(m.code, set()))
                        for m in sorted(self._metrics.values(), key=lambda m: m.code)
                    ],
                }
            }
            created = self.request("POST", "/plans", json=body)
            if created.status_code == 422:  # another replica created it: update instead
                self._plan_ok = False
                raise TransientError("lago: plan was created concurrently; reading it again")
            if created.status_code != 200:
                raise self.unexpected(f"create plan {code}", created)
            self._plan_ok = True
            return
        if response.status_code != 200:
            raise self.unexpected(f"GET plan {code}", response)
        plan = self.answer(response, f"GET plan {code}", "plan")
        charges, changed = self._merge_charges(plan.get("charges") or [])
        if changed:
            body = {
                "plan": {
                    "name": plan["name"],
                    "code": code,
                    "interval": plan["interval"],
                    "amount_cents": plan["amount_cents"],
                    "amount_currency": plan["amount_currency"],
                    "pay_in_advance": plan["pay_in_advance"],
                    "charges": charges,
                }
            }
            updated = self.request("PUT", f"/plans/{quote(code, safe='')}", json=body)
            if updated.status_code != 200:
                raise self.unexpected(f"update plan {code}", updated)
        self._plan_ok = True

    def _merge_charges(self, existing: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
        """Existing charges kept as they are (prices set by the operator stay); missing
        metrics and dimension combinations added at the skeleton price."""
        changed = False
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for charge in existing:
            code = charge.get("billable_metric_code", "")
            seen.add(code)
            filters = [
                {
                    "invoice_display_name": f.get("invoice_display_name"),
                    "properties": f.get("properties") or {},
                    "values": f.get("values") or {},
                }
                for f in charge.get("filters") or []
            ]
            have = {_combo_of(f["values"]) for f in filters}
            for combo in sorted(self._combos.get(code, set()) - have):
                filters.append(_charge_filter(combo))
                changed = True
            entry: dict[str, Any] = {
                "id": charge["lago_id"],
                "billable_metric_id": charge["lago_billable_metric_id"],
                "charge_model": charge["charge_model"],
                "pay_in_advance": charge.get("pay_in_advance", False),
                "invoiceable": charge.get("invoiceable", True),
                "prorated": charge.get("prorated", False),
                "min_amount_cents": charge.get("min_amount_cents", 0),
                "properties": charge.get("properties") or {},
                "filters": filters,
            }
            if charge.get("invoice_display_name"):
                entry["invoice_display_name"] = charge["invoice_display_name"]
            out.append(entry)
        for code in sorted(set(self._metrics) - seen):
            out.append(self._charge(self._metrics[code], self._combos.get(code, set())))
            changed = True
        return out, changed

    def _ensure_tenant(self, tenant: str) -> str | None:
        """Customer + subscription; returns a reason when Lago refuses them for good."""
        cid = self.customer_id(tenant)
        ref = self.mapped_customer(tenant)
        if ref is not None and ref.subscription:
            self._tenants.add(tenant)  # customer and subscription exist in Lago: nothing to create
            return None
        if ref is None:
            # POST /customers updates an existing customer: only kubetally's own are written.
            customer = {"customer": {"external_id": cid, "name": tenant, "currency": self.lago.currency}}
            response = self.request("POST", "/customers", json=customer)
            if response.status_code != 200:
                if response.status_code == 422:
                    return f"lago refused customer {cid}: {body_text(response)}"
                raise self.unexpected(f"create customer {cid}", response)
        subscription = {
            "subscription": {
                "external_customer_id": cid,
                "plan_code": (ref.plan if ref is not None and ref.plan else self.lago.plan_code),
                "external_id": cid,
                "name": tenant,
            }
        }
        response = self.request("POST", "/subscriptions", json=subscription)
        if response.status_code == 404:
            self._plan_ok = False  # the plan vanished: re-create it on the retry
            raise TransientError(f"lago: plan {self.lago.plan_code} not found while subscribing {cid}")
        if response.status_code == 422:
            body = json_body(response)
            details = body.get("error_details") if isinstance(body, Mapping) else None
            if not (isinstance(details, Mapping) and "value_already_exist" in json.dumps(details)):
                return f"lago refused subscription {cid}: {body_text(response)}"
        elif response.status_code != 200:
            raise self.unexpected(f"create subscription {cid}", response)
        self._tenants.add(tenant)
        return None

    def reported_usage(
        self, start: datetime, end: datetime, tenants: Collection[str], items: Collection[str]
    ) -> BackendUsage:
        """Lago's own usage per billing period: the current one (``current_usage``) and the
        closed ones (``past_usage``, which Lago reads from their invoices). Lago sums whole
        periods only, so the backend column exists when ``[start, end)`` is a run of whole
        periods of every tenant's subscription; otherwise it says which periods there are."""
        codes = {self.code(item): item for item in items}
        usage = BackendUsage()
        for tenant in sorted(tenants):
            cid = self.customer_id(tenant)
            found = self._usage_periods(cid, start, end)
            if found is None:
                continue  # never subscribed: Lago holds nothing for this tenant
            periods, first = found
            if first is not None and end <= first:
                continue  # the range ends before the subscription's first period: nothing billed
            # before the first period Lago bills nothing, so the run of periods may start there
            begin = first if first is not None and start < first else start
            inside = sorted((p for p in periods if start <= p[0] and p[1] <= end), key=lambda p: p[0])
            edges = [begin] + [edge for p in inside for edge in p[:2]] + [end]
            if not inside or any(edges[i] != edges[i + 1] for i in range(0, len(edges), 2)):
                known = ", ".join(
                    f"{format_time(a)} to {format_time(b)}" for a, b, _ in sorted(periods, key=lambda p: p[0])
                )
                return BackendUsage(
                    unavailable=(
                        f"lago sums whole billing periods only and {cid}'s periods are {known or 'none'}; "
                        "reconcile a range made of whole periods to compare with it"
                    )
                )
            for _, _, charges in inside:
                for charge in charges:
                    item = codes.get(str(charge["billable_metric"]["code"]))
                    if item is not None:
                        key = (tenant, item)
                        usage.totals[key] = usage.totals.get(key, Decimal(0)) + Decimal(str(charge["units"]))
        return usage

    def _usage_periods(self, cid: str, start: datetime, end: datetime) -> tuple[list[_Period], datetime | None] | None:
        """The subscription's billing periods that overlap ``[start, end)``, each with its
        charges, and the start of its first period when every page was read (else None); None
        when Lago has no such subscription. Closed periods are paged newest first until one
        begins at or before ``start``."""
        path = f"/customers/{quote(cid, safe='')}"
        params: dict[str, Any] = {"external_subscription_id": cid, "apply_taxes": "false"}
        response = self.request("GET", f"{path}/current_usage", params=params, passthrough=(404,))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.unexpected(f"current usage of {cid}", response)
        current = _period(self.answer(response, f"current usage of {cid}", "customer_usage"))
        periods = [current] if current[0] < end and start < current[1] else []
        first: datetime | None = current[0]
        page = 1
        while start < current[0] and page:
            response = self.request(
                "GET",
                f"{path}/past_usage",
                params={"external_subscription_id": cid, "page": page, "per_page": 20},
            )
            if response.status_code != 200:
                raise self.unexpected(f"past usage of {cid}", response)
            body = json_body(response)
            if not isinstance(body, Mapping) or not isinstance(body.get("usage_periods"), list):
                raise self.unexpected(f"past usage of {cid} (no usage_periods)", response)
            found = [_period(p) for p in body["usage_periods"]]
            periods += [p for p in found if p[0] < end and start < p[1]]
            meta = body.get("meta")
            following = meta.get("next_page") if isinstance(meta, Mapping) else None
            page = int(following) if following else 0
            first = min([first, *(p[0] for p in found)]) if first is not None else None
            if any(p[0] <= start for p in found) and page:
                first = None  # older periods exist that were not read
                break
        return periods, first

    def offboard(self, tenant: str) -> None:
        ref = self.mapped_customer(tenant)
        if ref is not None and ref.subscription:
            self._tenants.discard(tenant)  # not kubetally's subscription: never terminated by it
            return
        cid = self.customer_id(tenant)
        path = f"/subscriptions/{quote(cid, safe='')}"
        response = self.request("DELETE", path, passthrough=(404,))
        if response.status_code == 404:
            # Lago answers 404 both for "terminated already" and for "no such id": tell them apart
            # instead of assuming, or a subscription that was never reached stays active.
            if self._subscription_status(path, "terminated"):
                self._tenants.discard(tenant)
                return
            if self._subscription_status(path, "active"):
                raise self.unexpected(f"terminate subscription {cid} (still active after a 404)", response)
            log.info("lago: tenant %s has no subscription %s to terminate", tenant, cid)
        elif response.status_code != 200:
            raise self.unexpected(f"terminate subscription {cid}", response)
        self._tenants.discard(tenant)

    def _subscription_status(self, path: str, status: str) -> bool:
        """Whether Lago has the subscription at ``path`` in ``status`` (GET with ``?status=``)."""
        response = self.request("GET", path, params={"status": status}, passthrough=(404,))
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self.unexpected(f"find subscription ({status})", response)
        return True


_Period = tuple[datetime, datetime, list[Mapping[str, Any]]]


def _period(body: Mapping[str, Any]) -> _Period:
    """One ``CustomerUsageObject`` as ``(from, to, charges)`` with ``to`` exclusive: Lago writes
    a period's end as its last second (``2022-07-31T23:59:59Z``), the ledger as the next start."""
    end = parse_time(body["to_datetime"])
    if end.second == 59:
        end = end.replace(microsecond=0) + timedelta(seconds=1)
    return parse_time(body["from_datetime"]), end, list(body.get("charges_usage") or [])


def _filters(filters: Mapping[str, set[str]]) -> list[dict[str, Any]]:
    return [{"key": key, "values": sorted(values)} for key, values in sorted(filters.items()) if values]


def _charge_filter(combo: Combo) -> dict[str, Any]:
    return {
        "invoice_display_name": " / ".join(v for _, v in combo),
        "properties": {"amount": "0"},
        "values": {k: [v] for k, v in combo},
    }


def _combo_of(values: Mapping[str, Sequence[str]]) -> Combo:
    return tuple(sorted((k, v[0]) for k, v in values.items() if v))
