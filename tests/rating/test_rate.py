"""Rating usage lines with a price book: exact costs derived by hand (money in micro-units)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import yaml

from kubetally.config.pricing import PriceBookConfig
from kubetally.rating.pricebook import PriceBook
from kubetally.rating.rate import Charge, Rater, UsageLine, freeze_labels


def rater(text: str, divisors: dict[str, str] | None = None) -> Rater:
    book = PriceBook(PriceBookConfig.model_validate(yaml.safe_load(text)))
    table = {item: Decimal(value) for item, value in (divisors or {}).items()}
    return Rater(book, lambda item: table.get(item, Decimal(1)))


def line(
    usage: str,
    *,
    day: int = 15,
    month: int = 11,
    tenant: str = "acme",
    category: str = "compute",
    item: str = "gpu_hours",
    labels: dict[str, str] | None = None,
    context: bool = False,
) -> UsageLine:
    start = datetime(2026, month, day, tzinfo=UTC)
    return UsageLine(
        start,
        start + timedelta(days=1),
        tenant,
        category,
        item,
        "h",
        freeze_labels(labels or {}),
        Decimal(usage),
        context=context,
    )


def one(charges: list[Charge]) -> Charge:
    assert len(charges) == 1
    return charges[0]


def test_alauda_label_group_vs_default() -> None:
    r = rater("""
currency: CNY
prices:
  - category: Vgpu
    item: VgpuCoreUsed
    label: modelName
    groups:
      - values: [Tesla T4, Tesla P100-PCIE-16GB]
        price: "0.5"
    price: "0.2"
""")

    def cost(labels: dict[str, str]) -> tuple[int, str]:
        charge = one(r.rate_line(line("10", category="Vgpu", item="VgpuCoreUsed", labels=labels)))
        return charge.cost, charge.group

    assert cost({"modelName": "Tesla T4"}) == (5_000_000, "modelName=Tesla T4|Tesla P100-PCIE-16GB")  # 10 × 0.5
    assert cost({"modelName": "Tesla P100-PCIE-16GB"})[0] == 5_000_000  # 10 × 0.5 (second value of the group)
    assert cost({"modelName": "NVIDIA A30"}) == (2_000_000, "default")  # 10 × 0.2, no group matches
    assert cost({"modelName": "tesla t4"}) == (2_000_000, "default")  # matching is case-sensitive
    assert cost({}) == (2_000_000, "default")  # no label at all → default


def test_two_key_rule_spot_and_on_demand_h100() -> None:
    r = rater("""
currency: USD
prices:
  - category: compute
    item: gpu_hours
    labels: [gpu_sku, capacity_type]
    groups:
      - {name: h100-spot, match: {gpu_sku: h100, capacity_type: spot}, price: "1.95"}
      - {name: h100, match: {gpu_sku: h100}, price: "3.90"}
      - {name: any-spot, match: {capacity_type: [spot, preemptible]}, price: "0.50"}
    price: "1.00"
""")
    cases = {
        ("h100", "spot"): ("h100-spot", 3_900_000),  # 2 h × 1.95 (first match wins over "h100")
        ("h100", "on-demand"): ("h100", 7_800_000),  # 2 h × 3.90
        ("a100", "preemptible"): ("any-spot", 1_000_000),  # 2 h × 0.50
        ("a100", "on-demand"): ("default", 2_000_000),  # 2 h × 1.00
    }
    for (sku, capacity), expected in cases.items():
        charge = one(r.rate_line(line("2", labels={"gpu_sku": sku, "capacity_type": capacity})))
        assert (charge.group, charge.cost) == expected


TIERED = """
currency: USD
prices:
  - category: compute
    item: gpu_hours
    tiers:
      - {upto: 100, price: "2"}
      - {upto: 250, price: "1.5"}
      - {price: "1"}
