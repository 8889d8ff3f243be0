"""Money arithmetic: exact Decimals in, integer micro-units out, rounded exactly once.

Why micro-units: a cost stored and summed as an integer number of millionths of the currency
can never drift, on any database or in any language, and a total is then *by construction* the
sum of its lines. Alauda stores ``cost.bills.cost`` the same way.

Rounding rule (the one place it happens): the exact cost of a priced line
``quantity × unit price`` is rounded **ROUND_HALF_UP to the micro-unit, once per line**.
Intermediate products use :data:`WIDE` (60 significant digits), wide enough that no realistic
quantity × price loses a digit before that single rounding.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, Inexact

#: Micro-units per currency unit.
MICROS = 1_000_000
_ONE = Decimal(1)

#: Context for products and quotients before the single rounding to micro-units.
WIDE = Context(prec=60, rounding=ROUND_HALF_EVEN)
#: Context for sums of quantities that must stay exact: an inexact result raises instead of
#: silently rounding (a ledger sum that loses a digit is a bug, not a rounding choice).
EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[Inexact])


def to_micros(amount: Decimal) -> int:
    """Round an exact currency amount to integer micro-units, ROUND_HALF_UP (away from zero on .5)."""
    return int(amount.scaleb(6, WIDE).quantize(_ONE, rounding=ROUND_HALF_UP, context=WIDE))


def line_cost(quantity: Decimal, unit_price: Decimal) -> int:
    """The cost of one priced line in micro-units: ``quantity × unit_price``, rounded once."""
    return int(WIDE.multiply(quantity, unit_price).scaleb(6, WIDE).quantize(_ONE, ROUND_HALF_UP, WIDE))


def from_micros(micros: int) -> Decimal:
    """Micro-units back to an exact Decimal amount with six places."""
    return Decimal(micros).scaleb(-6)


def format_money(micros: int, *, min_places: int = 2) -> str:
    """Exact amount text: at least ``min_places`` decimals, more only when micro-units need them.

    ``12.35`` stays short for people; ``12.345678`` shows every micro-unit, so a column of
    lines visibly adds up to its total.
    """
    text = f"{from_micros(micros):.6f}"
    whole, frac = text.split(".")
    frac = frac.rstrip("0")
    frac = frac + "0" * max(0, min_places - len(frac))
    return f"{whole}.{frac}" if frac else whole


def money_places(currency: str) -> int:
    """The currency's minor-unit digits (ISO 4217 via CLDR: USD 2, JPY 0, KWD 3; unknown: 2)."""
    from babel.numbers import get_currency_precision

    return int(get_currency_precision(currency.upper()))


def format_money_minor(micros: int, places: int) -> str:
    """An amount for people, to the currency's minor unit: ROUND_HALF_UP, the rating's rule, so a
    table never shows a half micro-unit rounded the other way. Exact amounts stay in CSV/JSON."""
    exponent = Decimal(1).scaleb(-places)
    return f"{from_micros(micros).quantize(exponent, rounding=ROUND_HALF_UP, context=WIDE):f}"


def format_money_fixed(micros: int) -> str:
    """Six fixed decimals, for machine-readable output (CSV, JSON strings).

    Integer arithmetic only (API pages format thousands of these per request)."""
    whole, fraction = divmod(abs(micros), MICROS)
    return f"{'-' if micros < 0 else ''}{whole}.{fraction:06d}"


def exact_sum(values: list[Decimal] | tuple[Decimal, ...]) -> Decimal:
    """Sum quantities exactly (raises :class:`decimal.Inexact` rather than round)."""
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return total
