"""Kubernetes resource quantities (``500m``, ``32777408Ki``, ``1.5Gi``, ``1e3``) as exact fractions.

Quantities are parsed to :class:`~fractions.Fraction`, never float: ``100m`` CPU is exactly 1/10
of a core and ``1Gi`` exactly 2**30 bytes, so core-hours and GiB-hours stay exact to the second.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")
GIB = Fraction(2**30)


class QuantityError(ValueError):
    """A resource quantity that is not in Kubernetes syntax."""


def parse_quantity(value: object) -> Fraction:
    """``"500m"`` → 1/2; ``"1Gi"`` → 1073741824; plain numbers (int, str) as they are."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(Decimal(repr(value)))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"not a quantity: {value!r}")
    number, exponent, suffix = match.groups()
    try:
        base = Fraction(Decimal(number))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f"not a quantity: {value!r}") from exc
    if exponent:
        power = int(exponent[1:])
        return base * (Fraction(10) ** power)
    return base * _SUFFIXES[suffix or ""]


def parse_count(value: object) -> int:
    """A device count (``nvidia.com/gpu: "8"``); fractions and garbage count as 0."""
    try:
        quantity = parse_quantity(value)
    except QuantityError:
        return 0
    return int(quantity) if quantity.denominator == 1 and quantity > 0 else 0
