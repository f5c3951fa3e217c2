"""gRPC face of the notification service: ListNotifications, proto → view → proto."""

from __future__ import annotations

from typing import Any

import grpc

from notification_svc.domain import Channel, NotificationStatus
from notification_svc.repository import Notification
from notification_svc.views import NotificationViews
from service_runtime.wire import timestamp_out
from shop.notification.v1 import notification_service_pb2 as pb
from shop.notification.v1 import notification_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NotificationService"].full_name

_CHANNEL = {Channel.EMAIL: pb.NOTIFICATION_CHANNEL_EMAIL, Channel.LOG: pb.NOTIFICATION_CHANNEL_LOG}
_STATUS = {status: pb.NotificationStatus.Value(f"NOTIFICATION_STATUS_{status.name}") for status in NotificationStatus}


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, views: NotificationViews) -> None:
        self._views = views

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        chosen = request.WhichOneof("filter")
        page = await self._views.list_notifications(
            request.user_id if chosen == "user_id" else None,
            request.order_id if chosen == "order_id" else None,
            request.page_size,
            request.page_token,
        )
        return pb.ListNotificationsResponse(
            notifications=[_out(n) for n in page.notifications], next_page_token=page.next_page_token
        )


def _out(n: Notification) -> pb.Notification:
    return pb.Notification(
        notification_id=n.notification_id,
        user_id=n.user_id,
        order_id=n.order_id or "",
        checkout_id=n.checkout_id or "",
        event_id=n.event_id,
        channel=_CHANNEL[n.channel],
        template=n.template,
        recipient=n.recipient,
        subject=n.subject,
        status=_STATUS[n.status],
        attempts=n.attempts,
        last_error=n.last_error,
        create_time=timestamp_out(n.created_at),
        update_time=timestamp_out(n.updated_at),
        send_time=timestamp_out(n.sent_at),
        next_attempt_time=timestamp_out(n.next_attempt_at),
    )
