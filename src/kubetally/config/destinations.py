"""The ``destinations:`` section of kubetally.yaml.

Either a list of destinations or a mapping ``name: settings`` (the type defaults to the name)::

    destinations:
      - type: lago
        url: http://lago-api:3000          # /api/v1 is appended when missing
        api_key_env: LAGO_API_KEY          # the key itself never goes into this file
      - name: audit
        type: file
        path: /var/lib/kubetally/usage-events.jsonl

Secrets come only from an environment variable (``api_key_env``) or a file (``api_key_file``);
an inline key is an unknown field and therefore an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from kubetally.config.costmodel import Strict
from kubetally.config.names import DESTINATION_TYPES
from kubetally.config.types import Duration
from kubetally.periods import parse_time

DEFAULT_LAGO_URL = "http://localhost:3000"
DEFAULT_PLAN_CODE = "vcluster-standard"
DEFAULT_CURRENCY = "USD"


class CustomerRef(Strict):
    """A customer the billing backend already has, for one tenant."""

    #: The backend's customer: Stripe ``cus_…``, Lago external customer id, Metronome ingest
    #: alias, OpenMeter subject.
    customer: str
    #: Lago: the tenant's existing subscription (external id); nothing is created or terminated.
    subscription: str | None = None
    #: Lago: the plan to subscribe the existing customer to (default: the destination's plan).
    plan: str | None = None


class DestinationBase(Strict):
    """Settings every destination has."""

    #: Unique name: the outbox cursor and dead letters are kept under it. Defaults to ``type``.
    name: str = ""
    enabled: bool = True
    #: Events per request (capped at what the backend accepts).
    batch_size: int | None = Field(default=None, ge=1)
    timeout: Duration = timedelta(seconds=30)
    #: Customer / subscription / subject ids are ``<customer_prefix><tenant>``.
    customer_prefix: str = "kt-"
    #: Tenant → the backend's existing customer (a string) or ``{customer, subscription, plan}``.
    #: Usage of a listed tenant goes to that customer and no customer is created for it; other
    #: tenants use ``<customer_prefix><tenant>``.
    customers: dict[str, str | CustomerRef] = Field(default_factory=dict)
    #: A tenant neither in ``customers`` nor carrying ``kubernetes.tenancy.customer_key`` on its
    #: object: ``convention`` sends its usage to ``<customer_prefix><tenant>``; ``hold``
    #: dead-letters it with the reason (deliver exits 1), to be re-queued once it is mapped.
    unmapped: Literal["convention", "hold"] = "convention"
    #: Metric codes are ``<metric_prefix><item in snake_case>``.
    metric_prefix: str = ""
    #: Record labels the backend prices or groups by (Lago filters, Stripe meters per value,
    #: Metronome group keys, OpenMeter groupBy). A correction that changes one of them is sent
    #: as reversal + new quantity instead of a delta.
    dimensions: list[str] = Field(default_factory=lambda: ["gpu_sku", "capacity_type"])
    #: Deliver only these items (default: all).
    items: list[str] | None = None
    #: Deliver only records whose period starts at or after this time.
    since: datetime | None = None
    #: Also deliver the provider's own records (node capacity, down, idle, over-commit; tenant
    #: empty, so they go to ``unassigned_tenant``). Off: they stay in reports and FOCUS only.
    provider_records: bool = False
    #: Terminate a tenant's subscription after this long without usage (null: never).
    offboard_grace: Duration | None = timedelta(hours=24)
    #: Bill records without a tenant to this tenant; when unset they are dead-lettered.
    unassigned_tenant: str | None = None
    #: Oldest event the backend accepts (default: the backend's documented window).
    max_age: Duration | None = None
    #: Send downward corrections as negative quantities (the backend sums them). When false
    #: they are dead-lettered for a manual credit note instead. Stripe never takes them.
    negative_corrections: bool = True
    #: Backoff between retries: starts here, doubles, capped at ``retry_max`` (with jitter; a
    #: server's Retry-After wins when longer).
    retry_initial: Duration = timedelta(milliseconds=500)
    retry_max: Duration = timedelta(seconds=60)

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        return parse_time(value) if isinstance(value, str) else value

    @field_validator("timeout", "retry_initial", "retry_max")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _default_name(self) -> DestinationBase:
        if not self.name:
            self.name = str(getattr(self, "type", ""))
        return self

    @property
    def kind(self) -> str:
        return str(getattr(self, "type", ""))


class HttpSettings(Strict):
    """Destinations reached over HTTP: their URLs are checked when the config loads."""

    @field_validator("url", "stream_url", check_fields=False)
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value.rstrip("/")


class SecretSettings(HttpSettings):
    """Where an API key comes from: an environment variable or a file, never inline."""

    api_key_env: str | None = None
    api_key_file: str | None = None


def customer_ref(config: DestinationBase, tenant: str) -> CustomerRef | None:
    """The existing customer ``tenant`` is mapped to (``None``: the ``kt-<tenant>`` convention)."""
    ref = config.customers.get(tenant)
    if ref is None:
        return None
    if isinstance(ref, str):
        return CustomerRef(customer=ref)
    return ref if isinstance(ref, CustomerRef) else CustomerRef.model_validate(ref)


class LagoConfig(DestinationBase, SecretSettings):
    type: Literal["lago"]
    url: str = Field(default_factory=lambda: os.environ.get("LAGO_API_URL", DEFAULT_LAGO_URL))
    api_key_env: str | None = "LAGO_API_KEY"
    plan_code: str = Field(default_factory=lambda: os.environ.get("DEFAULT_PLAN_CODE", DEFAULT_PLAN_CODE))
    plan_name: str = "kubetally usage"
    currency: str = Field(default_factory=lambda: os.environ.get("BILLING_CURRENCY", DEFAULT_CURRENCY))
    interval: Literal["weekly", "monthly", "quarterly", "semiannual", "yearly"] = "monthly"
    #: Create billable metrics, the plan, customers and subscriptions (off: they exist already).
    bootstrap: bool = True


class StripeConfig(DestinationBase, SecretSettings):
    type: Literal["stripe"]
    url: str = "https://api.stripe.com"
    #: Host of the v2 high-throughput meter event stream.
    stream_url: str = "https://meter-events.stripe.com"
    api_key_env: str | None = "STRIPE_API_KEY"
    #: ``stream`` (v2 session + batches of 100), ``v2`` (one JSON event per call) or ``v1``
    #: (form-encoded). ``stream``/``v2`` fall back to ``v1`` when the v2 API is not there.
    api: Literal["stream", "v2", "v1"] = "stream"
    #: Stripe meter values are integers: value = usage × scale (per-item overrides below).
    scale: Decimal = Decimal(1)
    item_scale: dict[str, Decimal] = Field(default_factory=dict)
    #: ``exact``: a value that is not an integer after scaling is dead-lettered (no silent loss);
    #: ``half_even``: rounded so that a record's events always sum to round(usage × scale).
    rounding: Literal["exact", "half_even"] = "exact"
    customer_payload_key: str = "stripe_customer_id"
    value_payload_key: str = "value"
    stripe_version: str | None = None

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class MetronomeConfig(DestinationBase, SecretSettings):
    type: Literal["metronome"]
    url: str = "https://api.metronome.com"
    api_key_env: str | None = "METRONOME_API_TOKEN"


class OpenMeterConfig(DestinationBase, SecretSettings):
    type: Literal["openmeter"]
    url: str = "https://openmeter.cloud"
    #: Self-hosted OpenMeter has no auth: leave the variable unset there.
    api_key_env: str | None = "OPENMETER_API_KEY"
    #: CloudEvents ``source`` prefix; the event source is ``<source>/<cluster>``.
    source: str = "kubetally"
    #: Create meters and subjects for new items and tenants.
    bootstrap: bool = True


class WebhookConfig(DestinationBase, HttpSettings):
    type: Literal["webhook"]
    url: str
    #: HMAC secret (Standard Webhooks); ``whsec_<base64>`` or a plain passphrase.
    secret_env: str | None = "KUBETALLY_WEBHOOK_SECRET"
    secret_file: str | None = None
    #: Send unsigned requests when no secret is configured (otherwise that is an error).
    allow_unsigned: bool = False
    source: str = "kubetally"
    offboard_grace: Duration | None = None


class FileConfig(DestinationBase):
    type: Literal["file"]
    path: str
    offboard_grace: Duration | None = None


class KubetallyConfig(DestinationBase, SecretSettings):
    """A central ``kubetally server``: records and their revisions go to ``POST /api/v1/records``."""

    type: Literal["kubetally"]
    url: str
    #: The server's agent token (``kubetally token create --role agent --cluster C``).
    api_key_env: str | None = "KUBETALLY_SERVER_TOKEN"
    offboard_grace: Duration | None = None


DestinationConfig = Annotated[
    LagoConfig | StripeConfig | MetronomeConfig | OpenMeterConfig | WebhookConfig | FileConfig | KubetallyConfig,
    Field(discriminator="type"),
]

# DESTINATION_TYPES and KEY_VARIABLES live in kubetally.config.names (cheap to import for --help).


class DestinationsConfig(Strict):
    destinations: list[DestinationConfig] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shapes(cls, value: Any) -> Any:
        """Accept a bare list, or a mapping of name → settings (type defaults to the name)."""
        if isinstance(value, list):
            return {"destinations": [_named(entry) for entry in value]}
        if isinstance(value, Mapping) and "destinations" not in value:
            entries = []
            for name, settings in value.items():
                entry = dict(settings) if isinstance(settings, Mapping) else settings
                if isinstance(entry, dict):
                    entry.setdefault("name", name)
                    entry.setdefault("type", name)
                entries.append(entry)
            return {"destinations": entries}
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DestinationsConfig:
        seen: set[str] = set()
        for dest in self.destinations:
            if dest.name in seen:
                raise ValueError(f"destination name {dest.name!r} is used twice (set a distinct name:)")
            seen.add(dest.name)
        return self

    def enabled(self) -> list[DestinationBase]:
        return [d for d in self.destinations if d.enabled]

    def get(self, name: str) -> DestinationBase:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        known = ", ".join(d.name for d in self.destinations) or "none"
        raise KeyError(f"no destination named {name!r} (configured: {known})")


def _named(entry: Any) -> Any:
    if isinstance(entry, Mapping) and not entry.get("name") and entry.get("type"):
        return {**entry, "name": entry["type"]}
    return entry


def destinations_from_env(environ: Mapping[str, str] | None = None) -> DestinationsConfig | None:
    """vBilling-compatible defaults: a Lago destination when ``LAGO_API_KEY`` is set.

    Reads ``LAGO_API_URL`` (default ``http://localhost:3000``; ``/api/v1`` appended when
    missing), ``DEFAULT_PLAN_CODE`` (``vcluster-standard``) and ``BILLING_CURRENCY`` (``USD``).
    The key stays in the environment; the config only names the variable.
    """
    env = os.environ if environ is None else environ
    if not env.get("LAGO_API_KEY"):
        return None
    lago = LagoConfig(
        type="lago",
        name="lago",
        url=env.get("LAGO_API_URL") or DEFAULT_LAGO_URL,
        plan_code=env.get("DEFAULT_PLAN_CODE") or DEFAULT_PLAN_CODE,
        currency=env.get("BILLING_CURRENCY") or DEFAULT_CURRENCY,
        api_key_env="LAGO_API_KEY",
    )
    return DestinationsConfig(destinations=[lago])


def one_off_config(
    kind: str, *, url: str | None = None, path: str | None = None, name: str | None = None
) -> DestinationBase:
    """A destination from command-line flags (``kubetally deliver --to lago --url URL``)."""
    from kubetally.errors import ConfigError

    if kind not in DESTINATION_TYPES:
        raise ConfigError([f"--to: unknown destination {kind!r} (expected one of {', '.join(DESTINATION_TYPES)})"])
    raw: dict[str, Any] = {"type": kind, "name": name or kind}
    if kind == "file":
        if not path:
            raise ConfigError(["--to file needs --path FILE"])
        raw["path"] = path
    elif kind in ("webhook", "kubetally"):
        if not url:
            raise ConfigError([f"--to {kind} needs --url URL"])
        raw["url"] = url
    elif url:
        raw["url"] = url
        if kind == "stripe":
            raw["stream_url"] = url  # a one-off URL (a proxy, a test server) serves both hosts
    from pydantic import ValidationError

    try:
        return DestinationsConfig.model_validate([raw]).destinations[0]
    except ValidationError as exc:
        raise ConfigError([f"--to {kind}: {err['msg']}" for err in exc.errors()]) from None
