"""gRPC face of the notification service, declared before it is built.

It overrides no RPC yet, so every call answers UNIMPLEMENTED (the generated base's default), never a
made-up success. The notification issue fills it in (ListNotifications over the notifications
repository) and adds the stream consumer, template rendering and the SMTP and log senders.
"""

from __future__ import annotations

from shop.notification.v1 import notification_service_pb2 as pb
from shop.notification.v1 import notification_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotificationService"].full_name


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    """shop.notification.v1.NotificationService; every RPC is still the generated UNIMPLEMENTED default."""
