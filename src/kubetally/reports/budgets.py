"""Budgets: spend so far, a run-rate forecast to the end of the period, and alerts sent once.

**Spend** is the committed usage of the budget's scope with ``start`` in ``[period start, as of)``,
priced with the price book in force exactly as reports price it (the :class:`Rater`, one rounding
per line) — or, for a quantity budget, the usage of its item (labels matching) in display units.

**Forecast** (never a bill, and every output says so): the usage of the last ``forecast_hours``
before *as of* (or of the period so far, when it began less than that ago), per tenant, item and
labels, scaled to the time left in the period and added to the usage so far; the sum is priced
like the spend, so graduated tiers apply to the projected total.

**Alerts.** A threshold is crossed when ``value × 100 ≥ threshold × limit``. The alert id is a
UUIDv5 of (budget, kind, threshold, period start), so :func:`record_alerts` inserts each crossing
at most once, whoever evaluates and however often — in the same transaction as one pending send
per notify target. :func:`send_pending` then sends and marks each send; a process killed in
between leaves the send pending and the next run sends it (receivers deduplicate by
``webhook-id`` = alert id should an answer have been lost). A correction that takes the spend
back under a threshold removes nothing; one that takes it over for the first time is a new
crossing.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from kubetally.config.budgets import AlertTarget, BudgetConfig, BudgetsConfig
from kubetally.delivery.alerts import send_alert
from kubetally.delivery.outbox import new_owner, owner_is_dead
from kubetally.errors import KubetallyError
from kubetally.ledger import schema
from kubetally.ledger.store import Ledger
from kubetally.periods import Period, format_time
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.money import EXACT, WIDE, format_money, from_micros, to_micros
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rate import Rater, UsageLine
from kubetally.rating.rollups import exact_sum, prepare
from kubetally.record import normalize
from kubetally.reports.buckets import month_start, next_month
from kubetally.reports.budget_tables import budget_alert_sends, budget_alerts, budgets

log = logging.getLogger(__name__)

#: Namespace of alert ids (a fixed UUID: ids must be the same in every process and release).
ALERT_NAMESPACE = uuid.UUID("6f1c2a4e-8a3b-5d1e-9c47-0b6a1e2f3d4c")
ACTUAL, FORECAST = "actual", "forecast"
PENDING, SENT = "pending", "sent"
_HUNDRED = Decimal(100)


def no_prices(currency: str = "USD") -> PriceBook:
    """An empty price book, for evaluating quantity budgets where no prices are configured."""
    from kubetally.config.pricing import PriceBookConfig

    return PriceBook(PriceBookConfig(currency=currency))


def method_text(hours: int) -> str:
    """What the forecast is, printed next to every forecast."""
    return f"forecast: run rate of last {hours} h, not a bill"


def alert_id(budget: str, kind: str, threshold: Decimal, period_start: datetime) -> str:
    key = f"{budget}|{kind}|{normalize(threshold)}|{format_time(period_start)}"
    return str(uuid.uuid5(ALERT_NAMESPACE, key))


def budget_period(budget: BudgetConfig, as_of: datetime, zone: tzinfo = UTC) -> Period:
    """The period the usage committed up to ``as_of`` belongs to: the calendar month (in the
    billing time zone) of the last committed instant (so the month's final hour still counts for
    that month), or the custom one."""
    if budget.start is not None and budget.end is not None:
        return Period(budget.start, budget.end)
    last = as_of - timedelta(microseconds=1)
    first = month_start(last, zone)
    return Period(first, next_month(first, zone))


@dataclass
class LineForecast:
    """Spend and forecast of one tenant and item within a budget."""

    tenant: str
    category: str
    item: str
    spent: Decimal
    forecast: Decimal


@dataclass
class Crossing:
    kind: str
    threshold: Decimal
    crossed_at: datetime
    alert_id: str


@dataclass
class BudgetStatus:
    budget: BudgetConfig
    #: ``config`` (kubetally.yaml) or ``server`` (stored through the API).
    source: str
    period: Period
    as_of: datetime
    #: The currency, or the display unit of a quantity budget.
    unit: str
    spent: Decimal
    forecast: Decimal
    forecast_hours: int
    lines: list[LineForecast] = field(default_factory=list)
    #: Usage in scope that has no price (money budgets): not in ``spent``.
    unpriced: bool = False
    crossed: list[Crossing] = field(default_factory=list)
    #: Alerts this evaluation recorded (first crossings).
    new_alerts: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return method_text(self.forecast_hours)

    @property
    def limit(self) -> Decimal:
        return self.budget.limit

    def percent(self, value: Decimal) -> Decimal:
        return WIDE.divide(WIDE.multiply(value, _HUNDRED), self.limit).quantize(Decimal("0.1"))

    def due(self) -> list[tuple[str, Decimal]]:
        """Every (kind, threshold) the current values reach."""
        found = [(ACTUAL, t) for t in self.budget.thresholds if self.spent * _HUNDRED >= t * self.limit]
        threshold = self.budget.forecast_threshold
        if threshold is not None and self.forecast * _HUNDRED >= threshold * self.limit:
            found.append((FORECAST, threshold))
        return found

    def as_dict(self) -> dict[str, Any]:
        kind, value = self.budget.scope
        return {
            "name": self.budget.name,
            "source": self.source,
            "scope": {"kind": kind, "value": value},
            "period": {"start": format_time(self.period.start), "end": format_time(self.period.end)},
            "asOf": format_time(self.as_of),
            "type": "money" if self.budget.money else "quantity",
            "item": self.budget.item,
            "labels": self.budget.labels,
            "unit": self.unit,
            "limit": _shown(self.limit, self.unit),
            "spent": _shown(self.spent, self.unit),
            "spentPercent": format(self.percent(self.spent), "f"),
            "forecast": _shown(self.forecast, self.unit),
            "forecastPercent": format(self.percent(self.forecast), "f"),
            "method": self.method,
            "unpriced": self.unpriced,
            "thresholds": [_text(t) for t in self.budget.thresholds],
            "forecastThreshold": None
            if self.budget.forecast_threshold is None
            else _text(self.budget.forecast_threshold),
            "crossed": [
                {
                    "kind": c.kind,
                    "threshold": _text(c.threshold),
                    "crossedAt": format_time(c.crossed_at),
                    "alertId": c.alert_id,
                }
                for c in self.crossed
            ],
            "lines": [
                {
                    "tenant": ln.tenant,
                    "category": ln.category,
                    "item": ln.item,
                    "spent": _shown(ln.spent, self.unit),
                    "forecast": _shown(ln.forecast, self.unit),
                    "method": self.method,
                }
                for ln in self.lines
            ],
        }


def _text(value: Decimal) -> str:
    return format(normalize(value), "f")


def _shown(value: Decimal, unit: str) -> str:
    """Money (a currency code: three capitals, as the price book requires) with at least two
    decimals; quantities exactly."""
    if len(unit) == 3 and unit.isalpha() and unit.isupper():
        return format_money(to_micros(value))
    return _text(value)


# -- which budgets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    config: BudgetConfig
    source: str


def stored_budgets(ledger: Ledger) -> list[BudgetConfig]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(budgets.c.spec).order_by(budgets.c.name)).all()
    return [BudgetConfig.model_validate(json.loads(row.spec)) for row in rows]


def all_budgets(ledger: Ledger, configured: BudgetsConfig) -> list[Budget]:
    """The file's budgets, then the server's stored ones (a name is unique across both)."""
    found = [Budget(b, "config") for b in configured.items]
    names = {b.name for b in configured.items}
    found += [Budget(b, "server") for b in stored_budgets(ledger) if b.name not in names]
    return found


def save_budget(ledger: Ledger, budget: BudgetConfig, *, now: datetime | None = None) -> bool:
    """Create or replace a stored budget; True when it was new."""
    moment = now or datetime.now(UTC)
    spec = budget.model_dump_json(exclude_none=True)
    with ledger.transaction() as conn:
        exists = conn.execute(select(budgets.c.name).where(budgets.c.name == budget.name)).first() is not None
        if exists:
            conn.execute(update(budgets).where(budgets.c.name == budget.name).values(spec=spec, updated_at=moment))
        else:
            conn.execute(budgets.insert().values(name=budget.name, spec=spec, created_at=moment, updated_at=moment))
    return not exists


def delete_budget(ledger: Ledger, name: str) -> bool:
    with ledger.transaction() as conn:
        return bool(conn.execute(budgets.delete().where(budgets.c.name == name)).rowcount)


# -- usage -------------------------------------------------------------------------------------------


def committed_until(ledger: Ledger, now: datetime | None = None) -> datetime | None:
    """End of the latest committed usage period (not later than ``now``). The ledger's ``end``
    is a period's last second (as Alauda writes it), so the exclusive end is one second later."""
    t = schema.records
    moment = now or datetime.now(UTC)
    with ledger.engine.connect() as conn:
        value: datetime | None = conn.execute(
            select(func.max(t.c.end)).where(and_(t.c.current.is_(True), t.c.end < moment))
        ).scalar_one()
    return None if value is None else value.astimezone(UTC) + timedelta(seconds=1)


