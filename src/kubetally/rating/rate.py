"""Rating: usage lines → priced charges. Quantities are never changed, only priced.

A :class:`UsageLine` is usage of one item by one tenant over one window (a report segment,
a FOCUS charge period), with the labels pricing needs. The :class:`Rater` turns each line
into one :class:`Charge` — or several when a graduated tier boundary is crossed inside the
line — each priced as ``display quantity × unit price`` and rounded once (see
:mod:`kubetally.rating.money`).

Lines must arrive in order of their window start: tiers count cumulative usage per
(tenant, category, item, price group, billing month) in that order. *Context* lines (usage
from the start of the month up to the requested range) only advance those counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple

from kubetally.periods import local_month_start
from kubetally.rating import tiers as tiering
from kubetally.rating.money import EXACT, WIDE, line_cost
from kubetally.rating.pricebook import PriceBook, PriceMatch, Unpriced

Labels = tuple[tuple[str, str], ...]


def freeze_labels(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def month_start(moment: datetime, zone: tzinfo = UTC) -> datetime:
    """The billing month a moment falls in (calendar month in the billing time zone)."""
    return local_month_start(moment, zone)


class UsageLine(NamedTuple):
    """Usage of one item by one tenant over ``[start, end)``.

    (A named tuple rather than a dataclass: reports build one per rollup row, and a tuple is
    several times cheaper to create.)"""

    start: datetime
    end: datetime
    tenant: str
    category: str
    item: str
    unit: str
    labels: Labels
    usage: Decimal
    #: The caller's grouping key, carried through untouched (report group, FOCUS resource …).
    key: tuple[Any, ...] = ()
    #: Counts toward tiers but produces no charge (usage earlier in the month than asked for).
    context: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


class Charge(NamedTuple):
    """One priced (or unpriced) piece of a usage line."""

    line: UsageLine
    #: Raw usage in this charge; the charges of one line add up to the line's usage exactly.
    usage: Decimal
    #: Display-unit quantity the price applies to (``usage / divisor``).
    quantity: Decimal
    match: PriceMatch | None
    unpriced_reason: str = ""
    #: 0-based tier index (0 for a flat price).
    tier: int = 0
    list_unit_price: Decimal = Decimal(0)
    unit_price: Decimal = Decimal(0)
    list_cost: int = 0
    cost: int = 0

    @property
    def priced(self) -> bool:
        return self.match is not None

    @property
    def group(self) -> str:
        return self.match.group if self.match is not None else ""


@dataclass
class Rater:
    """Applies a price book to usage lines, keeping graduated-tier counters."""

    pricebook: PriceBook
    divisor: Callable[[str], Decimal]
    #: The billing time zone: tier counters restart at its local month start.
    zone: tzinfo = UTC
    _used: dict[tuple[str, str, str, str, datetime], Decimal] = field(default_factory=dict)
    _last_start: datetime | None = None
    _lookups: dict[tuple[str, str, Labels, datetime], tuple[Decimal, PriceMatch | Unpriced]] = field(
        default_factory=dict
    )
    _month: datetime | None = None

    def rate(self, lines: Iterable[UsageLine]) -> Iterator[Charge]:
        for line in lines:
            yield from self.rate_line(line)

    def rate_line(self, line: UsageLine) -> list[Charge]:
        if self._last_start is not None and line.start < self._last_start:
            raise ValueError(
                f"usage lines out of order: {line.start.isoformat()} after {self._last_start.isoformat()} "
                "(tiers need lines in period order)"
            )
        if line.start != self._last_start or self._month is None:
            month = month_start(line.start, self.zone)
            if month != self._month:
                # Counters of finished months are never needed again.
                self._used = {k: v for k, v in self._used.items() if k[4] >= month}
                self._lookups.clear()
                self._month = month
        self._last_start = line.start
        month = self._month
        # Every line of a report asks the same few questions: memoised per (item, labels, window).
        lookup = (line.category, line.item, line.labels, line.start)
        known = self._lookups.get(lookup)
        if known is None:
            known = self._lookups[lookup] = (
                self.divisor(line.item),
                self.pricebook.match_labels(line.category, line.item, line.labels, line.start),
            )
        divisor, found = known
        quantity = line.usage if divisor == 1 else WIDE.divide(line.usage, divisor)
        if isinstance(found, Unpriced):
            return [] if line.context else [Charge(line, line.usage, quantity, None, found.reason)]
        factor = self.pricebook.factor(line.tenant)
        if not found.tiered:
            if line.context:
                return []
            price = found.tiers[0].price
            if factor == 1:  # the common case, inlined: one product, one rounding
                cost = line_cost(quantity, price)
                return [Charge(line, line.usage, quantity, found, "", 0, price, price, cost, cost)]
            return [self._charge(line, line.usage, quantity, found, 0, price, factor)]
        counter = (line.tenant, line.category, line.item, found.group, month)
        before = self._used.get(counter, Decimal(0))
        self._used[counter] = EXACT.add(before, quantity)
        if line.context:
            return []
        portions = tiering.split(found.tiers, before, quantity)
        charges = []
        raw_left = line.usage
        for number, portion in enumerate(portions):
            last = number == len(portions) - 1
            # The last portion takes the raw remainder, so the charges' raw usage adds up to
            # the line's usage exactly even when the divisor does not divide evenly.
            raw = raw_left if last else WIDE.multiply(portion.quantity, divisor)
            raw_left = EXACT.subtract(raw_left, raw) if not last else Decimal(0)
            charges.append(self._charge(line, raw, portion.quantity, found, portion.index, portion.price, factor))
        return charges

    @staticmethod
    def _charge(
        line: UsageLine,
        usage: Decimal,
        quantity: Decimal,
        match: PriceMatch,
        tier: int,
        list_price: Decimal,
        factor: Decimal,
    ) -> Charge:
        list_cost = line_cost(quantity, list_price)
        if factor == 1:
            return Charge(line, usage, quantity, match, "", tier, list_price, list_price, list_cost, list_cost)
        unit_price = WIDE.multiply(list_price, factor)
        return Charge(
            line, usage, quantity, match, "", tier, list_price, unit_price, list_cost, line_cost(quantity, unit_price)
        )
