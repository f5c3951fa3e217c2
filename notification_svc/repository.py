"""The only module of the notification service that runs SQL: one method per statement of `queries.sql`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from notification_svc.domain import Channel, NotificationStatus
from service_runtime.sql import QueryFile, Row, Statements


@dataclass(frozen=True)
class Notification:
    notification_id: str
    event_id: str
    user_id: str
    order_id: str
    channel: Channel
    template: str
    recipient: str
    subject: str
    body: str
    status: NotificationStatus
    attempts: int
    last_error: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class NewNotification:
    notification_id: str
    event_id: str
    user_id: str
    order_id: str
    channel: Channel
    template: str
    recipient: str
    subject: str
    body: str


def _notification(row: Row) -> Notification:
    return Notification(
        notification_id=row["notification_id"],
        event_id=row["event_id"],
        user_id=row["user_id"],
        order_id=row["order_id"],
        channel=Channel(row["channel"]),
        template=row["template"],
        recipient=row["recipient"],
        subject=row["subject"],
        body=row["body"],
        status=NotificationStatus(row["status"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
        next_attempt_at=row["next_attempt_at"],
    )


class NotificationStatements(Statements):
    queries = QueryFile(Path(__file__).with_name("queries.sql"))

    async def record_event(
        self, event_id: str, order_id: str, sequence: int, event_type: str, entry_id: str, payload: bytes
    ) -> bool:
        """True when the event is new to the inbox; False for a redelivery."""
        row = await self._row(
            "record_event",
            {
                "event_id": event_id,
                "order_id": order_id,
                "sequence": sequence,
                "event_type": event_type,
                "stream_entry_id": entry_id,
                "payload": payload,
            },
        )
        return row is not None

    async def insert_notification(self, new: NewNotification) -> Notification | None:
        row = await self._row(
            "insert_notification",
            {
                "notification_id": new.notification_id,
                "event_id": new.event_id,
                "user_id": new.user_id,
                "order_id": new.order_id,
                "channel": new.channel.value,
                "template": new.template,
                "recipient": new.recipient,
                "subject": new.subject,
                "body": new.body,
            },
        )
        return _notification(row) if row else None

    async def mark_sent(self, notification_id: str) -> Notification | None:
        row = await self._row("mark_sent", {"notification_id": notification_id})
        return _notification(row) if row else None

    async def mark_failed(self, notification_id: str, error: str, delay_seconds: float) -> Notification | None:
        row = await self._row(
            "mark_failed", {"notification_id": notification_id, "error": error, "delay_seconds": delay_seconds}
        )
        return _notification(row) if row else None

    async def mark_dead_lettered(self, notification_id: str, error: str) -> Notification | None:
        row = await self._row("mark_dead_lettered", {"notification_id": notification_id, "error": error})
        return _notification(row) if row else None

    async def event_payload(self, event_id: str) -> tuple[bytes, str]:
        row = await self._one("event_payload", {"event_id": event_id})
        return bytes(row["payload"]), row["event_type"]

    async def claim_due(self, lease_seconds: float, limit: int) -> list[Notification]:
        rows = await self._rows("claim_due", {"lease_seconds": lease_seconds, "limit": limit})
        return [_notification(row) for row in rows]

    async def list_notifications(
        self, user_id: str | None, order_id: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[Notification]:
        rows = await self._rows(
            "list_notifications",
            {
                "user_id": user_id,
                "order_id": order_id,
                "after_time": after[0] if after else None,
                "after_id": after[1] if after else "",
                "limit": limit,
            },
        )
        return [_notification(row) for row in rows]
