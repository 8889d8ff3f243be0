"""Generic webhook: CloudEvents 1.0 to any URL, signed the Standard-Webhooks way.

Each request is a JSON array of CloudEvents (``application/cloudevents-batch+json``), or a
single event (``application/cloudevents+json``) when ``batch_size: 1`` — batching must be
solicited by the receiver, so set ``batch_size`` to what it accepts. Headers: ``webhook-id``
(a hash of the event ids, the same on every retry), ``webhook-timestamp`` (send time — signatures
are time-bound to stop replays, the events themselves carry deterministic times) and
``webhook-signature: v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body`` with the secret from
``KUBETALLY_WEBHOOK_SECRET`` (or ``secret_file``); see :mod:`kubetally.delivery.signing`.

**Receivers must deduplicate by event ``id``** (with ``source``): a batch whose answer was lost
is sent again, with the same ids. 2xx = delivered; 409 is read as "already have it";
400/413/422 split the batch to isolate the bad events; 429/5xx/network are retried. Negative
quantities (downward corrections) are sent as they are; the receiver sums them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubetally.config.destinations import WebhookConfig
from kubetally.delivery import signing
from kubetally.delivery.destinations.base import (
    HttpDestination,
    SendResult,
    resolve_secret,
)
from kubetally.delivery.destinations.openmeter import cloudevent
from kubetally.delivery.events import Event
from kubetally.errors import ConfigError

MAX_BATCH = 100


class WebhookDestination(HttpDestination):
    kind = "webhook"
    max_batch = MAX_BATCH

    def __init__(self, config: WebhookConfig, environ: Mapping[str, str] | None = None):
        secret = resolve_secret(
            f"destination {config.name}",
            config.secret_env,
            config.secret_file,
            environ,
            required=not config.allow_unsigned,
        )
        try:
            self._secret = signing.decode_secret(secret) if secret else None
        except ValueError as exc:
            raise ConfigError([f"destination {config.name}: webhook secret: {exc}"]) from None
        super().__init__(config, config.url, {})
        self.webhook = config
        self.label_keys = None  # receivers see every label: any label change is a reversal + new

    def send(self, events: Sequence[Event]) -> SendResult:
        bodies = [
            cloudevent(
                e,
                f"{self.webhook.source}/{e.cluster}",
                f"{self.config.customer_prefix}{e.tenant}",
                f"io.kubetally.usage.{self.code(e.item)}",
            )
            for e in events
        ]
        payload: dict[str, Any] | list[dict[str, Any]]
        if self.max_batch == 1 and len(bodies) == 1:
            payload, content_type = bodies[0], "application/cloudevents+json"
        else:
            payload, content_type = bodies, "application/cloudevents-batch+json"
        body = json.dumps(payload, separators=(",", ":")).encode()
        msg_id = "msg_" + hashlib.blake2b("\n".join(e.id for e in events).encode(), digest_size=16).hexdigest()
        headers = {"Content-Type": content_type}
        if self._secret is not None:
            headers.update(signing.signature_headers(self._secret, msg_id, int(time.time()), body))
        else:
            headers[signing.HEADER_ID] = msg_id
        response = self.request("POST", self.webhook.url, content=body, headers=headers, passthrough=(409,))
        if 200 <= response.status_code < 300:
            return SendResult()
        if response.status_code == 409:
            return SendResult(duplicates={e.id for e in events})
        raise self.unexpected("POST webhook", response)
