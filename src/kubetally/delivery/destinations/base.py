"""What every destination shares: the protocol the engine drives, the error classes that tell
it what to do next, secrets, naming rules and a small HTTP layer.

The engine — not the adapters — owns retries, batching, bisection and dead letters, so every
backend gets the same failure handling. An adapter only says, for one request, which of these
happened:

* it worked (:class:`SendResult`, with the events the backend already had);
* :class:`TransientError` — network error, timeout, 408/409/429/5xx: try the same batch again
  later (honouring the server's wait hint);
* :class:`BatchRejected` — 400/413/422: this batch will never pass as it is; the engine
  splits it to isolate the bad events (or dead-letters the ones the backend named);
* :class:`FatalError` — bad credentials, wrong URL: stop this destination, keep everything
  pending (an expired key must never dead-letter revenue).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from kubetally.config.destinations import CustomerRef, DestinationBase, customer_ref
from kubetally.delivery.events import Event
from kubetally.delivery.retry import retry_after_from
from kubetally.errors import ConfigError, KubetallyError


class DeliveryError(KubetallyError):
    """Base of the outcomes of one request to a backend."""

    def __init__(self, reason: str, *, status: int | None = None):
        self.reason = reason
        self.status = status
        super().__init__(reason)


class TransientError(DeliveryError):
    """Try again later; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason, status=status)
        self.retry_after = retry_after


class BatchRejected(DeliveryError):
    """The backend refused this batch for good. ``per_event`` names the events it blamed
    (event id → reason); empty when it did not say which one."""

    def __init__(self, reason: str, *, status: int | None = None, per_event: Mapping[str, str] | None = None):
        super().__init__(reason, status=status)
        self.per_event = dict(per_event or {})


class FatalError(DeliveryError):
    """The destination cannot work (credentials, URL, permissions): stop, keep the outbox."""


@dataclass
class SendResult:
    """A batch the backend accepted. ``duplicates`` are events it said it already had."""

    duplicates: set[str] = field(default_factory=set)


@dataclass
class BackendUsage:
    """What a backend itself reports for a range, per ``(tenant, item)`` in ledger units.

    A backend that cannot say (a webhook or a file has no read; Metronome's contract has none)
    returns ``unavailable`` with the reason, and reconciliation shows an empty column instead
    of guessing.
    """

    totals: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    unavailable: str | None = None
    #: per item: the step each record's value is rounded to on the way in (Stripe: 1/scale)
    quantum: dict[str, Decimal] = field(default_factory=dict)
    #: relative error of the backend's number type (OpenMeter answers in float64)
    relative: Decimal = Decimal(0)

    def tolerance(self, item: str, records: int, amount: Decimal) -> Decimal:
        """How far the backend may be off without being wrong: half a step per record, plus
        the representation error of its numbers."""
        return self.quantum.get(item, Decimal(0)) / 2 * records + abs(amount) * self.relative


@dataclass(frozen=True)
class ItemSpec:
    """A billing item as configured, so metrics can exist before the first event."""

    item: str
    category: str = ""
    unit: str = ""
    display_name: str = ""


class ObjectStore(Protocol):
    """Persisted ids of setup objects a backend cannot find by our key (see outbox_objects)."""

    def get_object(self, kind: str, key: str) -> str | None: ...

    def put_object(self, kind: str, key: str, remote_id: str, detail: Mapping[str, Any] | None = None) -> None: ...