_Key = tuple[str, str, str, str, str]  # tenant, category, item, unit, labels text


def _usage(conn: Connection, budget: BudgetConfig, start: datetime, end: datetime) -> dict[_Key, Decimal]:
    """Committed usage in scope with start in ``[start, end)`` per tenant, item and labels."""
    t = schema.records
    if end <= start:
        return {}
    kind, value = budget.scope
    query = select(t.c.tenant, t.c.category, t.c.item, t.c.unit, t.c.labels, exact_sum(conn, t.c.usage)).where(
        and_(t.c.current.is_(True), t.c[kind] == value, t.c.start >= start, t.c.start < end)
    )
    if budget.item:
        query = query.where(t.c.item == budget.item)
    query = query.group_by(t.c.tenant, t.c.category, t.c.item, t.c.unit, t.c.labels)
    out: dict[_Key, Decimal] = {}
    for row in conn.execute(query):
        if budget.labels:
            labels = json.loads(row[4])
            if any(labels.get(k) != v for k, v in budget.labels.items()):
                continue
        usage = row[5] if isinstance(row[5], Decimal) else Decimal(str(row[5]))
        out[(row[0], row[1], row[2], row[3], row[4])] = usage
    return out


def _segments(
    period_start: datetime, end: datetime, pricebook: PriceBook, zone: tzinfo = UTC
) -> list[tuple[datetime, datetime]]:
    cuts = {period_start, end}
    cuts.update(d for d in pricebook.change_dates() if period_start < d < end)
    cuts.update(m for m in _month_starts(period_start, end, zone) if period_start < m < end)
    ordered = sorted(cuts)
    return list(itertools.pairwise(ordered))


