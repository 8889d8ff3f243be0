"""The price book at rating time: which price applies to a (category, item, labels) on a day.

Lookup rules, in order:

1. **Effective date.** Of the entries for (category, item), the one with the latest
   ``effective`` at or before the period start applies (an entry without a date applies from
   the beginning of time). A price change therefore never rewrites earlier periods.
2. **Label groups.** The first group, in file order, whose every ``match`` key has one of
   its values in the record's labels wins (exact, case-sensitive, as in Alauda §2.7).
3. **Default.** Otherwise the entry's own ``price``/``tiers``.
4. **Unpriced.** No entry, or no group matched and no default: the usage is reported as
   unpriced with the reason. It is never priced at zero.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

from kubetally.config.pricing import (
    DEFAULT_GROUP,
    LabelGroup,
    PriceBookConfig,
    PriceEntry,
    Tier,
    group_name,
    load_pricebook_file,
)

_ONE = Decimal(1)


@dataclass(frozen=True)
class PriceMatch:
    """The price that applies to one usage line."""

    entry: PriceEntry
    group: str
    tiers: tuple[Tier, ...]

    @property
    def tiered(self) -> bool:
        return len(self.tiers) > 1

    @property
    def effective(self) -> datetime | None:
        return self.entry.effective


@dataclass(frozen=True)
class Unpriced:
    """Why a usage line has no price."""

    reason: str


class _CompiledGroup:
    def __init__(self, keys: tuple[str, ...], group: LabelGroup):
        self.name = group_name(keys, group)
        self.tiers = group.tier_list()
        if group.values is not None:
            self.wanted = {keys[0]: frozenset(group.values)}
        else:
            assert group.match is not None
            self.wanted = {
                key: frozenset(value if isinstance(value, list) else [value]) for key, value in group.match.items()
            }

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) in values for key, values in self.wanted.items())


class _CompiledEntry:
    def __init__(self, entry: PriceEntry):
        self.entry = entry
        self.groups = [_CompiledGroup(entry.keys, group) for group in entry.groups]
        self.default = entry.tier_list() if entry.has_price else None


class PriceBook:
    """A compiled :class:`PriceBookConfig`, ready for many lookups."""

    def __init__(self, config: PriceBookConfig):
        self.config = config
        self.currency = config.currency
        by_item: dict[tuple[str, str], list[_CompiledEntry]] = {}
        for entry in config.prices:
            by_item.setdefault((entry.category, entry.item), []).append(_CompiledEntry(entry))
        self._entries: dict[tuple[str, str], list[_CompiledEntry]] = {}
        self._starts: dict[tuple[str, str], list[datetime]] = {}
        epoch = datetime.min.replace(tzinfo=None)
        for key, entries in by_item.items():
            entries.sort(key=lambda e: e.entry.effective.replace(tzinfo=None) if e.entry.effective else epoch)
            self._entries[key] = entries
            self._starts[key] = [
                e.entry.effective.replace(tzinfo=None) if e.entry.effective else epoch for e in entries
            ]
        self._factors = {tenant: adj.factor for tenant, adj in config.tenants.items()}
        # Rating asks the same questions for every day of a report: answer each once.
        self._index_cache: dict[tuple[str, str, datetime], int] = {}
        self._match_cache: dict[tuple[str, str, tuple[tuple[str, str], ...], int], PriceMatch | Unpriced] = {}

    @classmethod
    def load(cls, path: str | Path) -> PriceBook:
        return cls(load_pricebook_file(path))

    @property
    def items(self) -> list[tuple[str, str]]:
        return sorted(self._entries)

    @property
    def label_keys(self) -> frozenset[str]:
        """Every label key some price depends on (rollups must keep these)."""
        return frozenset(key for entry in self.config.prices for key in entry.keys)

    @property
    def has_tiers(self) -> bool:
        return any(
            (entry.default is not None and len(entry.default) > 1) or any(len(g.tiers) > 1 for g in entry.groups)
            for entries in self._entries.values()
            for entry in entries
        )

    @property
    def tiered_items(self) -> frozenset[tuple[str, str]]:
        """(category, item) of every entry with graduated tiers (default or in a label group):
        only these lines depend on earlier usage in their month; every other line is priced
        from its own usage alone."""
        return frozenset(
            key
            for key, entries in self._entries.items()
            for entry in entries
            if (entry.default is not None and len(entry.default) > 1) or any(len(g.tiers) > 1 for g in entry.groups)
        )

    def change_dates(self) -> list[datetime]:
        """Every effective date in the book: report segments are cut there."""
        return sorted({e.effective for e in self.config.prices if e.effective is not None})

    def entry_at(self, category: str, item: str, at: datetime) -> PriceEntry | None:
        compiled = self._entry_at(category, item, at)
        return None if compiled is None else compiled.entry

    def _entry_index(self, category: str, item: str, at: datetime) -> int:
        key = (category, item, at)
        index = self._index_cache.get(key)
        if index is None:
            starts = self._starts.get((category, item))
            index = -1 if not starts else bisect_right(starts, at.replace(tzinfo=None)) - 1
            self._index_cache[key] = index
        return index

    def _entry_at(self, category: str, item: str, at: datetime) -> _CompiledEntry | None:
        index = self._entry_index(category, item, at)
        return None if index < 0 else self._entries[(category, item)][index]

    def match_labels(
        self, category: str, item: str, labels: tuple[tuple[str, str], ...], at: datetime
    ) -> PriceMatch | Unpriced:
        """:meth:`match` for labels given as sorted pairs, memoised (rating calls this per line)."""
        key = (category, item, labels, self._entry_index(category, item, at))
        found = self._match_cache.get(key)
        if found is None:
            found = self._match_cache[key] = self.match(category, item, dict(labels), at)
        return found

    def match(self, category: str, item: str, labels: Mapping[str, str], at: datetime) -> PriceMatch | Unpriced:
        """The price for usage of (category, item) with ``labels`` in a period starting ``at``."""
        compiled = self._entry_at(category, item, at)
        if compiled is None:
            if (category, item) in self._entries:
                first = self._entries[(category, item)][0].entry.effective
                assert first is not None
                return Unpriced(f"no price for {category}/{item} before {first.date().isoformat()}")
            return Unpriced(f"no price for {category}/{item}")
        for group in compiled.groups:
            if group.matches(labels):
                return PriceMatch(compiled.entry, group.name, group.tiers)
        if compiled.default is None:
            shown = ", ".join(f"{key}={labels.get(key) or '(none)'}" for key in compiled.entry.keys)
            return Unpriced(f"{category}/{item}: no label group matches {shown} and there is no default price")
        return PriceMatch(compiled.entry, DEFAULT_GROUP, compiled.default)

    def factor(self, tenant: str) -> Decimal:
        """The tenant's multiplier on list prices (1 when it has no adjustment)."""
        return self._factors.get(tenant, _ONE)


def example_pricebook_path() -> Path:
    """The built-in example price book for the Kubernetes items (used by the demo)."""
    return Path(str(resources.files("kubetally.rating") / "example-prices.yaml"))


def example_pricebook() -> PriceBook:
    return PriceBook.load(example_pricebook_path())
