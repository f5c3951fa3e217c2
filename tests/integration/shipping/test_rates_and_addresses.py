"""ValidateAddress per country, and rates over gRPC: bracket edges, free-shipping threshold, zones,
quotes equal to the options shown."""

from __future__ import annotations

import grpc
import pytest

from shop.shipping.v1 import shipping_service_pb2 as pb
from shop.type.v1 import address_pb2, line_item_pb2
from tests.integration.shipping.conftest import US_ADDRESS, usd
from tests.rpc_errors import expect_failure


def _address(country: str, postal: str, region: str = "") -> address_pb2.Address:
    return address_pb2.Address(
        recipient_name="R", line1="L1", city="C", region=region, postal_code=postal, country_code=country
    )


ADDRESSES = [
    # country, postal code, region, valid, normalised postal code, zone
    ("US", "62701", "IL", True, "62701", "domestic"),
    ("US", "627011234", "il", True, "62701-1234", "domestic"),
    ("US", "6270", "IL", False, "6270", ""),
    ("US", "62701", "", False, "62701", ""),
    ("CA", "k1a0b1", "ON", True, "K1A 0B1", "north_america"),
    ("CA", "D1A 0B1", "ON", False, "D1A 0B1", ""),
    ("GB", "sw1a1aa", "", True, "SW1A 1AA", "rest_of_world"),
    ("GB", "SW1A", "", False, "SW1A", ""),
    ("DE", "10115", "", True, "10115", "eu"),
    ("DE", "1011", "", False, "1011", ""),
    ("FR", "75001", "", True, "75001", "eu"),
    ("JP", "1000001", "", True, "100-0001", "rest_of_world"),
    ("JP", "100-00011", "", False, "100-00011", ""),
    ("AU", "2000", "NSW", True, "2000", "rest_of_world"),
    ("AU", "2000", "", False, "2000", ""),
    ("NL", "1234ab", "", True, "1234 AB", "eu"),
    ("NL", "1234 SA", "", False, "1234 SA", ""),
    ("BR", "01310-100", "", True, "01310-100", ""),  # valid, but no zone serves it
    ("XX", "1", "", False, "1", ""),
]


@pytest.mark.parametrize(("country", "postal", "region", "valid", "normalized", "zone"), ADDRESSES)
async def test_validate_address_per_country(shipping, country, postal, region, valid, normalized, zone):
    checked = await shipping.ValidateAddress(pb.ValidateAddressRequest(address=_address(country, postal, region)))
    assert checked.valid is valid, list(checked.violations)
    assert checked.normalized_address.postal_code == normalized
    assert checked.zone == zone and checked.deliverable is bool(zone)
    if not valid:
        assert checked.violations and all(v.field.startswith("address.") for v in checked.violations)


async def test_validate_address_without_an_address_is_invalid_argument(shipping):
    failure = await expect_failure(shipping.ValidateAddress(pb.ValidateAddressRequest()))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT and set(failure.field_violations) == {"address"}


def _options_request(grams_of_100: int, subtotal: int, address=US_ADDRESS) -> pb.GetShippingOptionsRequest:
    return pb.GetShippingOptionsRequest(
        shipping_address=address,
        items=[line_item_pb2.LineItem(sku="W-100", quantity=grams_of_100)],
        subtotal=usd(subtotal),
    )


@pytest.mark.parametrize(
    ("units_of_100g", "standard_minor"),
    [(5, 499), (6, 799), (20, 799), (21, 1299), (100, 1299), (101, 2499), (300, 2499)],
)
async def test_standard_rate_at_the_bracket_edges(shipping, units_of_100g, standard_minor):
    offered = await shipping.GetShippingOptions(_options_request(units_of_100g, 1000))
    standard = next(o for o in offered.options if o.shipping_method == pb.SHIPPING_METHOD_STANDARD)
    assert offered.total_weight_grams == units_of_100g * 100
    assert standard.cost.amount_minor == standard.list_cost.amount_minor == standard_minor


