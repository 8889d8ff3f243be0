"""Rating: a price book applied to ledger usage, for showback and for checking backend bills.

Rating never changes a metered quantity; it only prices it (``rate``), exactly
(``money``), from rollups kept current by a ledger cursor (``rollups``).
"""

from kubetally.config.pricing import PriceBookConfig, load_pricebook_file
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.pricebook import PriceBook, PriceMatch, Unpriced, example_pricebook, example_pricebook_path
from kubetally.rating.rate import Charge, Rater, UsageLine
from kubetally.rating.rollups import rebuild_rollups, refresh_rollups

__all__ = [
    "Charge",
    "DisplayCatalog",
    "PriceBook",
    "PriceBookConfig",
    "PriceMatch",
    "Rater",
    "Unpriced",
    "UsageLine",
    "example_pricebook",
    "example_pricebook_path",
    "load_pricebook_file",
    "rebuild_rollups",
    "refresh_rollups",
]
