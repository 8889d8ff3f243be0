"""The UsageRecord: the one contract every source writes and every consumer reads.

Its ``id`` is a hash of *what* was measured and *for which period*, never of the quantity, so a
re-measured period keeps its id and the ledger can tell a duplicate (same quantity) from a
correction (new revision). Quantities are :class:`~decimal.Decimal` end to end; JSON carries
them as exact number literals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubetally.periods import Period, PeriodKind, format_time, parse_time, utc

#: Hours are kept to the second: 1 s = 0.000277777… h, so 9 decimal places keep every
#: whole second distinct and make sums of per-second integrations reproducible.
HOURS_PLACES = Decimal("0.000000001")


def to_decimal(value: Any) -> Decimal:
    """Convert a number to Decimal without binary-float noise (floats go through ``repr``).
    Anything else (``true``, ``[]``, ``abc``) is a ``ValueError`` a message can name."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None


def exact_number(value: Any) -> Decimal:
    """A finite number the ledger and the price book can hold exactly (else ``ValueError``)."""
    number = to_decimal(value)
    problem = exact_problem(number)
    if problem:
        raise ValueError(problem)
    return number


def seconds_to_hours(seconds: int | Decimal) -> Decimal:
    """Exact seconds → hours rounded half-even to 9 places (see :data:`HOURS_PLACES`)."""
    return (Decimal(seconds) / Decimal(3600)).quantize(HOURS_PLACES)


#: The ledger stores a quantity exactly when it has at most this many digits before and after
#: the decimal point (a SQLite cell holds 64 characters; PostgreSQL NUMERIC would hold more, but
#: both backends must agree). 10^24 GPU-seconds is far beyond any real bill.
MAX_INTEGER_DIGITS = 24
MAX_FRACTION_DIGITS = 30


def exact_problem(value: Decimal) -> str | None:
    """Why ``value`` cannot be a ledger quantity (``None``: it can), for messages that name it."""
    if not value.is_finite():
        return f"{value} is not a finite number"
    if value == 0:
        return None
    _sign, digits, exponent = value.normalize(Context(prec=len(value.as_tuple().digits) + 1)).as_tuple()
    assert isinstance(exponent, int)
    integer_digits = len(digits) + exponent
    if integer_digits > MAX_INTEGER_DIGITS:
        return (
            f"{value} is too large to be stored exactly (at most {MAX_INTEGER_DIGITS} digits before the decimal point)"
        )
    if -exponent > MAX_FRACTION_DIGITS:
        return f"{value} has more than {MAX_FRACTION_DIGITS} decimal places and would not be stored exactly"
    return None


def normalize(value: Decimal) -> Decimal:
    """Canonical form for storage and comparison: no exponent noise, no trailing zeros.
    Exact at any size (the default 28-digit context would round silently)."""
    if value == 0:
        return Decimal(0)
    context = Context(prec=max(len(value.as_tuple().digits), 1) + 1)
    normalized = value.normalize(context)
    # normalize() turns 100 into 1E+2; quantize back to an integer exponent for readability.
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return normalized.quantize(Decimal(1), context=Context(prec=len(normalized.as_tuple().digits) + exponent + 1))
    return normalized


