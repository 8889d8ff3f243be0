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
from decimal import MAX_PREC, Context, Decimal, InvalidOperation
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


#: The context of :func:`normalize`: a precision no Decimal reaches, so normalising never rounds
#: (made once: building a context per call cost more than the normalising itself).
_EXACT = Context(prec=MAX_PREC)
_ONE = Decimal(1)


def normalize(value: Decimal) -> Decimal:
    """Canonical form for storage and comparison: no exponent noise, no trailing zeros.
    Exact at any size (the default 28-digit context would round silently)."""
    if value == 0:
        return Decimal(0)
    normalized = value.normalize(_EXACT)
    # normalize() turns 100 into 1E+2; quantize back to an integer exponent for readability.
    # Only a value of at least 10 can end up with a positive exponent (as_tuple is the slow part).
    if normalized.adjusted() > 0:
        exponent = normalized.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            return normalized.quantize(_ONE, context=_EXACT)
    return normalized


_json_string = json.JSONEncoder(ensure_ascii=False).encode
#: JSON text of strings that repeat across records (tenants, items, SKUs, label keys …).
_ENCODED: dict[str, str] = {}
_ENCODED_MAX = 200_000


def json_string(value: str) -> str:
    """``json.dumps(value, ensure_ascii=False)`` of a string, cached: ids and label JSON are
    written for every record from a few thousand distinct strings."""
    out = _ENCODED.get(value)
    if out is None:
        out = _json_string(value)
        if len(_ENCODED) >= _ENCODED_MAX:  # names of short-lived pods must not pile up forever
            _ENCODED.clear()
        _ENCODED[value] = out
    return out


_START_TEXT: dict[datetime, str] = {}


