"""The shipping contract's route for the BFF (GetShippingOptions) matches its request; the mesh-only
shipment RPCs have none."""

from __future__ import annotations

from shop.shipping.v1 import shipping_service_pb2
from tests.unit.test_cart_http_routes import route, route_problems

SHIPPING = shipping_service_pb2.DESCRIPTOR.services_by_name["ShippingService"]


def test_every_shipping_route_matches_its_request_message():
    assert route_problems(SHIPPING) == []


def test_get_shipping_options_has_its_route_and_shipments_have_none():
    assert route(SHIPPING.methods_by_name["GetShippingOptions"]) == ("post", "/v1/shipping:options", "*")
    for rpc in ("CreateShipment", "GetShipment", "CancelShipment", "RecordCarrierScan"):
        assert route(SHIPPING.methods_by_name[rpc]) is None