def record_id(
    *,
    cluster: str,
    kind: str,
    category: str,
    item: str,
    name: str,
    namespace: str,
    project: str,
    tenant: str,
    period: PeriodKind | str,
    start: datetime,
    dimensions: Mapping[str, str] | None = None,
) -> str:
    """Deterministic 32-hex id of a measurement (docs/architecture.md, "The record contract")."""
    payload = {
        "cluster": cluster,
        "kind": kind,
        "category": category,
        "item": item,
        "name": name,
        "namespace": namespace,
        "project": project,
        "tenant": tenant,
        "period": str(PeriodKind.parse(str(period))),
        "start": format_time(start),
        "dimensions": dict(sorted((dimensions or {}).items())),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


#: Longest text each record field may hold: the ledger's column widths (ledger/schema.py), which
#: cover every name Kubernetes allows (object names ≤ 253, namespaces ≤ 63). Checked on every
#: record so SQLite (which ignores widths) and PostgreSQL (which enforces them) agree, and a
#: 20,000-character Prometheus label is refused by name instead of failing in the database.
FIELD_LIMITS = {
    "kind": 128,
    "category": 128,
    "item": 128,
    "name": 512,
    "namespace": 253,
    "cluster": 253,
    "project": 253,
    "tenant": 253,
    "unit": 64,
}


class UsageRecord(BaseModel):
    """One measured quantity for one thing, one tenant and one closed period."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    kind: str
    category: str
    item: str
    name: str
    namespace: str = ""
    cluster: str
    project: str = ""
    tenant: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    date: datetime
    period: PeriodKind
    start: datetime
    end: datetime
    usage: Decimal
    unit: str = ""
    revision: int = 0

    @field_validator("date", "start", "end", mode="before")
    @classmethod
    def _parse_times(cls, value: Any) -> datetime:
        return parse_time(value) if isinstance(value, str) else utc(value)

    @field_validator("kind", "category", "item", "name", "namespace", "cluster", "project", "tenant", "unit")
    @classmethod
    def _storable_text(cls, value: str, info: Any) -> str:
        limit = FIELD_LIMITS[info.field_name]
        if len(value) > limit:
            raise ValueError(
                f"{len(value)} characters long; the ledger holds at most {limit} (Kubernetes names are at most 253)"
            )
        if "\x00" in value:
            raise ValueError("contains a NUL character, which no database stores")
        return value

    @field_validator("usage", mode="before")
    @classmethod
    def _exact_usage(cls, value: Any) -> Decimal:
        exact = to_decimal(value)
        problem = exact_problem(exact)
        if problem:
            raise ValueError(f"usage {problem}")
        return normalize(exact)

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> PeriodKind:
        return PeriodKind.parse(value)

    @classmethod
    def measure(
        cls,
        *,
        cluster: str,
        kind: str,
        category: str,
        item: str,
        name: str,
        period_kind: PeriodKind,
        period: Period,
        usage: Decimal | int | float | str,
        namespace: str = "",
        project: str = "",
        tenant: str = "",
        unit: str = "",
        dimensions: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> UsageRecord:
        """Build a record and its id. ``dimensions`` split usage (part of the id);
        ``labels`` only enrich it. Both end up in ``labels``; dimensions win on conflict."""
        dims = {k: str(v) for k, v in (dimensions or {}).items()}
        merged = {k: str(v) for k, v in (labels or {}).items()} | dims
        return cls(
            id=record_id(
                cluster=cluster,
                kind=kind,
                category=category,
                item=item,
                name=name,
                namespace=namespace,
                project=project,
                tenant=tenant,
                period=period_kind,
                start=period.start,
                dimensions=dims,
            ),
            kind=kind,
            category=category,
            item=item,
            name=name,
            namespace=namespace,
            cluster=cluster,
            project=project,
            tenant=tenant,
            labels=merged,
            date=period.day,
            period=period_kind,
            start=period.start,
            end=period.last_second,
            usage=usage,
            unit=unit,
        )

    @property
    def period_window(self) -> Period:
        """The exclusive-end window this record covers."""
        return Period(self.start, self.start + self.period.length)

    def to_dict(self) -> dict[str, Any]:
        """The wire shape of docs/architecture.md ("The record contract"), with ``usage`` left as a Decimal."""
        return {
            "id": self.id,
            "kind": self.kind,
            "category": self.category,
            "item": self.item,
            "name": self.name,
            "namespace": self.namespace,
            "cluster": self.cluster,
            "project": self.project,
            "tenant": self.tenant,
            "labels": dict(sorted(self.labels.items())),
            "date": format_time(self.date),
            "period": str(self.period),
            "start": format_time(self.start),
            "end": format_time(self.end),
            "usage": self.usage,
            "unit": self.unit,
            "revision": self.revision,
        }

    def to_json(self) -> str:
        """One JSON line; ``usage`` is written as an exact number literal, never via float."""
        return dumps_exact(self.to_dict())

    @classmethod
    def from_json(cls, line: str) -> UsageRecord:
        return cls.model_validate(json.loads(line, parse_float=Decimal))


def _encode_exact(value: Any) -> str:
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode_exact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def dumps_exact(value: Any) -> str:
    """``json.dumps`` that writes Decimals as exact number literals (no float round trip)."""
    return _encode_exact(value)


def total_usage(records: Iterable[UsageRecord]) -> Decimal:
    return sum((r.usage for r in records), Decimal(0))
