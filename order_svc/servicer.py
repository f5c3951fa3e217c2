"""gRPC face of the order service, declared before it is built.

It overrides no RPC yet, so every call answers UNIMPLEMENTED (the generated base's default), never a
made-up success. The order issue fills it in: proto → command → handler → proto over the orders
repository, the transactional outbox and its relay to the event stream, and the cancellation worker.
"""

from __future__ import annotations

from shop.order.v1 import order_service_pb2 as pb
from shop.order.v1 import order_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrderService"].full_name


class OrderServicer(pb_grpc.OrderServiceServicer):
    """shop.order.v1.OrderService; every RPC is still the generated UNIMPLEMENTED default."""