async def test_methods_beyond_their_weight_limit_are_left_out_and_none_left_is_not_served(shipping):
    heavy = await shipping.GetShippingOptions(_options_request(250, 1000))  # 25 kg: standard only
    assert [o.shipping_method for o in heavy.options] == [pb.SHIPPING_METHOD_STANDARD]
    failure = await expect_failure(shipping.GetShippingOptions(_options_request(301, 1000)))
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DESTINATION_NOT_SERVED")


async def test_free_shipping_threshold_applies_to_standard_from_the_threshold_on(shipping):
    below = await shipping.GetShippingOptions(_options_request(5, 4999))
    at = await shipping.GetShippingOptions(_options_request(5, 5000))
    assert below.amount_to_free_shipping == usd(1) and at.amount_to_free_shipping == usd(0)
    assert below.free_shipping_threshold == usd(5000)
    assert [(o.shipping_method, o.cost.amount_minor, o.free_shipping_applied) for o in below.options] == [
        (pb.SHIPPING_METHOD_STANDARD, 499, False),
        (pb.SHIPPING_METHOD_EXPRESS, 1299, False),
        (pb.SHIPPING_METHOD_OVERNIGHT, 2499, False),
    ]
    standard = at.options[0]
    assert (standard.cost.amount_minor, standard.list_cost.amount_minor, standard.free_shipping_applied) == (
        0,
        499,
        True,
    )
    assert at.options[1].cost.amount_minor == 1299  # express is never free


async def test_zones_by_country_and_an_unserved_country(shipping):
    de = await shipping.GetShippingOptions(_options_request(5, 1000, _address("DE", "10115")))
    assert de.zone == "eu" and de.options[0].cost.amount_minor == 1499
    gb = await shipping.GetShippingOptions(_options_request(5, 1000, _address("GB", "SW1A 1AA")))
    assert gb.zone == "rest_of_world" and not gb.HasField("free_shipping_threshold")
    failure = await expect_failure(shipping.GetShippingOptions(_options_request(5, 1000, _address("BR", "01310-100"))))
    assert failure.reason == "DESTINATION_NOT_SERVED"


async def test_quote_is_exactly_the_option_shown(shipping):
    items = [line_item_pb2.LineItem(sku="W-250", quantity=3), line_item_pb2.LineItem(sku="W-1000", quantity=1)]
    offered = await shipping.GetShippingOptions(
        pb.GetShippingOptionsRequest(shipping_address=US_ADDRESS, items=items, subtotal=usd(2000))
    )
    assert offered.total_weight_grams == 1750
    for option in offered.options:
        quoted = await shipping.QuoteShipping(
            pb.QuoteShippingRequest(
                shipping_method=option.shipping_method, shipping_address=US_ADDRESS, items=items, subtotal=usd(2000)
            )
        )
        assert quoted.option == option and quoted.zone == "domestic" and quoted.total_weight_grams == 1750


async def test_quote_of_a_method_the_zone_does_not_offer(shipping):
    failure = await expect_failure(
        shipping.QuoteShipping(
            pb.QuoteShippingRequest(
                shipping_method=pb.SHIPPING_METHOD_OVERNIGHT,
                shipping_address=_address("DE", "10115"),
                items=[line_item_pb2.LineItem(sku="W-100", quantity=1)],
                subtotal=usd(100),
            )
        )
    )
    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SHIPPING_METHOD_NOT_AVAILABLE")


async def test_a_subtotal_in_another_currency_is_not_supported(shipping):
    request = _options_request(5, 1000)
    request.subtotal.currency_code = "EUR"
    failure = await expect_failure(shipping.GetShippingOptions(request))
    assert (failure.reason, failure.metadata) == ("CURRENCY_NOT_SUPPORTED", {"currencyCode": "EUR"})


async def test_a_bad_address_is_address_invalid_at_the_request_paths(shipping):
    request = _options_request(5, 1000, _address("US", "123", "IL"))
    failure = await expect_failure(shipping.GetShippingOptions(request))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ADDRESS_INVALID")
    assert set(failure.field_violations) == {"shipping_address.postal_code"}


async def test_unknown_skus_are_field_violations(shipping):
    request = _options_request(5, 1000)
    request.items.append(line_item_pb2.LineItem(sku="NOPE", quantity=1))
    failure = await expect_failure(shipping.GetShippingOptions(request))
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert set(failure.field_violations) == {"items[1].sku"}
