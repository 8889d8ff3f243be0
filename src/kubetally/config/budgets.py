"""The ``budgets:`` section of kubetally.yaml: spending limits per tenant, project or cluster.

Shape::

    budgets:
      forecast_hours: 24              # run-rate window of the forecast
      notify:
        - type: webhook               # Standard-Webhooks signed JSON
          url: https://hooks.example.com/kubetally
          secret_env: KUBETALLY_BUDGET_WEBHOOK_SECRET
        - type: slack                 # Slack-compatible incoming webhook: {"text": ...}
          url_env: SLACK_WEBHOOK_URL  # the URL is the secret: never inline
      items:
        - name: acme-month
          tenant: acme                # or project: / cluster:
          amount: "5000.00"           # money, priced with the price book in force
          thresholds: [50, 80, 100]   # percent (the default)
          forecast_threshold: 100     # alert when the forecast reaches 100 %
        - name: acme-h100
          tenant: acme
          quantity: 2000              # display units of `item` (GPU-hours)
          item: gpu_hours
          labels: {gpu_sku: nvidia-h100-sxm-80gb}
          start: 2026-11-15           # a custom period [start, end) instead of the calendar month
          end: 2026-12-15

The same model validates budgets stored through the server's API, so a budget means one thing
wherever it was written.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kubetally.config.costmodel import Strict
from kubetally.config.types import Duration
from kubetally.periods import parse_time
from kubetally.record import exact_problem, to_decimal

DEFAULT_THRESHOLDS = (Decimal(50), Decimal(80), Decimal(100))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _positive(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, not a boolean")
    try:
        amount = to_decimal(value)
    except Exception:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{what} must be a positive number, not {value!r}")
    problem = exact_problem(amount)
    if problem:
        raise ValueError(problem)
    return amount


def _moment(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), tzinfo=UTC)
    elif isinstance(value, str):
        moment = parse_time(value)
    else:
        raise ValueError(f"expected a date or RFC 3339 time, got {value!r}")
    return moment.astimezone(UTC)


class AlertTarget(Strict):
    """Where budget alerts go besides the ledger's own alert list (``GET /api/v1/alerts``)."""

    type: Literal["webhook", "slack"]
    #: Name of the target in the send state (default: the type).
    name: str | None = None
    #: Webhook URL (not a secret). A Slack URL *is* its secret: give it with url_env/url_file.
    url: str | None = None
    url_env: str | None = None
    url_file: str | None = None
    #: HMAC secret of a webhook (Standard Webhooks): ``whsec_<base64>`` or a passphrase.
    secret_env: str | None = "KUBETALLY_BUDGET_WEBHOOK_SECRET"
    secret_file: str | None = None
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _where(self) -> AlertTarget:
        given = [k for k in ("url", "url_env", "url_file") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of url, url_env, url_file")
        if self.type == "slack" and self.url:
            raise ValueError("a Slack webhook URL is a secret: give it with url_env or url_file, not url")
        return self

    @property
    def key(self) -> str:
        return self.name or self.type


class BudgetConfig(Strict):
    """One budget: a limit on a tenant's (project's, cluster's) spend or usage in a period."""

    name: str
    tenant: str | None = None
    project: str | None = None
    cluster: str | None = None
    #: Money in the price book's currency …
    amount: Decimal | None = None
    #: … or a quantity of ``item`` in display units (e.g. GPU-hours), optionally only usage
    #: whose labels include ``labels``.
    quantity: Decimal | None = None
    item: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    #: A custom period ``[start, end)``; without them the calendar month in ``billing.timezone``.
    start: datetime | None = None
    end: datetime | None = None
    #: Percentages of the limit that alert when the actual spend reaches them.
    thresholds: list[Decimal] = Field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    #: Percentage of the limit that alerts when the forecast reaches it (none: no forecast alert).
    forecast_threshold: Decimal | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("letters, digits, '.', '_' or '-' (at most 128, starting with a letter or digit)")
        return value

    @field_validator("amount", "quantity", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Decimal | None:
        return None if value is None else _positive(value, "the limit")

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, value: Any) -> list[Decimal]:
        if not isinstance(value, list) or not value:
            raise ValueError("must list at least one percentage")
        found = [_positive(v, "a threshold") for v in value]
        if len(set(found)) != len(found):
            raise ValueError("a percentage is listed twice")
        return sorted(found)

    @field_validator("forecast_threshold", mode="before")
    @classmethod
    def _forecast(cls, value: Any) -> Decimal | None:
        return None if value is None else _positive(value, "forecast_threshold")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _times(cls, value: Any) -> datetime | None:
        return None if value is None else _moment(value)

    @model_validator(mode="after")
    def _whole(self) -> BudgetConfig:
        scopes = [k for k in ("tenant", "project", "cluster") if getattr(self, k)]
        if len(scopes) != 1:
            raise ValueError("give exactly one of tenant, project, cluster")
        if (self.amount is None) == (self.quantity is None):
            raise ValueError("give exactly one of amount (money) or quantity (with item)")
        if self.quantity is not None and not self.item:
            raise ValueError("a quantity budget needs item (e.g. item: gpu_hours)")
        if self.amount is not None and (self.item or self.labels):
            raise ValueError("item/labels only go with a quantity budget")
        if (self.start is None) != (self.end is None):
            raise ValueError("a custom period needs both start and end")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def scope(self) -> tuple[str, str]:
        """(``tenant``/``project``/``cluster``, value)."""
        for kind in ("tenant", "project", "cluster"):
            value = getattr(self, kind)
            if value:
                return kind, value
        raise AssertionError("validated: one scope")

    @property
    def limit(self) -> Decimal:
        value = self.amount if self.amount is not None else self.quantity
        assert value is not None
        return value

    @property
    def money(self) -> bool:
        return self.amount is not None


class BudgetsConfig(Strict):
    #: Hours of usage the forecast's run rate is taken over.
    forecast_hours: int = Field(default=24, ge=1, le=24 * 31)
    notify: list[AlertTarget] = Field(default_factory=list)
    items: list[BudgetConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> BudgetsConfig:
        names = [b.name for b in self.items]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"budget name(s) used twice: {', '.join(twice)}")
        keys = [t.key for t in self.notify]
        if len(set(keys)) != len(keys):
            raise ValueError("two notify targets share a name: give each a distinct name")
        return self