def _month_starts(start: datetime, end: datetime, zone: tzinfo = UTC) -> Iterable[datetime]:
    moment = next_month(month_start(start, zone), zone)
    while moment < end:
        yield moment
        moment = next_month(moment, zone)


def evaluate_budget(
    ledger: Ledger,
    budget: BudgetConfig,
    as_of: datetime,
    pricebook: PriceBook,
    display: DisplayCatalog,
    *,
    forecast_hours: int = 24,
    source: str = "config",
    zone: tzinfo = UTC,
) -> BudgetStatus:
    """Spend and forecast of one budget with the usage committed up to ``as_of``; calendar
    months and tier months are those of the billing time zone ``zone``."""
    period = budget_period(budget, as_of, zone)
    upto = min(max(as_of, period.start), period.end)
    window_start = max(period.start, upto - timedelta(hours=forecast_hours))
    window = upto - window_start
    remaining = period.end - upto
    with ledger.engine.connect() as conn:
        prepare(conn)
        segments = _segments(period.start, upto, pricebook, zone) if budget.money else [(period.start, upto)]
        spent_parts = [(a, b, _usage(conn, budget, a, b)) for a, b in segments]
        recent = _usage(conn, budget, window_start, upto)
    projected: dict[_Key, Decimal] = {}
    if window > timedelta(0) and remaining > timedelta(0):
        scale = WIDE.divide(Decimal(int(remaining.total_seconds())), Decimal(int(window.total_seconds())))
        projected = {k: WIDE.multiply(v, scale) for k, v in recent.items()}
    per_line: dict[tuple[str, str, str], list[Decimal]] = {}
    unpriced = False
    if budget.money:
        rater = Rater(pricebook, display.divisor, zone=zone)
        tier_month = month_start(period.start, zone)
        if pricebook.has_tiers and period.start != tier_month:
            # Tiers count from the billing month's start: earlier usage only moves the counters.
            with ledger.engine.connect() as conn:
                prepare(conn)
                context = _usage(conn, budget, tier_month, period.start)
            for line in _lines(tier_month, period.start, context, context=True):
                rater.rate_line(line)
        spent_micros = 0
        for a, b, usage in spent_parts:
            for line in _lines(a, b, usage):
                for charge in rater.rate_line(line):
                    if not charge.priced:
                        unpriced = True
                        continue
                    spent_micros += charge.cost
                    _add(per_line, line, 0, from_micros(charge.cost))
        forecast_micros = spent_micros
        if projected and upto < period.end:
            for line in _lines(upto, period.end, projected):
                for charge in rater.rate_line(line):
                    if charge.priced:
                        forecast_micros += charge.cost
                        _add(per_line, line, 1, from_micros(charge.cost))
        spent, forecast = from_micros(spent_micros), from_micros(forecast_micros)
        unit = pricebook.currency
    else:
        assert budget.item is not None
        divisor = display.divisor(budget.item)
        spent = forecast = Decimal(0)
        for _, _, usage in spent_parts:
            for key, value in usage.items():
                amount = value if divisor == 1 else WIDE.divide(value, divisor)
                spent = EXACT.add(spent, amount) if divisor == 1 else WIDE.add(spent, amount)
                _add(per_line, _key_line(key), 0, amount)
        forecast = spent
        for key, value in projected.items():
            amount = WIDE.divide(value, divisor)
            forecast = WIDE.add(forecast, amount)
            _add(per_line, _key_line(key), 1, amount)
        raw_units = [k[3] for _, _, usage in spent_parts for k in usage]
        unit = display.unit_name(budget.item, raw_units[0] if raw_units else "")
        spent, forecast = _tidy(spent), _tidy(forecast)
    lines = [
        LineForecast(tenant, category, item, _tidy(v[0]), _tidy(WIDE.add(v[0], v[1])))
        for (tenant, category, item), v in sorted(per_line.items())
    ]
    return BudgetStatus(budget, source, period, upto, unit, spent, forecast, forecast_hours, lines, unpriced)