@runtime_checkable
class Destination(Protocol):
    """One backend. Implementations must be safe to call again after any failure."""

    name: str
    kind: str
    max_batch: int
    max_age: timedelta | None
    #: record labels that the backend prices/groups by (None: all labels matter)
    label_keys: Collection[str] | None
    #: how long without usage before :meth:`offboard` (None: never)
    offboard_grace: timedelta | None

    def bind(self, store: ObjectStore) -> None:
        """Give the adapter its persisted setup-object store (before any other call)."""

    def bootstrap(self, items: Sequence[ItemSpec]) -> None:
        """Create metrics/plans for the configured items. Idempotent; retried while it raises
        :class:`TransientError`."""

    def check(self, event: Event) -> str | None:
        """Reason why this backend can never accept ``event`` (then it is dead-lettered
        without a request), or None."""

    def prepare(self, events: Sequence[Event]) -> Mapping[str, str] | None:
        """Make sure what ``events`` refer to exists (metrics, filter values, customers).

        Returns the refusals: event id → why the backend will never take that event (e.g. a
        customer it cannot create); the engine dead-letters those and sends the rest."""

    def send(self, events: Sequence[Event]) -> SendResult:
        """Deliver one batch (``len(events) <= max_batch``)."""

    def offboard(self, tenant: str) -> None:
        """End billing for a tenant that disappeared (terminate its subscription)."""

    def close(self) -> None: ...


# -- naming ------------------------------------------------------------------------------------

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def snake(text: str) -> str:
    """``VgpuCoreUsed`` → ``vgpu_core_used``, ``gpu.hours`` → ``gpu_hours``."""
    words = _NON_WORD.sub("_", _CAMEL.sub("_", text).lower()).strip("_")
    return words or "item"


def metric_code(item: str, prefix: str = "") -> str:
    """Backend metric/meter code of an item: deterministic, lower snake case."""
    return snake(prefix + item) if prefix else snake(item)


def dimension_values(event: Event, keys: Iterable[str] | None) -> list[tuple[str, str]]:
    return [(k, event.labels[k]) for k in keys or () if event.labels.get(k)]


# -- secrets -----------------------------------------------------------------------------------


def resolve_secret(
    where: str,
    env_name: str | None,
    file_name: str | None,
    environ: Mapping[str, str] | None = None,
    *,
    required: bool = True,
) -> str | None:
    """Read a secret from a file (wins) or an environment variable. The value is never put in
    a message; only the variable or file name is."""
    env = os.environ if environ is None else environ
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError([f"{where}: api key file {file_name}: cannot read ({exc.strerror or exc})"]) from None
        if not value:
            raise ConfigError([f"{where}: api key file {file_name} is empty"])
        return value
    if env_name and env.get(env_name):
        return env[env_name]
    if required:
        hint = f"set the environment variable {env_name}" if env_name else "configure api_key_env or api_key_file"
        raise ConfigError([f"{where}: no API key ({hint})"])
    return None


# -- HTTP ------------------------------------------------------------------------------------------

RETRYABLE = frozenset({408, 409, 425, 429})
REJECTING = frozenset({400, 413, 422})


def body_text(response: httpx.Response, limit: int = 500) -> str:
    """A short, single-line excerpt of a response body for reasons and logs."""
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


