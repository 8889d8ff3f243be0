"""The price book as configured: the ``pricing:`` section of kubetally.yaml, or its own file.

Shape (all prices per *display* unit, i.e. after the display ``divisor``)::

    currency: USD
    prices:
      - category: compute            # display item name (= collection category)
        item: gpu_hours              # display method item (= collection item)
        effective: 2026-11-01        # optional; from this UTC midnight on (default: always)
        labels: [gpu_sku, capacity_type]   # or  label: modelName  (Alauda: one key)
        price: "2.50"                # default price; omit to leave non-matching rows unpriced
        groups:                      # first matching group wins, in this order
          - name: h100-spot
            match: {gpu_sku: [H100-SXM-80GB], capacity_type: spot}
            price: "1.95"
          - values: [Tesla T4]       # one-key rules: Alauda's value group
            tiers:                   # graduated per tenant and billing month
              - {upto: 1000, price: "0.40"}
              - {price: "0.30"}
    tenants:
      acme: {discount_percent: 10}
      beta: {markup_percent: 5}

Every key is checked (``extra="forbid"``): a typo in a price must never silently price a
bill at the default. Amounts are Decimals (write them as strings to avoid YAML floats; floats
are accepted and converted through their shortest repr, never through binary).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from kubetally import yamlfile
from kubetally.config.costmodel import Strict
from kubetally.errors import ConfigError
from kubetally.periods import parse_time
from kubetally.record import exact_problem, to_decimal

#: Reserved name of the fallback (non-group) price.
DEFAULT_GROUP = "default"
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    try:
        amount = to_decimal(value)
    except Exception:
        raise ValueError(f"not a number: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    problem = exact_problem(amount)
    if problem:
        raise ValueError(problem)
    return amount


def _price(value: Any) -> Decimal:
    amount = _amount(value)
    if amount < 0:
        raise ValueError("a price must not be negative")
    return amount


def _utc_midnight(value: Any) -> datetime:
    """Effective dates are whole UTC days: costs are computed on daily usage rollups."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(), tzinfo=UTC)
    elif isinstance(value, str):
        moment = parse_time(value)
    else:
        raise ValueError(f"expected a date like 2026-11-15, got {value!r}")
    moment = moment.astimezone(UTC)
    if moment.time() != time():
        raise ValueError(f"{value!r} is not a UTC midnight (prices change at whole UTC days)")
    return moment


class Tier(Strict):
    """One step of a graduated price: applies to cumulative usage up to ``upto`` (inclusive)."""

    upto: Decimal | None = None
    price: Decimal

    @field_validator("upto", mode="before")
    @classmethod
    def _upto(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        amount = _amount(value)
        if amount <= 0:
            raise ValueError("must be positive")
        return amount

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal:
        return _price(value)


def _check_tiers(tiers: list[Tier]) -> list[Tier]:
    if not tiers:
        raise ValueError("must list at least one tier")
    for index, tier in enumerate(tiers[:-1]):
        if tier.upto is None:
            raise ValueError(f"tiers[{index}]: only the last tier may omit 'upto'")
        following = tiers[index + 1].upto
        if following is not None and following <= tier.upto:
            raise ValueError(f"tiers[{index + 1}]: upto {following} must be above {tier.upto}")
    if tiers[-1].upto is not None:
        raise ValueError(f"tiers[{len(tiers) - 1}]: the last tier must omit 'upto' (usage is never capped)")
    return tiers


class PriceSpec(Strict):
    """A flat ``price`` or graduated ``tiers`` (exactly one of them)."""

    price: Decimal | None = None
    tiers: list[Tier] | None = None

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Decimal | None:
        return None if value is None else _price(value)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[Tier] | None) -> list[Tier] | None:
        return None if value is None else _check_tiers(value)

    @property
    def has_price(self) -> bool:
        return self.price is not None or self.tiers is not None

    def tier_list(self) -> tuple[Tier, ...]:
        """A flat price is one unbounded tier, so rating has a single code path."""
        if self.tiers is not None:
            return tuple(self.tiers)
        assert self.price is not None
        return (Tier(price=self.price),)


class LabelGroup(PriceSpec):
    """A price for records whose labels match (Alauda: a value group of one label key)."""

    name: str | None = None
    #: Shorthand for one-key rules: the key's value must be one of these.
    values: list[str] | None = None
    #: key → value or list of values; every listed key must match; unlisted keys match anything.
    match: dict[str, str | list[str]] | None = None

    @field_validator("values")
    @classmethod
    def _values(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("must list at least one value")
        return value

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, str | list[str]] | None) -> dict[str, str | list[str]] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one label")
            for key, wanted in value.items():
                if isinstance(wanted, list) and not wanted:
                    raise ValueError(f"{key}: must list at least one value")
        return value

    @model_validator(mode="after")
    def _shape(self) -> LabelGroup:
        if (self.values is None) == (self.match is None):
            raise ValueError("give exactly one of 'values' (one-key rule) or 'match'")
        if not self.has_price:
            raise ValueError("needs 'price' or 'tiers'")
        if self.price is not None and self.tiers is not None:
            raise ValueError("give 'price' or 'tiers', not both")
        if self.name == DEFAULT_GROUP:
            raise ValueError(f"name {DEFAULT_GROUP!r} is reserved for the default price")
        return self


