"""One cost-model item × one closed period → usage records.

Per item and period: one range query for usage, one for labels (if the item has a label
query), and — when ``mappers.project`` is ``""`` — the namespace → project map (shared by all
items of the period). Each usage series gives ``name``, ``namespace``, ``cluster`` and
``project`` through the item's mappers; series that map to the same record (same identity and
same dimension values) are added up, then their grid points become usage by the item's
aggregation (see :mod:`kubetally.sources.prometheus.evaluate`).

A record's tenant is ``tenant_of(namespace)`` when a tenancy resolver is given (the
Kubernetes tenancy rules), else its project, else its namespace.

Problems that make a series unattributable — its mapped ``name`` (or mapped ``cluster``) label
is missing — stop the item with a :class:`~kubetally.errors.SourceError` naming the item, the
mapper field and the series: guessing would bill the wrong party, skipping would lose usage,
and the query is fixed in a minute. Points that are not finite numbers (NaN, ±Inf, e.g. from a
division by zero in the query) carry no quantity; they are dropped and reported as warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from kubetally.config.costmodel import CollectionItem
from kubetally.errors import SourceError
from kubetally.periods import Period, format_time
from kubetally.record import UsageRecord, exact_problem, normalize
from kubetally.sources.prometheus.client import PrometheusClient, parse_time, parse_value
from kubetally.sources.prometheus.evaluate import aggregate, grid, range_window
from kubetally.sources.prometheus.join import LabelIndex, dimension_labels, join_fields
from kubetally.sources.prometheus.project import ProjectResolver

TenantOf = Callable[[str], str | None]

#: The source name of Prometheus watermarks in the ledger.
SOURCE = "prometheus"


@dataclass(frozen=True)
class _RecordKey:
    name: str
    namespace: str
    cluster: str
    project: str
    dimensions: tuple[tuple[str, str], ...]


@dataclass
class CollectedPeriod:
    """What one item yielded for one period (records not yet written)."""

    item: CollectionItem
    period: Period
    records: list[UsageRecord]
    series: int = 0
    warnings: list[str] = field(default_factory=list)


def coverage_labels(present: int, steps: int) -> dict[str, str]:
    """``coverage`` (share of the period's steps with a point, half-even to 4 places) and the
    exact ``coverage_steps`` it comes from."""
    share = (Decimal(present) / Decimal(steps)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)
    return {"coverage": format(normalize(share), "f"), "coverage_steps": f"{present}/{steps}"}


def _shown(value: str, limit: int = 60) -> str:
    """A name from a series, fit for a one-line message: quoted, escaped, and cut when long."""
    return repr(value[:limit]) + (f"… ({len(value)} characters)" if len(value) > limit else "")


def _series_text(labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Collector:
    """Evaluates items over periods against one Prometheus, for one cluster."""

    def __init__(
        self,
        client: PrometheusClient,
        *,
        cluster: str,
        project_label: str = "cpaas.io/project",
        tenant_of: TenantOf | None = None,
    ):
        self.client = client
        self.cluster = cluster
        self.tenant_of = tenant_of
        self.projects = ProjectResolver(client, project_label)

    def collect(self, item: CollectionItem, period: Period) -> CollectedPeriod:
        """Safe to call from several threads at once (one item-period each)."""
        if period.length != item.period.length:
            raise ValueError(f"item {item.item!r} is {item.period}, not a {period.length} period")
        step = item.usage.step
        start, end = range_window(period, step)
        where = f"item {item.item!r}"
        what = f"{where} usage.query for {period}"
        usage = self.client.query_range_raw(item.usage.query, start, end, step, what=what)
        collected = CollectedPeriod(item=item, period=period, records=[], series=len(usage.series))
        collected.warnings.extend(f"{where}: usage.query: Prometheus warns: {w}" for w in usage.warnings)

        label_index = self._label_index(item, period, collected.warnings)

        def projects() -> dict[str, str]:
            # Asked only when a series needs its project derived from its namespace.
            return self.projects.projects(period, step)

        # The grid as unix seconds: an answer's timestamps are JSON numbers (integers for whole
        # seconds), and 1772445600 == 1772445600.0 in a set, so points are matched without
        # turning them into datetimes. Each distinct value string is parsed once per answer.
        wanted = {at.timestamp() for at in grid(period, step)}
        decimals: dict[Any, Decimal] = {}
        points: dict[_RecordKey, list[Decimal]] = {}
        instants: dict[_RecordKey, set[Any]] = {}
        for series in usage.series:
            key = self._key(item, series.labels, projects)
            values = points.setdefault(key, [])
            seen = instants.setdefault(key, set()) if item.coverage else None
            try:
                for ts, raw in series.values:
                    if ts not in wanted:
                        if type(ts) is not int and type(ts) is not float:
                            # A timestamp Prometheus sends as a number, sent as anything else
                            # (a string, null): refused by name, not skipped as off-grid.
                            raise TypeError(f"timestamp {ts!r} is not a number")
                        continue
                    value = decimals.get(raw)
                    if value is None:
                        value = decimals[raw] = parse_value(raw)
                    if not value.is_finite():
                        collected.warnings.append(
                            f"{where}: usage.query: dropped {value} at {format_time(parse_time(ts))} "
                            f"for {_series_text(series.labels)}"
                        )
                        continue
                    values.append(value)
                    if seen is not None:
                        seen.add(ts)
            except (TypeError, ValueError, InvalidOperation) as exc:
                raise self.client.malformed(what, exc, item.usage.query) from None
        del usage, decimals  # the answer's points are summed: free them before the records are built

        steps = len(wanted)
        tenants: dict[tuple[str, str], str] = {}  # a tenant depends on the namespace and project only
        for key, values in sorted(points.items(), key=lambda kv: _sort_key(kv[0])):
            if not values:
                continue  # present in the answer but not at any grid point of this period
            labels = {}
            if label_index is not None:
                labels = label_index.lookup(key.name, namespace=key.namespace, cluster=key.cluster)
            if item.coverage:
                labels = {**labels, **coverage_labels(len(instants[key]), steps)}
            quantity = self._usage(item, key, values, period)
            tenant = tenants.get((key.namespace, key.project))
            if tenant is None:
                tenant = tenants[key.namespace, key.project] = self._tenant(key)
            try:
                record = UsageRecord.measure(
                    cluster=key.cluster,
                    kind=item.kind,
                    category=item.category,
                    item=item.item,
                    name=key.name,
                    namespace=key.namespace,
                    project=key.project,
                    tenant=tenant,
                    period_kind=item.period,
                    period=period,
                    usage=quantity,
                    unit=item.unit,
                    dimensions=dict(key.dimensions),
                    labels=labels,
                )
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise SourceError(
                    f"item {item.item!r} name {_shown(key.name)} in namespace {_shown(key.namespace)} for {period}: "
                    f"{problem}; nothing was written for this period"
                ) from None
            collected.records.append(record)
        return collected

    def _usage(self, item: CollectionItem, key: _RecordKey, values: list[Decimal], period: Period) -> Decimal:
        """The period's quantity, refused by name when the ledger cannot hold it exactly or when a
        gauge went negative (usage is never negative unless the item says credits are real)."""
        try:
            usage = aggregate(values, item.aggregation, item.usage.step)
        except (InvalidOperation, OverflowError):
            usage = None
        problem = "beyond any exact quantity" if usage is None else exact_problem(usage)
        if problem:
            raise SourceError(
                f"{_where(item, key, period)}: usage {problem}; nothing was written for this period — fix usage.query"
            )
        assert usage is not None
        if usage < 0 and not item.allow_negative:
            raise SourceError(
                f"{_where(item, key, period)}: usage is negative ({usage}); nothing was written for this period — "
                "fix usage.query, or set allow_negative: true on the item if negative usage is a real credit"
            )
        return usage

    def _label_index(self, item: CollectionItem, period: Period, warnings: list[str]) -> LabelIndex | None:
        """The item's label series over the same grid, indexed for the join (None: no label query)."""
        if item.labels is None:
            return None
        where = f"item {item.item!r}"
        start, end = range_window(period, item.usage.step)
        what = f"{where} labels.query for {period}"
        answer = self.client.query_range_raw(item.labels.query, start, end, item.usage.step, what=what)
        warnings.extend(f"{where}: labels.query: Prometheus warns: {w}" for w in answer.warnings)
        try:
            index = LabelIndex(answer.series, item.labels.mappers, join_fields(item.usage.mappers, item.labels.mappers))
        except (TypeError, ValueError) as exc:
            raise self.client.malformed(what, exc, item.labels.query) from None
        for key in index.ambiguous[:5]:
            warnings.append(
                f"{where}: labels.query: several label sets for {key} in {period}; kept the one present longest"
            )
        return index

    def _key(self, item: CollectionItem, labels: dict[str, str], projects: Callable[[], dict[str, str]]) -> _RecordKey:
        mappers = item.usage.mappers
        name = labels.get(mappers.name, "")
        if not name:
            raise SourceError(
                f"item {item.item!r}: usage.mappers.name: series {_series_text(labels)} has no "
                f"{mappers.name!r} label, so it cannot be attributed (group the usage.query by "
                f"{mappers.name!r})"
            )
        cluster = self.cluster
        if mappers.cluster:
            cluster = labels.get(mappers.cluster, "")
            if not cluster:
                raise SourceError(
                    f"item {item.item!r}: usage.mappers.cluster: series {_series_text(labels)} has no "
                    f'{mappers.cluster!r} label (use cluster: "" for this agent\'s cluster)'
                )
        namespace = labels.get(mappers.namespace, "") if mappers.namespace else ""
        project = labels.get(mappers.project, "") if mappers.project else ""
        if not project and namespace:
            project = projects().get(namespace, "")
        return _RecordKey(
            name=name,
            namespace=namespace,
            cluster=cluster,
            project=project,
            dimensions=tuple(sorted(dimension_labels(labels, item.dimensions).items())),
        )

    def _tenant(self, key: _RecordKey) -> str:
        if self.tenant_of is not None and key.namespace:
            tenant = self.tenant_of(key.namespace)
            if tenant:
                return tenant
        return key.project or key.namespace


def _where(item: CollectionItem, key: _RecordKey, period: Period) -> str:
    return f"item {item.item!r} name {_shown(key.name)} in namespace {_shown(key.namespace)} for {period}"


def _sort_key(key: _RecordKey) -> tuple[str, str, str, str, tuple[tuple[str, str], ...]]:
    return (key.namespace, key.name, key.cluster, key.project, key.dimensions)
