"""Metronome: ``POST /v1/ingest`` with a bare JSON array of 1–100 events.

Events: ``transaction_id`` = event id (Metronome ignores a repeat for 34 days, so a resent
batch is harmless and a 200 does not say which events were new), ``customer_id`` =
``kt-<tenant>`` (an *ingest alias* of the customer), ``event_type`` = item code,
``timestamp`` = period start (RFC 3339), ``properties`` = quantity as an exact decimal string
(Metronome keeps arbitrary-precision decimals) plus the record's labels.

Limits: backdating up to 34 days — older events are dead-lettered with that reason instead of
being retried forever. 408/409/429/5xx are retried (as Metronome's own SDK does), other 4xx
rejections are split to isolate the bad events.

Corrections: a SUM metric adds events, so a revision is a delta event with its own
transaction id; negative deltas are sent as negative quantities (turn ``negative_corrections``
off to dead-letter them instead).

Setup: a customer per tenant (``name`` = tenant, ``ingest_aliases`` = [``kt-<tenant>``]; a 409
means the alias exists already) and a SUM billable metric per item (``event_type_filter`` = the
item code, ``aggregation_key`` = ``quantity``, ``group_keys`` = the dimension labels). Metronome
cannot look these up by our key, so their ids are remembered in the outbox; both calls carry an
``Idempotency-Key`` derived from the item/tenant, so a second outbox (or a lost answer) within
Metronome's ≥ 24 h key retention gets the same object back instead of a duplicate.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetally.config.destinations import MetronomeConfig
from kubetally.delivery.destinations.base import (
    BackendUsage,
    HttpDestination,
    ItemSpec,
    SendResult,
    json_body,
    resolve_secret,
)
from kubetally.delivery.events import Event

MAX_BATCH = 100
MAX_AGE = timedelta(days=34)
QUANTITY = "quantity"


class MetronomeDestination(HttpDestination):
    kind = "metronome"
    max_batch = MAX_BATCH
    max_age: timedelta | None = MAX_AGE

    def __init__(self, config: MetronomeConfig, environ: Mapping[str, str] | None = None):
        key = resolve_secret(f"destination {config.name}", config.api_key_env, config.api_key_file, environ)
        super().__init__(config, config.url, {"Authorization": f"Bearer {key}"})
        self.metronome = config
        self.label_keys = tuple(config.dimensions)
        self._items: dict[str, ItemSpec] = {}
        self._metrics: set[str] = set()
        self._customers: set[str] = set()

    def event_body(self, event: Event) -> dict[str, Any]:
        return {
            "transaction_id": event.id,
            "customer_id": self.customer_id(event.tenant),
            "event_type": self.code(event.item),
            "timestamp": event.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "properties": {
                "cluster": event.cluster,
                "namespace": event.namespace,
                "project": event.project,
                "name": event.name,
                "unit": event.unit,
                "record_id": event.record_id,
                "revision": str(event.revision),
                **{k: str(v) for k, v in event.labels.items()},
                QUANTITY: format(event.quantity, "f"),
            },
        }

    def send(self, events: Sequence[Event]) -> SendResult:
        response = self.request("POST", "/v1/ingest", json=[self.event_body(e) for e in events])
        if response.status_code == 200:
            return SendResult()
        raise self.unexpected("POST /v1/ingest", response)

    # -- setup -------------------------------------------------------------------------------

    def reported_usage(
        self, start: datetime, end: datetime, tenants: Collection[str], items: Collection[str]
    ) -> BackendUsage:
        """No backend column: the Metronome contract kubetally is held to has no usage read.

        Metronome's SDK does have ``POST /v1/usage`` and ``POST /v1/usage/groups``, but the
        contract (derived from that SDK, since Metronome publishes no OpenAPI document) covers
        only ingest, customers and billable metrics, so a read here could not be checked by the
        contract-validating fake. Ledger vs outbox is still compared."""
        return BackendUsage(
            unavailable=(
                "metronome's contract has no usage read (only /v1/ingest, /v1/customers, "
                "/v1/billable-metrics/create); ledger vs outbox only"
            )
        )

    def bootstrap(self, items: Sequence[ItemSpec]) -> None:
        for spec in items:
            self._items[self.code(spec.item)] = spec
            self._ensure_metric(spec.item)

    def prepare(self, events: Sequence[Event]) -> dict[str, str]:
        for item in sorted({e.item for e in events}):
            self._ensure_metric(item)
        for tenant in sorted({e.tenant for e in events} - self._customers):
            self._ensure_customer(tenant)
        return {}

    def _ensure_metric(self, item: str) -> None:
        code = self.code(item)
        if code in self._metrics:
            return
        assert self.store is not None
        if self.store.get_object("billable_metric", code) is None:
            spec = self._items.get(code)
            body = {
                "name": (spec.display_name if spec and spec.display_name else code),
                "aggregation_type": "SUM",
                "aggregation_key": QUANTITY,
                "event_type_filter": {"in_values": [code]},
                "property_filters": [{"name": QUANTITY, "exists": True}],
                "group_keys": [[key] for key in self.label_keys or ()],
            }
            response = self.request(
                "POST",
                "/v1/billable-metrics/create",
                json=body,
                passthrough=(409,),
                headers={"Idempotency-Key": f"kubetally-metric-{code}"},
            )
            if response.status_code == 409:
                # The key was used for this metric with other parameters (e.g. another display
                # name): the metric exists; we just do not learn its id.
                remote = ""
            elif response.status_code == 200:
                remote = str(((json_body(response) or {}).get("data") or {}).get("id", ""))
            else:
                raise self.unexpected(f"create billable metric {code}", response)
            self.store.put_object("billable_metric", code, remote, {"item": item})
        self._metrics.add(code)

    def _ensure_customer(self, tenant: str) -> None:
        assert self.store is not None
        alias = self.customer_id(tenant)
        if self.store.get_object("customer", tenant) is None:
            body = {"name": tenant[:160], "ingest_aliases": [alias]}
            response = self.request(
                "POST",
                "/v1/customers",
                json=body,
                passthrough=(409,),
                headers={"Idempotency-Key": f"kubetally-customer-{tenant}"},
            )
            if response.status_code == 409:  # the alias is in use: the customer exists
                remote = ""
            elif response.status_code == 200:
                remote = str(((json_body(response) or {}).get("data") or {}).get("id", ""))
            else:
                raise self.unexpected(f"create customer {alias}", response)
            self.store.put_object("customer", tenant, remote or alias, {"alias": alias})
        self._customers.add(tenant)
