"""Usage attached to the customers a provider already has: per destination, tenant → existing
customer (and Lago subscription/plan); unmapped tenants keep the ``kt-<tenant>`` convention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from kubetally.config.destinations import LagoConfig, StripeConfig
from kubetally.delivery.engine import deliver_once
from kubetally.ledger.store import Ledger
from kubetally.periods import floor_to

from .helpers import FAST, record

RECENT = floor_to(datetime.now(UTC) - timedelta(days=3), timedelta(days=1))


def test_stripe_tenant_mapped_to_an_existing_customer_gets_usage_and_none_is_created(
    sqlite_ledger: Ledger, stripe: Any
) -> None:
    made = httpx.post(
        f"{stripe.base_url}/v1/customers",
        data={"name": "Acme Corp (billing since 2019)"},
        headers={"Authorization": f"Bearer {stripe.api_key}"},
    )
    assert made.status_code == 200, made.text
    existing = made.json()["id"]
    sqlite_ledger.write(
        [
            record("acme", "gpu_hours", 0, "1.5", start=RECENT, sku="H100"),
            record("acme", "gpu_hours", 1, "2", start=RECENT, sku="H100"),
            record("beta", "gpu_hours", 0, "1", start=RECENT, sku="H100"),
        ]
    )
    config = StripeConfig(
        type="stripe",
        url=stripe.base_url,
        stream_url=stripe.stream_base_url,
        retry_initial=timedelta(milliseconds=20),
        scale="3600",
        customers={"acme": existing},
    )
    for _ in range(2):  # a second run must not create anything either
        summary = deliver_once(sqlite_ledger, [config], environ={"STRIPE_API_KEY": stripe.api_key}, policy=FAST)
        assert summary.ok, summary.destinations[0].error
    customers = stripe.objects["customers"]
    # acme: the existing customer only; beta (unmapped): one customer created by kubetally
    assert sorted(c["name"] for c in customers.values()) == ["Acme Corp (billing since 2019)", "beta"]
    by_customer: dict[str, Decimal] = {}
    for event in stripe.events.values():
        payload = event["payload"]
        by_customer[payload["stripe_customer_id"]] = by_customer.get(payload["stripe_customer_id"], 0) + Decimal(
            payload["value"]
        )
    beta_id = next(c["id"] for c in customers.values() if c["name"] == "beta")
    # scale 3600: 1.5 h + 2 h = 12600 s for acme, 1 h = 3600 s for beta
    assert by_customer == {existing: Decimal(12600), beta_id: Decimal(3600)}


def test_lago_existing_customer_and_subscription_are_used_not_created(sqlite_ledger: Ledger, lago: Any) -> None:
    sqlite_ledger.write([record("acme", "gpu_hours", 0, "1.5"), record("beta", "gpu_hours", 0, "1")])
    config = LagoConfig(
        type="lago",
        url=lago.base_url,
        retry_initial=timedelta(milliseconds=20),
        customers={"acme": {"customer": "crm-0042", "plan": "vcluster-standard"}},
    )
    headers = {"Authorization": f"Bearer {lago.api_key}"}
    made = httpx.post(
        f"{lago.base_url}/customers",
        json={"customer": {"external_id": "crm-0042", "name": "Acme Corp", "currency": "USD"}},
        headers=headers,
    )
    assert made.status_code == 200, made.text
    summary = deliver_once(sqlite_ledger, [config], environ={"LAGO_API_KEY": lago.api_key}, policy=FAST)
    assert summary.ok, summary.destinations[0].error
    customers = lago.objects["customers"]
    assert sorted(customers) == ["crm-0042", "kt-beta"]
    assert customers["crm-0042"]["name"] == "Acme Corp"  # never overwritten by kubetally
    assert sorted(lago.objects["subscriptions"]) == ["crm-0042", "kt-beta"]
    got = {e["external_subscription_id"]: e["properties"]["quantity"] for e in lago.events.values()}
    assert got == {"crm-0042": "1.5", "kt-beta": "1"}
    # Mapped to an existing subscription: nothing is created and offboarding never terminates it.
    sqlite_ledger.write([record("gamma", "gpu_hours", 1, "2")])
    mapped = LagoConfig(
        type="lago",
        url=lago.base_url,
        retry_initial=timedelta(milliseconds=20),
        customers={
            "acme": {"customer": "crm-0042", "plan": "vcluster-standard"},
            "gamma": {"customer": "crm-7", "subscription": "crm-0042"},
        },
    )
    assert deliver_once(sqlite_ledger, [mapped], environ={"LAGO_API_KEY": lago.api_key}, policy=FAST).ok
    assert sorted(lago.objects["customers"]) == ["crm-0042", "kt-beta"]
    assert [e["external_subscription_id"] for e in lago.events.values()].count("crm-0042") == 2


def _stripe_customer(stripe: Any, name: str, tenant: str) -> str:
    made = httpx.post(
        f"{stripe.base_url}/v1/customers",
        data={"name": name, "metadata[kubetally_tenant]": tenant},
        headers={"Authorization": f"Bearer {stripe.api_key}"},
    )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def _stripe_config(stripe: Any) -> StripeConfig:
    return StripeConfig(
        type="stripe",
        url=stripe.base_url,
        stream_url=stripe.stream_base_url,
        retry_initial=timedelta(milliseconds=20),
        scale="3600",
    )


def test_stripe_finds_the_customer_an_earlier_kubetally_made_instead_of_creating_another(
    sqlite_ledger: Ledger, stripe: Any
) -> None:
    """A fresh ledger (its outbox knows no customers) delivering to an account where a customer
    for ``beta`` exists already (metadata ``kubetally_tenant: beta``): usage goes to it, found
    by Stripe's customer search, and no second ``beta`` customer is created."""
    earlier = _stripe_customer(stripe, "beta", "beta")
    sqlite_ledger.write([record("beta", "gpu_hours", 0, "1.5", start=RECENT, sku="H100")])
    summary = deliver_once(
        sqlite_ledger, [_stripe_config(stripe)], environ={"STRIPE_API_KEY": stripe.api_key}, policy=FAST
    )
    assert summary.ok, summary.destinations[0].error
    assert [c["id"] for c in stripe.objects["customers"].values()] == [earlier]
    # scale 3600: 1.5 h = 5400 s, to the customer found
    assert [(e["payload"]["stripe_customer_id"], e["payload"]["value"]) for e in stripe.events.values()] == [
        (earlier, "5400")
    ]
    assert any(r.path == "/v1/customers/search" for r in stripe.requests)
    assert stripe.violations == []