class HttpDestination:
    """Base of the HTTP adapters: one pooled client, uniform classification of answers."""

    kind = ""
    max_batch = 100
    #: batches the engine may have in flight at once (sending only reads the adapter's state,
    #: one pooled client); an adapter whose sends must not overlap says 1
    max_in_flight = 2
    max_age: timedelta | None = None
    label_keys: Collection[str] | None = None

    def __init__(self, config: DestinationBase, base_url: str, headers: Mapping[str, str]):
        self.config = config
        self.name = config.name
        self.offboard_grace = config.offboard_grace
        self.base_url = base_url.rstrip("/")
        timeout = config.timeout.total_seconds()
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"User-Agent": "kubetally", **headers},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.store: ObjectStore | None = None
        #: tenant → customer id from the tenant's Kubernetes label/annotation (see mapped_customer)
        self.tenant_customers: Callable[[str], str | None] | None = None
        if config.max_age is not None:
            self.max_age = config.max_age
        if config.batch_size is not None:
            self.max_batch = min(self.max_batch, config.batch_size)

    def bind(self, store: ObjectStore) -> None:
        self.store = store

    def reported_usage(
        self, start: datetime, end: datetime, tenants: Collection[str], items: Collection[str]
    ) -> BackendUsage:
        """Usage the backend reports for events timed in ``[start, end)`` (reconciliation)."""
        return BackendUsage(unavailable=f"{self.kind} has no usage read in its API")

    def close(self) -> None:
        self.client.close()

    def mapped_customer(self, tenant: str) -> CustomerRef | None:
        """The backend customer ``tenant`` is mapped to: the destination's ``customers:`` table
        first, then the label/annotation on the tenant's object (``tenant_customers``, set by the
        application from the Kubernetes source's registry); ``None``: unmapped."""
        ref = customer_ref(self.config, tenant)
        if ref is not None:
            return ref
        found = self.tenant_customers(tenant) if self.tenant_customers is not None else None
        return CustomerRef(customer=found) if found else None

    def customer_id(self, tenant: str) -> str:
        ref = self.mapped_customer(tenant)
        return ref.customer if ref is not None else f"{self.config.customer_prefix}{tenant}"

    def subscription_id(self, tenant: str) -> str:
        """Where a tenant's usage is attached in backends with subscriptions (Lago)."""
        ref = self.mapped_customer(tenant)
        if ref is not None and ref.subscription:
            return ref.subscription
        return self.customer_id(tenant)

    def code(self, item: str) -> str:
        return metric_code(item, self.config.metric_prefix)

    def request(self, method: str, url: str, *, passthrough: Collection[int] = (), **kwargs: Any) -> httpx.Response:
        """Send one request; network errors, 408/409/429/5xx raise :class:`TransientError`,
        401/403 raise :class:`FatalError`. Other answers (and ``passthrough`` statuses, e.g. a
        409 that means "exists already") are returned for the adapter to interpret."""
        try:
            response = self.client.request(method, url, **kwargs)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise FatalError(f"{self.name}: {method} {url}: bad URL: {exc}") from None
        except httpx.TimeoutException as exc:
            raise TransientError(f"{self.name}: {method} {url}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{self.name}: {method} {url}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status in passthrough:
            return response
        if status in RETRYABLE or status >= 500:
            raise TransientError(
                f"{self.name}: {method} {url}: HTTP {status} {body_text(response, 200)}",
                status=status,
                retry_after=retry_after_from(response.headers),
            )
        if status in (401, 403):
            raise FatalError(
                f"{self.name}: {method} {url}: HTTP {status} (check the API key and its permissions): "
                f"{body_text(response, 200)}",
                status=status,
            )
        return response

    def answer(self, response: httpx.Response, what: str, *path: str) -> Any:
        """The JSON value at ``path`` of a success answer; garbage (a proxy's HTML page, a
        truncated body) is a transient error naming the call, retried like an outage."""
        value = json_body(response)
        for key in path:
            if not isinstance(value, Mapping) or key not in value:
                raise TransientError(
                    f"{self.name}: {what}: unexpected answer (HTTP {response.status_code}, no {'.'.join(path)}): "
                    f"{body_text(response, 200)}",
                    status=response.status_code,
                )
            value = value[key]
        if value is None and not path:
            raise TransientError(f"{self.name}: {what}: answer is not JSON: {body_text(response, 200)}")
        return value

    def unexpected(self, what: str, response: httpx.Response) -> DeliveryError:
        """An answer the adapter has no rule for: 4xx on a batch is a rejection, else fatal."""
        status = response.status_code
        reason = f"{self.name}: {what}: HTTP {status}: {body_text(response)}"
        if status in REJECTING:
            return BatchRejected(reason, status=status)
        return FatalError(reason, status=status)

    # Defaults for adapters that need no setup.
    def bootstrap(self, items: Sequence[ItemSpec]) -> None:
        return None

    def prepare(self, events: Sequence[Event]) -> Mapping[str, str] | None:
        return None

    def check(self, event: Event) -> str | None:
        if event.quantity < 0 and not self.config.negative_corrections:
            return (
                f"negative correction {format(event.quantity, 'f')} {event.unit} not sent "
                f"(negative_corrections is off for {self.name}); issue a credit note"
            )
        return None

    def offboard(self, tenant: str) -> None:
        return None