def _start_text(start: datetime) -> str:
    """``format_time`` of a period start; a run has few distinct starts, each used per record."""
    out = _START_TEXT.get(start)
    if out is None:
        if len(_START_TEXT) >= 10_000:
            _START_TEXT.clear()
        out = _START_TEXT[start] = format_time(start)
    return out


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
    """Deterministic 32-hex id of a measurement (docs/architecture.md, "The record contract").

    The hashed text is the canonical JSON (sorted keys, no spaces, UTF-8) of cluster, kind,
    category, item, name, namespace, project, tenant, period, start and dimensions; it is written
    here key by key in that sorted order, with the JSON of repeated strings cached, because this
    runs once per record (``tests/core/test_record.py`` checks it against ``json.dumps``)."""
    dims = ",".join(f"{json_string(k)}:{json_string(v)}" for k, v in sorted(dimensions.items())) if dimensions else ""
    canonical = (
        f'{{"category":{json_string(category)},"cluster":{json_string(cluster)},"dimensions":{{{dims}}},'
        f'"item":{json_string(item)},"kind":{json_string(kind)},"name":{json_string(name)},"namespace":{json_string(namespace)},'
        f'"period":{json_string(str(PeriodKind.parse(str(period))))},"project":{json_string(project)},'
        f'"start":"{_start_text(start)}","tenant":{json_string(tenant)}}}'
    )
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def record_id_reference(**fields: Any) -> str:
    """The id as first specified (one ``json.dumps`` of the payload): the test oracle of
    :func:`record_id`, kept so the fast form can never drift from it unnoticed."""
    payload = {
        "cluster": fields["cluster"],
        "kind": fields["kind"],
        "category": fields["category"],
        "item": fields["item"],
        "name": fields["name"],
        "namespace": fields["namespace"],
        "project": fields["project"],
        "tenant": fields["tenant"],
        "period": str(PeriodKind.parse(str(fields["period"]))),
        "start": format_time(fields["start"]),
        "dimensions": dict(sorted((fields.get("dimensions") or {}).items())),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


#: Kinds of the provider's own records (tenant empty; see ``sources/kubernetes/provider.py``):
#: a node's capacity, its down and cordoned time, its idle remainder and over-commit. They are
#: not a tenant's usage, so delivery skips them unless a destination asks for them.
PROVIDER_KINDS = frozenset({"NodeCapacity", "NodeDown", "NodeCordoned", "NodeIdle", "NodeOvercommit"})


_BOUNDS: dict[tuple[datetime, datetime], tuple[datetime, datetime, datetime]] = {}


def _bounds(period: Period) -> tuple[datetime, datetime, datetime]:
    """(start, day, last second) of a period in UTC, computed once per period, not per record."""
    key = (period.start, period.end)
    out = _BOUNDS.get(key)
    if out is None:
        if len(_BOUNDS) >= 10_000:
            _BOUNDS.clear()
        out = _BOUNDS[key] = (utc(period.start), utc(period.day), utc(period.last_second))
    return out


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


def storable(value: str, limit: int) -> bool:
    """Whether a record field of at most ``limit`` characters can hold ``value`` (see FIELD_LIMITS)."""
    return len(value) <= limit and "\x00" not in value


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
        try:
            exact = to_decimal(value)
        except ArithmeticError:  # decimal.InvalidOperation: pydantic reports ValueErrors only
            raise ValueError(f"not a decimal number: {value!r}") from None
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
        kind_of_period = period_kind if isinstance(period_kind, PeriodKind) else PeriodKind.parse(period_kind)
        start, date, end = _bounds(period)
        # Every field is built and normalised here exactly as the validators would, so the model
        # is constructed without re-validating (this runs once per record) — unless a name is one
        # the ledger cannot hold, which the validators then refuse by field.
        values: dict[str, Any] = dict(
            id=record_id(
                cluster=cluster,
                kind=kind,
                category=category,
                item=item,
                name=name,
                namespace=namespace,
                project=project,
                tenant=tenant,
                period=kind_of_period,
                start=start,
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
            date=date,
            period=kind_of_period,
            start=start,
            end=end,
            usage=normalize(to_decimal(usage)),
            unit=unit,
            revision=0,
        )
        if any(not storable(values[f], limit) for f, limit in FIELD_LIMITS.items()):
            return cls(**values)
        return cls._trusted(values)

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> UsageRecord:
        """What ``model_construct`` does for this model (every field given in ``values``, which
        becomes the record's own dict; no extras, no private attributes), without its per-call
        generality: this runs once per record."""
        record = cls.__new__(cls)
        _set = object.__setattr__
        _set(record, "__dict__", values)
        _set(record, "__pydantic_fields_set__", set(_ALL_FIELDS))
        _set(record, "__pydantic_extra__", None)
        _set(record, "__pydantic_private__", None)
        return record

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


_ALL_FIELDS = frozenset(UsageRecord.model_fields)


class RecordBuilder:
    """Builds the records of one period of one cluster, each exactly the record
    :meth:`UsageRecord.measure` builds from the same arguments, at a fraction of its cost: a
    source's meter makes one record per (thing, item, dimensions) per period, 245,000 of them
    for an hour of a 100,000-pod cluster.

    What repeats is made once: the period's bounds and text, and per (category, item,
    dimensions) the leading part of the canonical id JSON. What a record is about (kind, name,
    namespace, project, tenant) is checked against the ledger's limits and turned into its id
    JSON once per run of records about the same thing (a meter emits a thing's items one after
    another), so nothing per record is kept beyond the period. A name the ledger cannot hold
    goes through :meth:`UsageRecord.measure`, which refuses it by field as before."""

    def __init__(self, *, cluster: str, period_kind: PeriodKind, period: Period, unit: str = ""):
        self.cluster = cluster
        self.unit = unit
        self.period_kind = PeriodKind.parse(str(period_kind))
        self.period = period
        self._start, self._date, self._end = _bounds(period)
        self._cluster_json = json_string(cluster)
        self._period_json = json_string(str(self.period_kind))
        self._start_json = f'"start":"{_start_text(self._start)}",'
        self._fixed_ok = storable(cluster, FIELD_LIMITS["cluster"]) and storable(unit, FIELD_LIMITS["unit"])
        self._heads: dict[tuple[str, str, tuple[tuple[str, str], ...]], str | None] = {}
        self._subject: tuple[str, str, str, str, str] | None = None
        self._subject_json: tuple[str, str] | None = None

    def _head(self, category: str, item: str, dimensions: tuple[tuple[str, str], ...]) -> str | None:
        """``{"category":…,"cluster":…,"dimensions":{…},"item":…,`` (None: not storable)."""
        key = (category, item, dimensions)
        if key in self._heads:
            return self._heads[key]
        head: str | None = None
        if self._fixed_ok and storable(category, FIELD_LIMITS["category"]) and storable(item, FIELD_LIMITS["item"]):
            dims = ",".join(f"{json_string(k)}:{json_string(v)}" for k, v in sorted(dict(dimensions).items()))
            head = (
                f'{{"category":{json_string(category)},"cluster":{self._cluster_json},"dimensions":{{{dims}}},'
                f'"item":{json_string(item)},'
            )
        if len(self._heads) >= 10_000:
            self._heads.clear()
        self._heads[key] = head
        return head

    def _subject_parts(self, subject: tuple[str, str, str, str, str]) -> tuple[str, str] | None:
        """(``"kind":…,…,"project":…,``, ``"tenant":…}``) of a subject (None: not storable)."""
        kind, name, namespace, project, tenant = subject
        if not (
            storable(kind, FIELD_LIMITS["kind"])
            and storable(name, FIELD_LIMITS["name"])
            and storable(namespace, FIELD_LIMITS["namespace"])
            and storable(project, FIELD_LIMITS["project"])
            and storable(tenant, FIELD_LIMITS["tenant"])
        ):
            return None
        return (
            f'"kind":{json_string(kind)},"name":{json_string(name)},"namespace":{json_string(namespace)},'
            f'"period":{self._period_json},"project":{json_string(project)},',
            f'"tenant":{json_string(tenant)}}}',
        )

    def __call__(
        self,
        kind: str,
        category: str,
        item: str,
        name: str,
        namespace: str,
        project: str,
        tenant: str,
        usage: Decimal,
        dimensions: tuple[tuple[str, str], ...],
        labels: dict[str, str],
    ) -> UsageRecord:
        """The record; ``usage`` must be normalised (:func:`normalize`), ``dimensions`` and
        ``labels`` hold strings, and ``labels`` becomes the record's own (dimensions merged in,
        winning on conflict, as :meth:`UsageRecord.measure` merges them)."""
        subject = (kind, name, namespace, project, tenant)
        if subject != self._subject:
            self._subject, self._subject_json = subject, self._subject_parts(subject)
        parts = self._subject_json
        head = self._heads.get((category, item, dimensions)) or self._head(category, item, dimensions)
        if parts is None or head is None:
            return UsageRecord.measure(
                cluster=self.cluster,
                kind=kind,
                category=category,
                item=item,
                name=name,
                period_kind=self.period_kind,
                period=self.period,
                usage=usage,
                namespace=namespace,
                project=project,
                tenant=tenant,
                unit=self.unit,
                dimensions=dict(dimensions),
                labels=labels,
            )
        canonical = head + parts[0] + self._start_json + parts[1]
        if dimensions:
            labels.update(dimensions)
        return UsageRecord._trusted(
            {
                "id": hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest(),
                "kind": kind,
                "category": category,
                "item": item,
                "name": name,
                "namespace": namespace,
                "cluster": self.cluster,
                "project": project,
                "tenant": tenant,
                "labels": labels,
                "date": self._date,
                "period": self.period_kind,
                "start": self._start,
                "end": self._end,
                "usage": usage,
                "unit": self.unit,
                "revision": 0,
            }
        )


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
