"""Find the price book a command should use: ``--prices FILE``, else ``pricing:`` of the config."""

from __future__ import annotations

from pathlib import Path

from kubetally.config.loader import Config
from kubetally.errors import ConfigError
from kubetally.rating.pricebook import PriceBook, example_pricebook

#: ``--prices example``: the built-in example price book, asked for by name, never implied.
EXAMPLE = "example"

#: Shown whenever the built-in example prices are used, so nobody mistakes them for real ones.
EXAMPLE_WARNING = "costs use the built-in EXAMPLE prices (kubetally/rating/example-prices.yaml)"


def resolve_pricebook(
    prices: str | Path | None, config: Config | None, *, example_fallback: bool = False
) -> tuple[PriceBook, bool]:
    """The price book and whether it is the built-in example.

    The explicit file wins, so one price book can be tried against a production config;
    ``--prices example`` names the built-in example book. With ``example_fallback`` (library
    callers such as the demo) a missing price book falls back to the example one; callers must
    say so. The command line never falls back: a report must not quietly show example prices.
    """
    if prices is not None and str(prices) == EXAMPLE:
        return example_pricebook(), True
    if prices is not None:
        return PriceBook.load(prices), False
    if config is not None and config.pricing is not None:
        return PriceBook(config.pricing), False
    if example_fallback:
        return example_pricebook(), True
    raise ConfigError(
        [
            "no price book: pass --prices FILE (or --prices example for the built-in example prices) "
            "or add a pricing: section to kubetally.yaml"
        ]
    )
