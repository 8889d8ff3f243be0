"""OpenMeter: CloudEvents 1.0 batches on ``POST /api/v1/events``
(``application/cloudevents-batch+json``, 204 on success).

Events: ``id`` = event id, ``source`` = ``<source>/<cluster>`` — both deterministic, because
OpenMeter dedupes on (id, source) for 32 days by default (self-hosted: only when dedupe is
enabled). ``type`` = item code (a meter's ``eventType``), ``subject`` = ``kt-<tenant>``,
``time`` = period start, ``data`` = quantity as an exact decimal string (OpenMeter parses numeric
strings) plus the record's labels.

OpenMeter answers for the whole request and may have forwarded part of a failed batch, so a
retry relies on (id, source) dedup; a 400 is split to isolate the bad event. There is no batch
limit in the contract: we send ≤ 100 events per request. No timestamp window is enforced.

Corrections: SUM meters add events, so a revision is a delta event with its own id; negative
deltas are sent as negative numbers (``negative_corrections: false`` dead-letters them).

Setup (``bootstrap: true``): a SUM meter per item (``slug`` = item code, ``valueProperty``
``$.quantity``, ``groupBy`` the dimension labels) when ``GET /api/v1/meters/{slug}`` says 404,
and a subject per tenant (``POST /api/v1/subjects`` is an upsert).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any
from urllib.parse import quote

from kubetally.config.destinations import OpenMeterConfig
from kubetally.delivery.destinations.base import (
    HttpDestination,
    ItemSpec,
    SendResult,
    resolve_secret,
)
from kubetally.delivery.events import Event

MAX_BATCH = 100
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def cloudevent(event: Event, source: str, subject: str, type_: str) -> dict[str, Any]:
    """CloudEvents 1.0 JSON for one usage event (shared with the webhook destination)."""
    data: dict[str, Any] = {
        "record_id": event.record_id,
        "revision": event.revision,
        "action": str(event.action),
        "tenant": event.tenant,
        "cluster": event.cluster,
        "project": event.project,
        "namespace": event.namespace,
        "name": event.name,
        "item": event.item,
        "period": event.period,
        "period_start": event.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "period_end": event.period_end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "unit": event.unit,
        **{k: str(v) for k, v in event.labels.items() if k not in ("quantity", "total")},
        "quantity": format(event.quantity, "f"),
        "total": format(event.total, "f"),
    }
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": type_,
        "subject": subject,
        "time": event.timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "datacontenttype": "application/json",
        "data": data,
    }


class OpenMeterDestination(HttpDestination):
    kind = "openmeter"
    max_batch = MAX_BATCH

    def __init__(self, config: OpenMeterConfig, environ: Mapping[str, str] | None = None):
        key = resolve_secret(
            f"destination {config.name}", config.api_key_env, config.api_key_file, environ, required=False
        )
        super().__init__(config, config.url, {"Authorization": f"Bearer {key}"} if key else {})
        self.openmeter = config
        self.label_keys = tuple(config.dimensions)
        self._items: dict[str, ItemSpec] = {}
        self._meters: set[str] = set()
        self._subjects: set[str] = set()

    def event_body(self, event: Event) -> dict[str, Any]:
        source = f"{self.openmeter.source}/{quote(event.cluster, safe='')}"
        return cloudevent(event, source, self.customer_id(event.tenant), self.code(event.item))

    def send(self, events: Sequence[Event]) -> SendResult:
        import json

        body = json.dumps([self.event_body(e) for e in events], separators=(",", ":"))
        response = self.request("POST", "/api/v1/events", content=body, headers={"Content-Type": BATCH_CONTENT_TYPE})
        if response.status_code in (200, 202, 204):
            return SendResult()
        raise self.unexpected("POST /api/v1/events", response)

    # -- setup -------------------------------------------------------------------------------

    def bootstrap(self, items: Sequence[ItemSpec]) -> None:
        for spec in items:
            self._items[self.code(spec.item)] = spec
        if self.openmeter.bootstrap:
            for spec in items:
                self._ensure_meter(spec.item)

    def prepare(self, events: Sequence[Event]) -> dict[str, str]:
        if not self.openmeter.bootstrap:
            return {}
        for item in sorted({e.item for e in events}):
            self._ensure_meter(item)
        new = sorted({e.tenant for e in events} - self._subjects)
        if new:
            body = [{"key": self.customer_id(t), "displayName": t, "metadata": {"kubetally_tenant": t}} for t in new]
            response = self.request("POST", "/api/v1/subjects", json=body)
            if response.status_code not in (200, 201):
                raise self.unexpected("upsert subjects", response)
            self._subjects.update(new)
        return {}

    def _ensure_meter(self, item: str) -> None:
        slug = self.code(item)[:64]
        if slug in self._meters:
            return
        response = self.request("GET", f"/api/v1/meters/{quote(slug, safe='')}", passthrough=(404,))
        if response.status_code == 404:
            spec = self._items.get(slug)
            body = {
                "slug": slug,
                "name": (spec.display_name if spec and spec.display_name else item)[:256],
                "description": f"kubetally item {item}",
                "aggregation": "SUM",
                "eventType": slug,
                "valueProperty": "$.quantity",
                "groupBy": {key: f"$.{key}" for key in self.label_keys or () if key.replace("_", "").isalnum()},
            }
            created = self.request("POST", "/api/v1/meters", json=body, passthrough=(409,))
            if created.status_code not in (200, 201, 409):  # 409: created meanwhile
                raise self.unexpected(f"create meter {slug}", created)
        elif response.status_code != 200:
            raise self.unexpected(f"GET meter {slug}", response)
        self._meters.add(slug)
