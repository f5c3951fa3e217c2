"""The only module of the notification service that runs SQL: one method per statement of `queries.sql`."""

from __future__ import annotations

from collections.abc import Sequence
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
    #: The order it is about, or None for a checkout's notification (then checkout_id is set).
    order_id: str | None
    checkout_id: str | None
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
class InboxEntry:
    event_id: str
    order_id: str | None
    checkout_id: str | None
    sequence: int
    event_type: str
    #: Where the event was read from the bus (Redis entry id or Kafka "<partition>-<offset>").
    entry_id: str
    payload: bytes


@dataclass(frozen=True)
class NewNotification:
    notification_id: str
    event_id: str
    user_id: str
    order_id: str | None
    checkout_id: str | None
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
        checkout_id=row["checkout_id"],
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

    async def record_events(self, received: Sequence[InboxEntry]) -> set[str]:
        """Records a batch in the inbox; returns the ids new to it (the rest are redeliveries)."""
        if not received:
            return set()
        rows = await self._rows(
            "record_events",
            {
                "event_ids": [e.event_id for e in received],
                "order_ids": [e.order_id for e in received],
                "checkout_ids": [e.checkout_id for e in received],
                "sequences": [e.sequence for e in received],
                "event_types": [e.event_type for e in received],
                "entry_ids": [e.entry_id for e in received],
                "payloads": [e.payload for e in received],
            },
        )
        return {row["event_id"] for row in rows}

    async def insert_notifications(self, new: Sequence[NewNotification]) -> list[Notification]:
        if not new:
            return []
        rows = await self._rows(
            "insert_notifications",
            {
                "notification_ids": [n.notification_id for n in new],
                "event_ids": [n.event_id for n in new],
                "user_ids": [n.user_id for n in new],
                "order_ids": [n.order_id for n in new],
                "checkout_ids": [n.checkout_id for n in new],
                "channels": [n.channel.value for n in new],
                "templates": [n.template for n in new],
                "recipients": [n.recipient for n in new],
                "subjects": [n.subject for n in new],
                "bodies": [n.body for n in new],
            },
        )
        return [_notification(row) for row in rows]

    async def mark_sent(self, notification_ids: Sequence[str]) -> None:
        if notification_ids:
            await self._rows("mark_sent", {"notification_ids": list(notification_ids)})

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
