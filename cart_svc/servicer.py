"""gRPC face of the cart service, declared before it is built.

It overrides no RPC yet, so every call answers UNIMPLEMENTED (the generated base's default), never a
made-up success. The cart issue fills it in the same way as inventory's servicer: proto → command →
handler → proto, with the Redis cart store, pricing through inventory and the history sweeper behind it.
"""

from __future__ import annotations

from shop.cart.v1 import cart_service_pb2 as pb
from shop.cart.v1 import cart_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CartService"].full_name


class CartServicer(pb_grpc.CartServiceServicer):
    """shop.cart.v1.CartService; every RPC is still the generated UNIMPLEMENTED default."""
