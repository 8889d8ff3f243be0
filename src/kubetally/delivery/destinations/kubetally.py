"""A central ``kubetally server``: the agent's ledger records, revision by revision.

Unlike the billing backends, the server wants *records*, not deltas: each event names the
record revision it comes from and carries that revision's usage (``Event.total``) and labels,
so the adapter sends the revision itself to ``POST /api/v1/records`` and the server applies it
idempotently by (record id, revision). A reversal event carries the *old* labels and is skipped
(the full new revision follows it as a ``usage`` event), except when the new usage is zero and
no usage event follows: then the revision is sent with usage 0.

Answers: 2xx → delivered (``duplicates``/``stale`` keys the server had already are reported as
existing); 403 with ``rejected`` → those records were for a cluster this agent's token may not
report: the batch is rejected for exactly those events, which the engine dead-letters with the
server's reason and sends the rest again; any other 401/403 → the destination stops (bad token),
nothing dead-lettered; 400/413/422 → the batch is split; 5xx, network errors → retried.
The token comes from ``KUBETALLY_SERVER_TOKEN`` (or ``api_key_file``), never from the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from kubetally.config.destinations import KubetallyConfig
from kubetally.delivery.destinations.base import (
    BatchRejected,
    FatalError,
    HttpDestination,
    SendResult,
    body_text,
    json_body,
    resolve_secret,
)
from kubetally.delivery.events import Action, Event
from kubetally.periods import floor_to
from kubetally.record import UsageRecord, dumps_exact

MAX_BATCH = 500
RECORDS_PATH = "/api/v1/records"


def record_of(event: Event) -> UsageRecord:
    """The ledger revision an event was derived from (everything the event carries)."""
    return UsageRecord(
        id=event.record_id,
        kind=event.kind,
        category=event.category,
        item=event.item,
        name=event.name,
        namespace=event.namespace,
        cluster=event.cluster,
        project=event.project,
        tenant=event.tenant,
        labels=dict(event.labels),
        date=floor_to(event.timestamp, timedelta(days=1)),
        period=event.period,
        start=event.timestamp,
        end=event.period_end - timedelta(seconds=1),
        usage=event.total,
        unit=event.unit,
        revision=event.revision,
    )


class KubetallyDestination(HttpDestination):
    kind = "kubetally"
    max_batch = MAX_BATCH
    #: one batch at a time: the server keeps the newest revision, so the order matters
    max_in_flight = 1
    #: The server keeps untenanted usage too (it shows it as unassigned); nothing to bill here.
    requires_tenant = False

    def __init__(self, config: KubetallyConfig, environ: Mapping[str, str] | None = None):
        token = resolve_secret(f"destination {config.name}", config.api_key_env, config.api_key_file, environ)
        super().__init__(config, config.url, {"Authorization": f"Bearer {token}"})
        self.label_keys = None  # every label matters: a label change arrives as a full revision

    def check(self, event: Event) -> str | None:
        return None  # revisions are sent whole; negative deltas never reach the server

    def send(self, events: Sequence[Event]) -> SendResult:
        by_key: dict[str, list[str]] = {}
        records: list[UsageRecord] = []
        for event in events:
            if event.action is Action.reversal and event.total != 0:
                continue  # the usage event of the same revision carries the new labels
            key = f"{event.record_id}-{event.revision}"
            if key not in by_key:
                records.append(record_of(event))
            by_key.setdefault(key, []).append(event.id)
        if not records:
            return SendResult()
        body = dumps_exact({"records": [_wire(r) for r in records]}).encode()
        response = self.request(
            "POST", RECORDS_PATH, content=body, headers={"Content-Type": "application/json"}, passthrough=(403,)
        )
        status = response.status_code
        answer = json_body(response)
        if status == 403:
            rejected = answer.get("rejected") if isinstance(answer, Mapping) else None
            if isinstance(rejected, Mapping) and rejected:
                per_event = {eid: str(reason) for key, reason in rejected.items() for eid in by_key.get(key, [])}
                raise BatchRejected(
                    f"{self.name}: POST {RECORDS_PATH}: HTTP 403: {answer.get('reason', '')}",
                    status=403,
                    per_event=per_event,
                )
            raise FatalError(
                f"{self.name}: POST {RECORDS_PATH}: HTTP 403 (check the agent token): {body_text(response, 200)}",
                status=403,
            )
        if not 200 <= status < 300:
            raise self.unexpected(f"POST {RECORDS_PATH}", response)
        existed: set[str] = set()
        if isinstance(answer, Mapping):
            for key in [*answer.get("duplicates", []), *answer.get("stale", [])]:
                existed.update(by_key.get(str(key), []))
        return SendResult(duplicates=existed)


def _wire(record: UsageRecord) -> dict[str, object]:
    data = record.to_dict()
    data["usage"] = format(record.usage, "f")  # exact, whatever JSON parser the server uses
    return data
