"""Cost-model items: the Alauda collection and display configs, plus what they lack.

The field names and shapes are Alauda's, so their ConfigMaps load unchanged. Additions are
optional fields with safe defaults: ``aggregation`` (how step points become usage), ``unit``
(the raw unit's name), ``settle_delay`` (per-item override) and ``dimensions`` (extra labels
of the usage series that split records instead of being summed away).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kubetally.periods import PeriodKind, parse_duration


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a billing config must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Aggregation(StrEnum):
    #: usage = Σ points (``increase()`` queries, value-1 series counted in steps)
    sum = "sum"
    #: usage = Σ point × step / 3600, i.e. unit-hours (``rate()`` and gauge queries)
    integral = "integral"


class Mappers(Strict):
    """Which series label becomes which record field; ``""`` means "fill in locally"."""

    name: str
    namespace: str = ""
    cluster: str = ""
    project: str = ""

    @field_validator("name")
    @classmethod
    def _name_required(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the series label that identifies what was used")
        return value


class LabelQuery(Strict):
    query: str
    mappers: Mappers

    @field_validator("query")
    @classmethod
    def _query_required(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class UsageQuery(LabelQuery):
    step: timedelta

    @field_validator("step", mode="before")
    @classmethod
    def _parse_step(cls, value: Any) -> timedelta:
        step = parse_duration(value)
        if step <= timedelta(0):
            raise ValueError("must be positive")
        return step


class CollectionItem(Strict):
    """One billing item: a PromQL usage query (and optional label query) per closed period."""

    kind: str
    category: str
    item: str
    period: PeriodKind = PeriodKind.hourly
    labels: LabelQuery | None = None
    usage: UsageQuery
    aggregation: Aggregation = Aggregation.sum
    unit: str = ""
    settle_delay: timedelta | None = None
    dimensions: list[str] = Field(default_factory=list)
    #: Label each record with the share of the period that had data (``coverage``, 4 places,
    #: and ``coverage_steps``, exact ``points/steps``): for gauges where missing samples are
    #: missing, not zero (a GPU's utilisation before CUDA starts), so a reader can tell.
    coverage: bool = False
    #: Negative usage is refused unless the item meters real credits (a gauge below zero is
    #: otherwise a broken exporter, and would silently lower a bill).
    allow_negative: bool = False

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> PeriodKind:
        return PeriodKind.parse(value)

    @field_validator("settle_delay", mode="before")
    @classmethod
    def _settle(cls, value: Any) -> timedelta | None:
        return None if value is None else parse_duration(value)

    @field_validator("kind", "category", "item")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _step_divides_period(self) -> CollectionItem:
        problem = step_problem(self.period, self.usage.step)
        if problem:
            raise ValueError(problem)
        return self


def step_problem(period: PeriodKind, step: timedelta) -> str | None:
    """Why ``step`` cannot split a ``period`` into whole steps (``None``: it can)."""
    seconds = int(period.length.total_seconds())
    step_seconds = int(step.total_seconds())
    if step_seconds > seconds or seconds % step_seconds:
        return f"usage.step {step_seconds}s does not divide the {period} period ({seconds}s) into whole steps"
    return None


def raw_step_problem(raw: Any) -> str | None:
    """:func:`step_problem` from an item's raw mapping, for an item that failed validation
    (pydantic skips whole-item checks when a field is invalid). ``None`` also when ``period``
    or ``usage.step`` is itself invalid: that is reported as a field error already."""
    if not isinstance(raw, dict) or not isinstance(raw.get("usage"), dict) or "step" not in raw["usage"]:
        return None
    try:
        period = PeriodKind.parse(raw.get("period", PeriodKind.hourly.value))
        step = parse_duration(raw["usage"]["step"])
    except (TypeError, ValueError):
        return None
    return step_problem(period, step) if step > timedelta(0) else None


class LocalizedText(Strict):
    zh: str = ""
    en: str = ""

    def text(self, lang: str = "en") -> str:
        return (self.zh if lang == "zh" else self.en) or self.en or self.zh


class DisplayMethod(Strict):
    name: str
    displayname: LocalizedText = Field(default_factory=LocalizedText)
    item: str
    divisor: Decimal = Decimal(1)
    unit: LocalizedText = Field(default_factory=LocalizedText)

    @field_validator("divisor", mode="before")
    @classmethod
    def _exact_divisor(cls, value: Any) -> Decimal:
        from kubetally.record import exact_number

        divisor = exact_number(value)
        if divisor <= 0:
            raise ValueError("must be positive")
        return divisor


class DisplayItem(Strict):
    """A display (server-side) billing item; ``name`` equals collection ``category``."""

    name: str
    displayname: LocalizedText = Field(default_factory=LocalizedText)
    methods: list[DisplayMethod]

    @model_validator(mode="after")
    def _unique_methods(self) -> DisplayItem:
        seen: set[str] = set()
        for method in self.methods:
            if method.name in seen:
                raise ValueError(f"method name {method.name!r} is used twice")
            seen.add(method.name)
        return self


class DisplayEntry(BaseModel):
    """A display item and one of its methods, looked up by collection ``item``."""

    category: DisplayItem
    method: DisplayMethod

    @property
    def divisor(self) -> Decimal:
        return self.method.divisor