class PriceEntry(PriceSpec):
    """The price of one (category, item) from one effective date on."""

    category: str
    item: str
    effective: datetime | None = None
    label: str | None = None
    labels: list[str] | None = None
    groups: list[LabelGroup] = Field(default_factory=list)
    description: str = ""

    @field_validator("category", "item")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("effective", mode="before")
    @classmethod
    def _effective(cls, value: Any) -> datetime | None:
        return None if value is None else _utc_midnight(value)

    @property
    def keys(self) -> tuple[str, ...]:
        """The label keys this rule prices by (also the SKU dimensions)."""
        if self.label is not None:
            return (self.label,)
        return tuple(self.labels or ())

    @model_validator(mode="after")
    def _shape(self) -> PriceEntry:
        if self.label is not None and self.labels is not None:
            raise ValueError("give 'label' (one key) or 'labels' (several), not both")
        if self.labels is not None and (not self.labels or len(set(self.labels)) != len(self.labels)):
            raise ValueError("labels: must list distinct label keys")
        if self.price is not None and self.tiers is not None:
            raise ValueError("give 'price' or 'tiers' as the default, not both")
        if not self.groups and not self.has_price:
            raise ValueError("has no price: give 'price', 'tiers' or label 'groups'")
        if self.groups and not self.keys:
            raise ValueError("groups need the label key(s) they match: add 'label' or 'labels'")
        names: set[str] = set()
        for index, group in enumerate(self.groups):
            where = f"groups[{index}]"
            if group.values is not None and len(self.keys) != 1:
                raise ValueError(f"{where}: 'values' is for one-key rules; use 'match' with several labels")
            if group.match is not None:
                unknown = sorted(set(group.match) - set(self.keys))
                if unknown:
                    raise ValueError(f"{where}: match keys {unknown} are not in labels {list(self.keys)}")
            name = group_name(self.keys, group)
            if name in names:
                raise ValueError(f"{where}: group name {name!r} is used twice")
            names.add(name)
        return self


def group_name(keys: tuple[str, ...], group: LabelGroup) -> str:
    """A group's stable name: its own, else its match written out (``gpu_sku=H100|A100``)."""
    if group.name:
        return group.name
    if group.values is not None:
        return f"{keys[0]}={'|'.join(group.values)}"
    assert group.match is not None
    parts = []
    for key in keys:
        if key in group.match:
            wanted = group.match[key]
            parts.append(f"{key}={'|'.join(wanted) if isinstance(wanted, list) else wanted}")
    return ",".join(parts)


class TenantAdjustment(Strict):
    """A per-tenant discount or markup, in percent of the list price."""

    discount_percent: Decimal | None = None
    markup_percent: Decimal | None = None

    @field_validator("discount_percent", "markup_percent", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Decimal | None:
        if value is None:
            return None
        amount = _amount(value)
        if amount < 0:
            raise ValueError("must not be negative")
        return amount

    @model_validator(mode="after")
    def _one(self) -> TenantAdjustment:
        if (self.discount_percent is None) == (self.markup_percent is None):
            raise ValueError("give exactly one of discount_percent or markup_percent")
        if self.discount_percent is not None and self.discount_percent > 100:
            raise ValueError("discount_percent: must be at most 100")
        return self

    @property
    def factor(self) -> Decimal:
        """Multiplier on the list price (0.9 for a 10 % discount, 1.05 for a 5 % markup)."""
        if self.discount_percent is not None:
            return 1 - self.discount_percent / 100
        assert self.markup_percent is not None
        return 1 + self.markup_percent / 100


class FocusSettings(Strict):
    """Names FOCUS needs that the ledger does not know."""

    provider: str = "kubetally"
    publisher: str = "kubetally"
    invoice_issuer: str = "kubetally"
    billing_account_id: str = "kubetally"
    billing_account_name: str = "kubetally"
    #: Extra category → FOCUS ServiceCategory mappings (see ``reports.focus``).
    service_categories: dict[str, str] = Field(default_factory=dict)


class PriceBookConfig(Strict):
    """The validated price book."""

    currency: str
    prices: list[PriceEntry] = Field(default_factory=list)
    tenants: dict[str, TenantAdjustment] = Field(default_factory=dict)
    focus: FocusSettings = Field(default_factory=FocusSettings)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.match(value):
            raise ValueError(f"must be an ISO 4217 code such as USD or CNY, not {value!r}")
        return value

    @model_validator(mode="after")
    def _unique(self) -> PriceBookConfig:
        seen: dict[tuple[str, str, datetime | None], int] = {}
        for index, entry in enumerate(self.prices):
            key = (entry.category, entry.item, entry.effective)
            if key in seen:
                when = entry.effective.date().isoformat() if entry.effective else "(no effective date)"
                raise ValueError(
                    f"prices[{index}]: {entry.category}/{entry.item} effective {when} is already "
                    f"priced by prices[{seen[key]}]"
                )
            seen[key] = index
        return self


def load_pricebook_file(path: str | Path) -> PriceBookConfig:
    """Load a price book from its own YAML file (a bare price book, or ``pricing:`` inside a
    kubetally.yaml). Raises :class:`ConfigError` naming the file and field of every problem."""
    from kubetally.config.loader import pydantic_problems

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    try:
        doc = yamlfile.load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {yamlfile.describe(exc)}"]) from None
    where = source
    if isinstance(doc, dict) and "pricing" in doc and "currency" not in doc:
        doc, where = doc["pricing"], f"{source}: pricing"
    if not isinstance(doc, dict):
        raise ConfigError([f"{where}: expected a mapping with 'currency' and 'prices'"])
    try:
        return PriceBookConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(where, exc)) from None
