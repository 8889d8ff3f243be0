"""Graduated (tiered) prices: split a quantity across tiers given what was used before it.

Tiers count usage per tenant, item and price group within one billing (calendar UTC) month.
Lines are rated in period order, so the line that crosses a boundary is split into one
sub-line per tier it touches; each sub-line is priced and rounded on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from kubetally.config.pricing import Tier
from kubetally.rating.money import EXACT


@dataclass(frozen=True)
class TierPortion:
    """``quantity`` display units of one line that fall in tier ``index`` (0-based)."""

    index: int
    quantity: Decimal
    price: Decimal


def tier_at(tiers: Sequence[Tier], cumulative: Decimal) -> int:
    """Index of the tier that the next unit after ``cumulative`` falls in."""
    for index, tier in enumerate(tiers):
        if tier.upto is None or cumulative < tier.upto:
            return index
    return len(tiers) - 1


def split(tiers: Sequence[Tier], before: Decimal, quantity: Decimal) -> list[TierPortion]:
    """Split ``quantity`` (display units) used after ``before`` already-used units.

    Example: tiers ``[upto 100 @ 2, @ 1]``, ``before=90``, ``quantity=25`` →
    ``[10 @ 2 (tier 0), 15 @ 1 (tier 1)]``. A negative quantity (a correction) is priced at
    the tier the cumulative usage is in, never split.
    """
    if quantity <= 0:
        index = tier_at(tiers, before)
        return [TierPortion(index, quantity, tiers[index].price)]
    # Most lines stay inside the tier the month's usage is already in: one portion, no loop.
    index = tier_at(tiers, before)
    upto = tiers[index].upto
    if upto is None or EXACT.add(before, quantity) <= upto:
        return [TierPortion(index, quantity, tiers[index].price)]
    portions: list[TierPortion] = []
    cursor = before
    remaining = quantity
    for index, tier in enumerate(tiers):
        if tier.upto is not None and cursor >= tier.upto:
            continue
        room = None if tier.upto is None else EXACT.subtract(tier.upto, cursor)
        take = remaining if room is None or remaining <= room else room
        portions.append(TierPortion(index, take, tier.price))
        remaining = EXACT.subtract(remaining, take)
        cursor = EXACT.add(cursor, take)
        if remaining == 0:
            break
    return portions
