"""Customers, products and prices through the real SDK, plus auth and envelopes."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import stripe

from tests.fixtures.stripe import StripeEmulatorHandle

from . import support

PER_UNIT = {"product_data": {"name": "x"}, "currency": "usd", "unit_amount": 1000}
TIERED = {
    "product_data": {"name": "x"},
    "currency": "usd",
    "billing_scheme": "tiered",
    "tiers_mode": "graduated",
    "tiers": [{"up_to": 5, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 400}],
}


def test_customer_lifecycle(stripe_client: stripe.StripeClient) -> None:
    created = stripe_client.v1.customers.create({"email": "a@x.io", "metadata": {"tenant": "t1"}})
    assert created.id.startswith("cus_") and created.metadata["tenant"] == "t1"
    updated = stripe_client.v1.customers.update(
        created.id, {"name": "Ann", "metadata": {"tenant": ""}}
    )
    assert updated.name == "Ann" and "tenant" not in updated.metadata
    assert stripe_client.v1.customers.retrieve(created.id).name == "Ann"
    deleted = stripe_client.v1.customers.delete(created.id)
    assert deleted.deleted is True
    assert stripe_client.v1.customers.list().data == []


def test_customer_list_auto_paginates(stripe_client: stripe.StripeClient) -> None:
    ids = [support.customer(stripe_client, f"c{i}@x.io").id for i in range(7)]
    page = stripe_client.v1.customers.list({"limit": 3})
    assert page.has_more is True and len(page.data) == 3
    seen = [c.id for c in page.auto_paging_iter()]
    assert seen == list(reversed(ids))
    by_email = stripe_client.v1.customers.list({"email": "c3@x.io"})
    assert [c.id for c in by_email.data] == [ids[3]]


def test_missing_object_is_resource_missing(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.customers.retrieve("cus_nope")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_products_and_prices_sync_by_lookup_key(stripe_client: stripe.StripeClient) -> None:
    meter = support.meter(stripe_client)
    base, usage = support.metered_plan(stripe_client, meter.id)
    assert usage.recurring.usage_type == "metered" and usage.recurring.meter == meter.id
    assert str(usage.unit_amount_decimal) == "0.5"
    found = stripe_client.v1.prices.list({"lookup_keys": ["power_base", "power_usage"]})
    assert {p.id for p in found.data} == {base.id, usage.id}
    assert [p.id for p in stripe_client.v1.products.list().data] == [base.product]
    inactive = stripe_client.v1.products.list({"active": False})
    assert inactive.data == []


def test_lookup_key_is_unique_unless_transferred(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create({"name": "Basic"})
    first = stripe_client.v1.prices.create(
        {"product": product.id, "currency": "usd", "unit_amount": 900, "lookup_key": "basic"}
    )
    params = {"product": product.id, "currency": "usd", "unit_amount": 1000, "lookup_key": "basic"}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.prices.create(params)
    assert caught.value.param == "lookup_key"
    second = stripe_client.v1.prices.create({**params, "transfer_lookup_key": True})
    assert stripe_client.v1.prices.retrieve(first.id).lookup_key is None
    assert stripe_client.v1.prices.list({"lookup_keys": ["basic"]}).data[0].id == second.id


def test_price_update_and_product_data(stripe_client: stripe.StripeClient) -> None:
    price = stripe_client.v1.prices.create(
        {"product_data": {"name": "Inline"}, "currency": "usd", "unit_amount": 5}
    )
    assert price.type == "one_time"
    assert stripe_client.v1.products.retrieve(price.product).name == "Inline"
    updated = stripe_client.v1.prices.update(price.id, {"active": False, "metadata": {"k": "v"}})
    assert updated.active is False and updated.metadata["k"] == "v"
    assert stripe_client.v1.prices.list({"active": True}).data == []


def test_search_by_metadata(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(
        {"name": "Plan", "metadata": {"meterline_plan": "power"}}
    )
    stripe_client.v1.products.create({"name": "Other"})
    result = stripe_client.v1.products.search({"query": "metadata['meterline_plan']:'power'"})
    assert [p.id for p in result.data] == [product.id]
    prices = stripe_client.v1.prices.search({"query": "active:'true'"})
    assert prices.data == []
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.products.search({"query": "name~'x'"})


def test_tiered_and_package_prices(stripe_client: stripe.StripeClient) -> None:
    tiers = [
        {"up_to": 5, "unit_amount_decimal": "0.5", "flat_amount": 100},
        {"up_to": "inf", "unit_amount": 3},
    ]
    created = stripe_client.v1.prices.create({**TIERED, "tiers": tiers, "lookup_key": "t"})
    assert created.billing_scheme == "tiered" and created.tiers_mode == "graduated"
    assert "tiers" not in created and created.unit_amount is None
    listed = stripe_client.v1.prices.list({"lookup_keys": ["t"], "expand": ["data.tiers"]}).data
    shown = [
        (t.up_to, t.unit_amount, t.unit_amount_decimal, t.flat_amount) for t in listed[0].tiers
    ]
    assert shown == [(5, None, Decimal("0.5"), 100), (None, 3, Decimal(3), None)]
    fetched = stripe_client.v1.prices.retrieve(created.id, {"expand": ["tiers"]})
    assert [t.up_to for t in fetched.tiers] == [5, None]
    package = stripe_client.v1.prices.create(
        {**PER_UNIT, "transform_quantity": {"divide_by": 60, "round": "up"}}
    )
    assert package.transform_quantity.divide_by == 60 and package.transform_quantity.round == "up"
    assert stripe_client.v1.prices.retrieve(package.id).transform_quantity.round == "up"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"currency": "usd", "unit_amount": 1}, "product"),
        ({"product": "prod_missing", "currency": "usd", "unit_amount": 1}, "product"),
        ({"product_data": {"name": "x"}, "currency": "usd"}, "unit_amount"),
        (
            {
                "product_data": {"name": "x"},
                "currency": "usd",
                "unit_amount": 1,
                "recurring": {"interval": "fortnight"},
            },
            "recurring[interval]",
        ),
        (
            {
                "product_data": {"name": "x"},
                "currency": "usd",
                "unit_amount": 1,
                "recurring": {"interval": "month", "usage_type": "metered"},
            },
            "recurring[meter]",
        ),
        (
            {"product_data": {"name": "x"}, "currency": "usd", "unit_amount_decimal": "abc"},
            "unit_amount_decimal",
        ),
        (
            {
                "product_data": {"name": "x"},
                "currency": "usd",
                "unit_amount_decimal": "0.1234567890123",
            },
            "unit_amount_decimal",
        ),
        (
            {
                "product_data": {"name": "x"},
                "currency": "usd",
                "unit_amount": 1,
                "unit_amount_decimal": "1",
            },
            "unit_amount",
        ),
        ({**TIERED, "tiers_mode": None}, "tiers_mode"),
        ({**TIERED, "tiers_mode": "stairs"}, "tiers_mode"),
        ({**TIERED, "tiers": None}, "tiers"),
        ({**TIERED, "unit_amount": 5}, "unit_amount"),
        ({**TIERED, "transform_quantity": {"divide_by": 2, "round": "up"}}, "transform_quantity"),
        ({**TIERED, "tiers": [{"up_to": 5, "unit_amount": 1}]}, "tiers[0][up_to]"),
        ({**TIERED, "tiers": [{"unit_amount": 1}]}, "tiers[0][up_to]"),
        ({**TIERED, "tiers": [{"up_to": "inf"}]}, "tiers[0]"),
        (
            {**TIERED, "tiers": [{"up_to": "inf", "flat_amount": 1, "flat_amount_decimal": "1"}]},
            "tiers[0][flat_amount]",
        ),
        (
            {
                **TIERED,
                "tiers": [
                    {"up_to": 5, "unit_amount": 1},
                    {"up_to": 5, "unit_amount": 1},
                    {"up_to": "inf", "unit_amount": 1},
                ],
            },
            "tiers",
        ),
        ({**PER_UNIT, "tiers_mode": "volume"}, "tiers_mode"),
        ({**PER_UNIT, "transform_quantity": {"round": "up"}}, "transform_quantity[divide_by]"),
        (
            {**PER_UNIT, "transform_quantity": {"divide_by": 0, "round": "up"}},
            "transform_quantity[divide_by]",
        ),
        (
            {**PER_UNIT, "transform_quantity": {"divide_by": 2, "round": "half"}},
            "transform_quantity[round]",
        ),
        ({**PER_UNIT, "billing_scheme": "package"}, "billing_scheme"),
    ],
)
def test_price_validation(stripe_client: stripe.StripeClient, params: dict, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        stripe_client.v1.prices.create(params)
    assert caught.value.param == param


def test_duplicate_product_id(stripe_client: stripe.StripeClient) -> None:
    stripe_client.v1.products.create({"id": "prod_power", "name": "Power"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.products.create({"id": "prod_power", "name": "Power"})


def test_only_test_secret_keys_are_accepted(stripe_emulator: StripeEmulatorHandle) -> None:
    with pytest.raises(stripe.AuthenticationError):
        stripe_emulator.client(api_key="sk_live_nope").v1.customers.list()
    response = httpx.get(stripe_emulator.url + "/v1/customers")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["Request-Id"].startswith("req_")


def test_unknown_path_is_a_404_envelope(stripe_emulator: StripeEmulatorHandle) -> None:
    headers = {"Authorization": f"Bearer {stripe_emulator.api_key}"}
    response = httpx.get(stripe_emulator.url + "/v1/nothing_here", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"
    assert response.headers["Request-Id"].startswith("req_")


def test_bad_pagination_cursor_and_limit(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.list({"starting_after": "cus_unknown"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.customers.list({"limit": 0})


def test_ending_before_pages_backwards(stripe_client: stripe.StripeClient) -> None:
    ids = [support.customer(stripe_client, f"e{i}@x.io").id for i in range(4)]
    page = stripe_client.v1.customers.list({"ending_before": ids[0], "limit": 2})
    assert [c.id for c in page.data] == [ids[2], ids[1]] and page.has_more is True


def test_basic_auth_with_the_key_as_user_name(stripe_emulator: StripeEmulatorHandle) -> None:
    ok = httpx.get(stripe_emulator.url + "/v1/customers", auth=(stripe_emulator.api_key, ""))
    assert ok.status_code == 200 and ok.json()["object"] == "list"
    bad = httpx.get(stripe_emulator.url + "/v1/customers", headers={"Authorization": "Basic !!"})
    assert bad.status_code == 401