"""


def test_tier_boundaries_crossed_mid_month() -> None:
    r = rater(TIERED)

    def split(charges: list[Charge]) -> list[tuple[int, Decimal, int]]:
        return [(c.tier + 1, c.quantity, c.cost) for c in charges]

    assert split(r.rate_line(line("60", day=1))) == [(1, Decimal(60), 120_000_000)]  # 60 × 2
    # cumulative 60 → 120 crosses 100: 40 × 2 = 80 in tier 1, 20 × 1.5 = 30 in tier 2
    assert split(r.rate_line(line("60", day=2))) == [(1, Decimal(40), 80_000_000), (2, Decimal(20), 30_000_000)]
    # another tenant has its own counter: 50 × 2
    assert split(r.rate_line(line("50", day=3, tenant="beta"))) == [(1, Decimal(50), 100_000_000)]
    # acme 120 → 320 crosses 250: 130 × 1.5 = 195, 70 × 1 = 70
    assert split(r.rate_line(line("200", day=3))) == [(2, Decimal(130), 195_000_000), (3, Decimal(70), 70_000_000)]
    # a new billing month starts over at tier 1: 10 × 2
    assert split(r.rate_line(line("10", day=1, month=12))) == [(1, Decimal(10), 20_000_000)]


def test_context_lines_count_toward_tiers_without_charges() -> None:
    r = rater(TIERED)
    assert r.rate_line(line("90", day=1, context=True)) == []
    # 90 already used: 10 × 2 = 20 + 5 × 1.5 = 7.5
    assert [c.cost for c in r.rate_line(line("15", day=20))] == [20_000_000, 7_500_000]


def test_price_change_mid_month_keeps_history_and_tier_count() -> None:
    r = rater("""
currency: USD
prices:
  - {category: compute, item: gpu_hours, price: "2.00"}
  - {category: compute, item: gpu_hours, effective: 2026-11-16, price: "2.50"}
""")
    assert one(r.rate_line(line("10", day=15))).cost == 20_000_000  # 10 × 2.00 (old price)
    assert one(r.rate_line(line("10", day=16))).cost == 25_000_000  # 10 × 2.50 (from the 16th)
    # Tiers count the whole month across the change: 8 @ 1 on the 15th; on the 16th the new
    # tiers apply to the cumulative 8 → 16: 2 @ 2 = 4 and 6 @ 1 = 6.
    r2 = rater("""
currency: USD
prices:
  - category: compute
    item: cpu_core_hours
    tiers: [{upto: 10, price: "1"}, {price: "0.5"}]
  - category: compute
    item: cpu_core_hours
    effective: 2026-11-16
    tiers: [{upto: 10, price: "2"}, {price: "1"}]
""")
    assert [c.cost for c in r2.rate_line(line("8", day=15, item="cpu_core_hours"))] == [8_000_000]
    assert [c.cost for c in r2.rate_line(line("8", day=16, item="cpu_core_hours"))] == [4_000_000, 6_000_000]
    # Before the first effective date there is no price: unpriced, not zero.
    r3 = rater("""
currency: USD
prices:
  - {category: storage, item: storage_gib_hours, effective: 2026-11-16, price: "0.0001"}
""")
    early = one(r3.rate_line(line("5", day=15, category="storage", item="storage_gib_hours")))
    assert not early.priced
    assert early.unpriced_reason == "no price for storage/storage_gib_hours before 2026-11-16"


def test_tenant_discount_and_markup() -> None:
    r = rater("""
currency: USD
prices:
  - {category: compute, item: gpu_hours, price: "3.90"}
tenants:
  acme: {discount_percent: 10}
  beta: {markup_percent: 5}
""")
    acme = one(r.rate_line(line("10", tenant="acme")))
    assert (acme.list_cost, acme.cost, acme.unit_price) == (39_000_000, 35_100_000, Decimal("3.510"))  # 3.90 × 0.9
    beta = one(r.rate_line(line("10", tenant="beta")))
    assert (beta.list_cost, beta.cost, beta.unit_price) == (39_000_000, 40_950_000, Decimal("4.0950"))  # × 1.05
    other = one(r.rate_line(line("10", tenant="gamma")))
    assert (other.list_cost, other.cost) == (39_000_000, 39_000_000)


def test_rounding_half_up_once_per_line() -> None:
    r = rater("""