def _tidy(value: Decimal) -> Decimal:
    """Forecasts are shown to the micro-unit; sums of usage stay exact."""
    if value.as_tuple().exponent < -6:  # type: ignore[operator]
        return value.quantize(Decimal("0.000001"), context=WIDE)
    return value


def _key_line(key: _Key) -> UsageLine:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return UsageLine(epoch, epoch, key[0], key[1], key[2], key[3], (), Decimal(0))


def _add(per_line: dict[tuple[str, str, str], list[Decimal]], line: UsageLine, slot: int, amount: Decimal) -> None:
    values = per_line.setdefault((line.tenant, line.category, line.item), [Decimal(0), Decimal(0)])
    values[slot] = WIDE.add(values[slot], amount)


def _lines(start: datetime, end: datetime, usage: Mapping[_Key, Decimal], *, context: bool = False) -> list[UsageLine]:
    return [
        UsageLine(start, end, k[0], k[1], k[2], k[3], tuple(sorted(json.loads(k[4]).items())), v, (), context)
        for k, v in sorted(usage.items())
    ]


# -- alerts ------------------------------------------------------------------------------------------


def _insert(conn: Connection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def alert_text(status: BudgetStatus, kind: str, threshold: Decimal) -> str:
    scope_kind, scope = status.budget.scope
    value = status.spent if kind == ACTUAL else status.forecast
    what = "spend" if kind == ACTUAL else "forecast"
    text = (
        f"kubetally budget {status.budget.name} ({scope_kind} {scope}): {what} {_shown(value, status.unit)} "
        f"{status.unit} reached {_text(threshold)} % of {_shown(status.limit, status.unit)} {status.unit} for "
        f"{status.period.start.date().isoformat()} to {status.period.end.date().isoformat()} "
        f"(usage up to {format_time(status.as_of)})"
    )
    return text + (f"; {status.method}" if kind == FORECAST else "")


def record_alerts(
    ledger: Ledger, status: BudgetStatus, targets: Sequence[AlertTarget], *, now: datetime | None = None
) -> list[str]:
    """Insert every crossing not yet recorded, with a pending send per target; returns the new ids."""
    moment = now or datetime.now(UTC)
    scope_kind, scope = status.budget.scope
    created: list[str] = []
    with ledger.transaction() as conn:
        for kind, threshold in status.due():
            ident = alert_id(status.budget.name, kind, threshold, status.period.start)
            row = {
                "id": ident,
                "budget": status.budget.name,
                "scope_kind": scope_kind,
                "scope": scope,
                "tenant": scope if scope_kind == "tenant" else "",
                "kind": kind,
                "threshold": threshold,
                "period_start": status.period.start,
                "period_end": status.period.end,
                "value": status.spent if kind == ACTUAL else status.forecast,
                "limit": status.limit,
                "unit": status.unit,
                "crossed_at": status.as_of,
                "created_at": moment,
                "message": alert_text(status, kind, threshold),
            }
            # RETURNING, not rowcount: the PostgreSQL driver reports -1 for an ON CONFLICT insert.
            statement = _insert(conn, budget_alerts).values(**row).on_conflict_do_nothing()
            if conn.execute(statement.returning(budget_alerts.c.id)).first() is None:
                continue
            created.append(ident)
            for target in targets:
                conn.execute(
                    _insert(conn, budget_alert_sends)
                    .values(alert_id=ident, target=target.key, state=PENDING, attempts=0)
                    .on_conflict_do_nothing()
                )
    return created


def crossings(ledger: Ledger, budget: str, period_start: datetime) -> list[Crossing]:
    a = budget_alerts
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(a.c.id, a.c.kind, a.c.threshold, a.c.crossed_at)
            .where(and_(a.c.budget == budget, a.c.period_start == period_start))
            .order_by(a.c.crossed_at, a.c.kind, a.c.threshold)
        ).all()
    return [Crossing(r.kind, r.threshold, r.crossed_at.astimezone(UTC), r.id) for r in rows]


