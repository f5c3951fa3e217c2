"""gRPC face of the payment service, declared before it is built.

It overrides no RPC yet, so every call answers UNIMPLEMENTED (the generated base's default), never a
made-up success. The payment issue fills it in: proto → command → handler → proto over the payments
repository with its append-only event table, the PSP client, the status cache and the reconciler.
"""

from __future__ import annotations

from shop.payment.v1 import payment_service_pb2 as pb
from shop.payment.v1 import payment_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PaymentService"].full_name


class PaymentServicer(pb_grpc.PaymentServiceServicer):
    """shop.payment.v1.PaymentService; every RPC is still the generated UNIMPLEMENTED default."""