def test_stripe_two_customers_for_one_tenant_stop_the_destination_naming_them(
    sqlite_ledger: Ledger, stripe: Any
) -> None:
    first, second = _stripe_customer(stripe, "gamma", "gamma"), _stripe_customer(stripe, "gamma (2)", "gamma")
    sqlite_ledger.write([record("gamma", "gpu_hours", 0, "1", start=RECENT, sku="H100")])
    summary = deliver_once(
        sqlite_ledger, [_stripe_config(stripe)], environ={"STRIPE_API_KEY": stripe.api_key}, policy=FAST
    )
    assert not summary.ok
    error = summary.destinations[0].error or ""
    named = ", ".join(sorted([first, second]))  # in id order, whatever order the search answers in
    assert f"2 customers carry metadata kubetally_tenant='gamma' ({named})" in error
    assert "map the tenant to one of them under customers:" in error
    assert len(stripe.objects["customers"]) == 2 and stripe.events == {}


def _discovered(ledger: Ledger, objects: dict[str, list[dict[str, Any]]]) -> None:
    """What the Kubernetes source does each reconcile: discover tenants, keep them in the registry."""
    from kubetally.config.kubernetes import KubernetesConfig, TenancyConfig
    from kubetally.sources.kubernetes.registry import update_registry
    from kubetally.sources.kubernetes.tenancy import discover

    config = KubernetesConfig(tenancy=TenancyConfig(customer_key=KEY))
    discovery = discover(objects, config)
    with ledger.transaction() as conn:
        update_registry(conn, "c1", discovery, RECENT, timedelta(hours=1))


KEY = "billing.example.com/customer-id"


def _vcluster(name: str, *, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": f"host-{name}",
            "labels": {"app": "vcluster", "release": name},
            "annotations": annotations or {},
        }
    }


def test_customer_from_the_tenant_annotation_explicit_wins_and_unmapped_is_held(
    sqlite_ledger: Ledger, stripe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Precedence: the destination's customers: table > the annotation/label on the tenant's
    object > (unmapped) a hold that dead-letters with the reason — never a silent default."""
    from kubetally.app.deliver import DeliverSettings, Delivery

    annotated = _stripe_customer(stripe, "Annotated Inc", "unused")
    explicit = _stripe_customer(stripe, "Explicit Ltd", "unused")
    labelled = _stripe_customer(stripe, "Labelled GmbH", "unused")
    _discovered(
        sqlite_ledger,
        {
            "statefulsets": [
                _vcluster("ann", annotations={KEY: annotated}),  # vcluster/host-ann/ann → annotated
                _vcluster("both", annotations={KEY: "cus_not_this_one"}),  # explicit table wins
                _vcluster("plain"),  # neither: held
            ],
            # a namespace tenant whose namespace carries the key as a label
            "namespaces": [
                {"metadata": {"name": "research", "labels": {"kubetally.io/tenant": "true", KEY: labelled}}}
            ],
        },
    )
    tenants = {"ann": "vcluster/host-ann/ann", "both": "vcluster/host-both/both", "plain": "vcluster/host-plain/plain"}
    sqlite_ledger.write(
        [
            record(tenants["ann"], "gpu_hours", 0, "1", start=RECENT, sku="H100"),
            record(tenants["both"], "gpu_hours", 0, "2", start=RECENT, sku="H100"),
            record(tenants["plain"], "gpu_hours", 0, "3", start=RECENT, sku="H100"),
            record("namespace/research", "gpu_hours", 0, "4", start=RECENT, sku="H100"),
        ]
    )
    config = _stripe_config(stripe).model_copy(update={"unmapped": "hold", "customers": {tenants["both"]: explicit}})
    monkeypatch.setenv("STRIPE_API_KEY", stripe.api_key)
    with Delivery(DeliverSettings([config], None), sqlite_ledger) as delivery:
        summary = delivery.run_once()
    by_customer = {e["payload"]["stripe_customer_id"]: e["payload"]["value"] for e in stripe.events.values()}
    # scale 3600: 1 h → 3600, 2 h → 7200, 4 h → 14400; the unmapped 3 h are held, not sent
    assert by_customer == {annotated: "3600", explicit: "7200", labelled: "14400"}
    assert len(stripe.objects["customers"]) == 3  # none created
    from kubetally.delivery.outbox import Outbox

    [letter] = Outbox(sqlite_ledger, "stripe").dead_letters()
    assert letter.tenant == tenants["plain"] and letter.reason.startswith(
        "held: tenant 'vcluster/host-plain/plain' has no customer"
    )
    assert not summary.ok