def alert_rows(ledger: Ledger, tenant: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The alert list, newest first; ``tenant``: only that tenant's budgets' alerts."""
    a = budget_alerts
    query = select(a).order_by(a.c.crossed_at.desc(), a.c.budget, a.c.kind, a.c.threshold).limit(limit)
    if tenant is not None:
        query = query.where(a.c.tenant == tenant)
    with ledger.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [alert_payload(r._mapping) for r in rows]


def alert_payload(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": "kubetally.budget.alert",
        "budget": row["budget"],
        "scope": {"kind": row["scope_kind"], "value": row["scope"]},
        "kind": row["kind"],
        "threshold": _text(row["threshold"]),
        "period": {"start": format_time(row["period_start"]), "end": format_time(row["period_end"])},
        "value": _shown(row["value"], row["unit"]),
        "limit": _shown(row["limit"], row["unit"]),
        "unit": row["unit"],
        "crossedAt": format_time(row["crossed_at"]),
        "message": row["message"],
    }


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _claimable(claimed_by: str | None, claimed_until: datetime | None, now: datetime) -> bool:
    if claimed_by is None or claimed_until is None:
        return True
    return claimed_until.astimezone(UTC) <= now or owner_is_dead(claimed_by)


def _claim(ledger: Ledger, alert: str, target: str, seen: str | None, owner: str, until: datetime) -> bool:
    """Take the send over from ``seen`` (the claim read before); False when someone else was quicker."""
    s = budget_alert_sends
    same = s.c.claimed_by.is_(None) if seen is None else s.c.claimed_by == seen
    with ledger.transaction() as conn:
        taken = conn.execute(
            update(s)
            .where(and_(s.c.alert_id == alert, s.c.target == target, s.c.state == PENDING, same))
            .values(claimed_by=owner, claimed_until=until)
            .returning(s.c.alert_id)
        ).first()
    return taken is not None


def send_pending(
    ledger: Ledger,
    targets: Sequence[AlertTarget],
    environ: Mapping[str, str],
    *,
    client: httpx.Client | None = None,
) -> SendSummary:
    """Send every pending alert to its target, marking each one sent as soon as it is acknowledged.

    Each send is claimed first (``host:pid:nonce``, for the target's timeout plus a minute), so a
    second replica evaluating at the same moment skips it; a claim left by a killed process on
    this host is taken over at once, one from another host when it expires."""
    summary = SendSummary()
    by_key = {t.key: t for t in targets}
    s, a = budget_alert_sends, budget_alerts
    with ledger.engine.connect() as conn:
        pending = conn.execute(
            select(s.c.alert_id, s.c.target, s.c.claimed_by, s.c.claimed_until, a)
            .select_from(s.join(a, a.c.id == s.c.alert_id))
            .where(s.c.state == PENDING)
            .order_by(a.c.crossed_at, s.c.alert_id, s.c.target)
        ).all()
    if not pending:
        return summary
    owner = new_owner()
    own = client is None
    http = client or httpx.Client()
    try:
        for row in pending:
            target = by_key.get(row.target)
            if target is None:
                continue  # a target removed from the config: left pending, never guessed
            now = datetime.now(UTC)
            if not _claimable(row.claimed_by, row.claimed_until, now):
                continue
            until = now + target.timeout + timedelta(minutes=1)
            if not _claim(ledger, row.alert_id, row.target, row.claimed_by, owner, until):
                continue
            payload = alert_payload(row._mapping)
            where = and_(s.c.alert_id == row.alert_id, s.c.target == row.target, s.c.claimed_by == owner)
            try:
                send_alert(target, row.alert_id, payload, payload["message"], environ, http)
            except KubetallyError as exc:
                summary.failed += 1
                summary.errors.append(str(exc))
                log.warning("budget alert %s to %s not sent: %s", row.alert_id, row.target, exc)
                with ledger.transaction() as conn:
                    conn.execute(
                        update(s)
                        .where(where)
                        .values(
                            attempts=s.c.attempts + 1, last_error=str(exc)[:1000], claimed_by=None, claimed_until=None
                        )
                    )
                continue
            with ledger.transaction() as conn:
                conn.execute(
                    update(s)
                    .where(where)
                    .values(
                        state=SENT,
                        attempts=s.c.attempts + 1,
                        last_error=None,
                        sent_at=datetime.now(UTC),
                        claimed_by=None,
                        claimed_until=None,
                    )
                )
            summary.sent += 1
    finally:
        if own:
            http.close()
    return summary


def evaluate_all(
    ledger: Ledger,
    configured: BudgetsConfig,
    pricebook: PriceBook,
    display: DisplayCatalog,
    as_of: datetime,
    *,
    record: bool = False,
    tenant: str | None = None,
    zone: tzinfo = UTC,
) -> list[BudgetStatus]:
    """Every budget's status at ``as_of``; with ``record``, new crossings become alerts.
    ``tenant``: only the budgets of that tenant (what a tenant token may see)."""
    statuses = []
    for budget in all_budgets(ledger, configured):
        if tenant is not None and budget.config.scope != ("tenant", tenant):
            continue
        status = evaluate_budget(
            ledger,
            budget.config,
            as_of,
            pricebook,
            display,
            forecast_hours=configured.forecast_hours,
            source=budget.source,
            zone=zone,
        )
        if record:
            status.new_alerts = record_alerts(ledger, status, configured.notify)
        status.crossed = crossings(ledger, budget.config.name, status.period.start)
        statuses.append(status)
    return statuses