currency: USD
prices:
  - {category: compute, item: gpu_hours, price: "0.5"}
tenants:
  acme: {discount_percent: 10}
""")

    def cost(usage: str, tenant: str = "beta") -> int:
        return one(r.rate_line(line(usage, tenant=tenant))).cost

    assert cost("0.000001") == 1  # 0.5 micro → half up → 1 (half-even would give 0)
    assert cost("0.000005") == 3  # 2.5 micro → 3 (half-even: 2)
    assert cost("0.000003") == 2  # 1.5 micro → 2
    assert cost("0.000000999") == 0  # 0.4995 micro → 0
    assert cost("1.234567891") == 617_284  # 0.6172839455 → 617283.9455 micro → 617284
    # Rounded once, from the exact discounted amount: 0.000001 × 0.5 × 0.9 = 0.45 micro → 0
    # (rounding the list cost first, 1 micro, and discounting that would give 0.9 → 1).
    assert cost("0.000001", tenant="acme") == 0
    # Once per line: one line of 0.000003 h costs 2 micro; three lines of 0.000001 h cost 1 each.
    assert sum(cost("0.000001") for _ in range(3)) == 3


def test_unpriced_is_never_zero() -> None:
    r = rater("""
currency: USD
prices:
  - category: compute
    item: gpu_hours
    label: gpu_sku
    groups: [{values: [h100], price: "3.90"}]
""")
    no_item = one(r.rate_line(line("5", item="lb_hours", category="network")))
    assert (no_item.priced, no_item.cost, no_item.usage) == (False, 0, Decimal(5))
    assert no_item.unpriced_reason == "no price for network/lb_hours"
    no_group = one(r.rate_line(line("5", labels={"gpu_sku": "b200"})))
    assert not no_group.priced
    assert no_group.unpriced_reason == (
        "compute/gpu_hours: no label group matches gpu_sku=b200 and there is no default price"
    )


def test_prices_are_per_display_unit() -> None:
    r = rater(
        """
currency: USD
prices:
  - {category: VgpuMemory, item: VgpuMemoryUsed, price: "0.002"}
  - {category: Vgpu, item: VgpuCoreUsed, price: "0.04"}
""",
        divisors={"VgpuMemoryUsed": "1073741824", "VgpuCoreUsed": "1000"},
    )
    memory = one(r.rate_line(line("3221225472", category="VgpuMemory", item="VgpuMemoryUsed")))
    assert (memory.quantity, memory.cost) == (Decimal(3), 6_000)  # 3221225472 / 2^30 = 3 Gi-h × 0.002
    cores = one(r.rate_line(line("1500", category="Vgpu", item="VgpuCoreUsed")))
    assert (cores.quantity, cores.cost) == (Decimal("1.5"), 60_000)  # 1500 m-core-h / 1000 × 0.04


def test_tier_split_keeps_raw_usage_exact() -> None:
    r = rater(
        """
currency: USD
prices:
  - category: compute
    item: odd
    tiers: [{upto: 1, price: "1"}, {price: "0.5"}]
""",
        divisors={"odd": "3"},
    )
    charges = r.rate_line(line("5", item="odd"))
    # 5 raw / 3 = 1.666… display units: 1 unit (3 raw) @ 1, 0.666… (the remaining 2 raw) @ 0.5
    assert [c.usage for c in charges] == [Decimal(3), Decimal(2)]
    assert sum(c.usage for c in charges) == Decimal(5)
    assert [c.cost for c in charges] == [1_000_000, 333_333]  # 1 × 1; 0.6666… × 0.5 = 0.33333… → 333333


def test_lines_must_come_in_period_order() -> None:
    r = rater(TIERED)
    r.rate_line(line("1", day=2))
    with pytest.raises(ValueError, match="out of order"):
        r.rate_line(line("1", day=1))
