"""Display names, units and divisors for items, from the loaded config plus built-in entries.

Prices are per *display* unit (Alauda §2.6): an item collected in bytes with divisor 2³⁰ is
priced per GiB. The Kubernetes items ship their own display entries
(``builtin_display.yaml``) so a report is readable without any display config; a display
entry loaded from the user's config wins for the same item.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

import yaml

from kubetally.config.costmodel import DisplayEntry, DisplayItem
from kubetally.config.loader import Config

_ONE = Decimal(1)


@cache
def builtin_display() -> tuple[DisplayItem, ...]:
    text = (resources.files("kubetally.rating") / "builtin_display.yaml").read_text(encoding="utf-8")
    return tuple(DisplayItem.model_validate(entry) for entry in yaml.safe_load(text))


@dataclass(frozen=True)
class ItemDisplay:
    """How one item is shown: names (zh/en), unit names and the divisor."""

    category: str
    item: str
    divisor: Decimal
    category_name: dict[str, str]
    method_name: dict[str, str]
    unit_name: dict[str, str]

    def name(self, lang: str = "en") -> str:
        """``Compute / GPU`` — category and method display names in ``lang``."""
        category = self.category_name.get(lang) or self.category_name.get("en") or self.category
        method = self.method_name.get(lang) or self.method_name.get("en")
        return f"{category} / {method}" if method else category

    def unit(self, lang: str = "en", raw_unit: str = "") -> str:
        return self.unit_name.get(lang) or self.unit_name.get("en") or raw_unit


def _from_entry(entry: DisplayEntry) -> ItemDisplay:
    def texts(text: object) -> dict[str, str]:
        return {lang: value for lang in ("en", "zh") if (value := getattr(text, lang, ""))}

    return ItemDisplay(
        category=entry.category.name,
        item=entry.method.item,
        divisor=entry.method.divisor,
        category_name=texts(entry.category.displayname),
        method_name=texts(entry.method.displayname),
        unit_name=texts(entry.method.unit),
    )


class DisplayCatalog:
    """Item → :class:`ItemDisplay`; items without any entry show raw units (divisor 1)."""

    def __init__(self, display_items: Iterable[DisplayItem] = (), *, builtin: bool = True):
        self._items: dict[str, ItemDisplay] = {}
        layers = [list(display_items)] + ([list(builtin_display())] if builtin else [])
        for layer in layers:
            for display_item in layer:
                for method in display_item.methods:
                    self._items.setdefault(method.item, _from_entry(DisplayEntry(category=display_item, method=method)))

    @classmethod
    def from_config(cls, config: Config | None) -> DisplayCatalog:
        return cls(config.display if config is not None else ())

    def get(self, item: str) -> ItemDisplay | None:
        return self._items.get(item)

    def divisor(self, item: str) -> Decimal:
        found = self._items.get(item)
        return found.divisor if found is not None else _ONE

    def item_name(self, category: str, item: str, lang: str = "en") -> str:
        found = self._items.get(item)
        return found.name(lang) if found is not None else f"{category}/{item}"

    def unit_name(self, item: str, raw_unit: str, lang: str = "en") -> str:
        found = self._items.get(item)
        return found.unit(lang, raw_unit) if found is not None else raw_unit
