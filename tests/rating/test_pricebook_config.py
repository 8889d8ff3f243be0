"""The price book's YAML: what loads, and how bad input is reported (file, entry, field)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from kubetally.config import load_config
from kubetally.config.pricing import PriceBookConfig, load_pricebook_file
from kubetally.errors import ConfigError
from kubetally.rating.display import DisplayCatalog
from kubetally.rating.pricebook import PriceBook, PriceMatch, example_pricebook
from kubetally.rating.resolve import resolve_pricebook

NOV = datetime(2026, 11, 15, tzinfo=UTC)


def write(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pricebook_file(write(tmp_path, text))
    return "\n".join(caught.value.problems)


def test_example_pricebook_covers_the_kubernetes_items() -> None:
    book = example_pricebook()
    assert book.currency == "USD"
    assert book.items == [
        ("compute", "cpu_core_hours"),
        ("compute", "gpu_hours"),
        ("compute", "memory_gib_hours"),
        ("compute", "node_hours"),
        ("network", "lb_hours"),
        ("platform", "control_plane_hours"),
        ("storage", "storage_gib_hours"),
    ]

    def price(labels: dict[str, str]) -> tuple[str, Decimal]:
        found = book.match("compute", "gpu_hours", labels, NOV)
        assert isinstance(found, PriceMatch)
        return found.group, found.tiers[0].price

    h100 = "nvidia-h100-sxm-80gb"
    assert price({"gpu_sku": h100, "capacity_type": "on-demand"}) == ("h100", Decimal("3.90"))
    assert price({"gpu_sku": h100, "capacity_type": "spot"}) == ("h100-spot", Decimal("1.95"))
    assert price({"gpu_sku": "nvidia-a100-sxm-80gb", "gpu_profile": "3g.40gb"}) == ("a100-80gb-mig", Decimal("1.98"))
    assert price({"gpu_sku": "nvidia-l4-24gb"}) == ("l4", Decimal("0.60"))
    assert price({"gpu_sku": "nvidia-t4-16gb", "capacity_type": "spot"}) == ("t4-spot", Decimal("0.15"))
    assert not isinstance(book.match("compute", "gpu_hours", {"gpu_sku": "unknown"}, NOV), PriceMatch)


def test_builtin_display_names_the_kubernetes_items() -> None:
    catalog = DisplayCatalog()
    assert catalog.item_name("compute", "gpu_hours", "en") == "Compute / GPU"
    assert catalog.item_name("compute", "gpu_hours", "zh") == "计算 / GPU"
    assert catalog.unit_name("gpu_hours", "h", "zh") == "卡时"
    assert catalog.item_name("storage", "storage_gib_hours") == "Storage / Persistent volumes"
    assert catalog.divisor("memory_gib_hours") == Decimal(1)
    assert catalog.item_name("x", "y") == "x/y"  # unknown items show their raw names


def test_pricing_section_of_kubetally_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
cluster: c1
pricing:
  currency: EUR
  prices:
    - {category: network, item: lb_hours, price: "0.02"}
""",
        "kubetally.yaml",
    )
    config = load_config([path])
    assert isinstance(config.pricing, PriceBookConfig)
    assert resolve_pricebook(None, config)[0].currency == "EUR"
    # --prices wins over the section
    other = write(tmp_path, "currency: CNY\nprices: [{category: n, item: i, price: 1}]\n")
    assert resolve_pricebook(other, config)[0].currency == "CNY"
    # a kubetally.yaml is also accepted as a price book file
    assert load_pricebook_file(path).currency == "EUR"


def test_pricing_section_errors_name_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
pricing:
  currency: EUR
  prices:
    - {category: network, item: lb_hours, prize: "0.02"}
""",
        "kubetally.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        load_config([path])
    assert f"{path}: pricing: prices[0].prize: unknown key" in caught.value.problems


def test_no_pricebook_is_an_error_unless_the_example_may_stand_in() -> None:
    with pytest.raises(ConfigError, match="no price book"):
        resolve_pricebook(None, None)
    book, is_example = resolve_pricebook(None, None, example_fallback=True)
    assert is_example and book.currency == "USD"
    # On the command line the example book is only ever used when named.
    book, is_example = resolve_pricebook("example", None)
    assert is_example and book.currency == "USD"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("currency: usd\n", "currency: must be an ISO 4217 code"),
        ("currency: USD\nprices: [{category: c, item: i, price: 1, colour: red}]\n", "prices[0].colour: unknown key"),
        ("currency: USD\nprices: [{category: c, item: i}]\n", "prices[0]: has no price"),
        ("currency: USD\nprices: [{category: c, item: i, price: -1}]\n", "a price must not be negative"),
        ("currency: USD\nprices: [{category: c, item: i, price: abc}]\n", "not a number"),
        (
            "currency: USD\nprices: [{category: c, item: i, price: 1, effective: '2026-11-15T10:00:00Z'}]\n",
            "is not a UTC midnight",
        ),
        (
            "currency: USD\nprices: [{category: c, item: i, tiers: [{upto: 10, price: 1}, {upto: 5, price: 1},"
            " {price: 1}]}]\n",
            "upto 5 must be above 10",
        ),
        ("currency: USD\nprices: [{category: c, item: i, tiers: [{upto: 10, price: 1}]}]\n", "must omit 'upto'"),
        (
            "currency: USD\nprices: [{category: c, item: i, price: 1}, {category: c, item: i, price: 2}]\n",
            "prices[1]: c/i effective (no effective date) is already priced by prices[0]",
        ),
        (
            "currency: USD\nprices: [{category: c, item: i, labels: [a, b], groups: [{values: [x], price: 1}]}]\n",
            "groups[0]: 'values' is for one-key rules",
        ),
        (
            "currency: USD\nprices: [{category: c, item: i, label: a, groups: [{match: {b: x}, price: 1}]}]\n",
            "groups[0]: match keys ['b'] are not in labels ['a']",
        ),
        (
            "currency: USD\nprices: [{category: c, item: i, groups: [{values: [x], price: 1}]}]\n",
            "groups need the label key(s)",
        ),
        (
            "currency: USD\nprices: [{category: c, item: i, label: a, groups: [{values: [x]}]}]\n",
            "needs 'price' or 'tiers'",
        ),
        (
            "currency: USD\ntenants: {acme: {discount_percent: 10, markup_percent: 5}}\n",
            "tenants.acme: give exactly one of discount_percent or markup_percent",
        ),
        ("currency: USD\ntenants: {acme: {discount_percent: 120}}\n", "discount_percent: must be at most 100"),
        ("- just a list\n", "expected a mapping"),
        ("currency: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_price_books(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert expected in found
    assert str(tmp_path / "prices.yaml") in found


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PriceBook.load(tmp_path / "nope.yaml")


def test_floats_are_taken_at_their_written_value(tmp_path: Path) -> None:
    book = PriceBook.load(write(tmp_path, "currency: USD\nprices: [{category: c, item: i, price: 0.1}]\n"))
    found = book.match("c", "i", {}, NOV)
    assert isinstance(found, PriceMatch) and found.tiers[0].price == Decimal("0.1")  # not 0.1000000000000000055…
