"""gRPC face of the checkout gateway, declared before it is built.

It overrides no RPC yet, so every call answers UNIMPLEMENTED (the generated base's default), never a
made-up success. The gateway issue fills it in: JWT identity, rate limits and idempotency keys around
proto → command → handler → proto, with the checkout saga, its recovery worker and the downstream clients.
"""

from __future__ import annotations

from shop.gateway.v1 import gateway_service_pb2 as pb
from shop.gateway.v1 import gateway_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CheckoutService"].full_name


class CheckoutServicer(pb_grpc.CheckoutServiceServicer):
    """shop.gateway.v1.CheckoutService; every RPC is still the generated UNIMPLEMENTED default."""
