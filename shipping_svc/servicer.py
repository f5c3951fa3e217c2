"""gRPC face of the shipping service, declared before it is built.

It overrides no RPC yet, so every call answers UNIMPLEMENTED (the generated base's default), never a
made-up success. The shipping issue fills it in: proto → command → handler → proto over the address
rules in domain.py, the rate table data file, weights from inventory and the shipments repository.
"""

from __future__ import annotations

from shop.shipping.v1 import shipping_service_pb2 as pb
from shop.shipping.v1 import shipping_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ShippingService"].full_name


class ShippingServicer(pb_grpc.ShippingServiceServicer):
    """shop.shipping.v1.ShippingService; every RPC is still the generated UNIMPLEMENTED default."""
