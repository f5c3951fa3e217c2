"""The only module of the notification service that runs SQL: one method per statement of `queries.sql`."""

from __future__ import annotations

import binascii
import json
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

    async def record_batch(self, batch: Sequence[tuple[InboxEntry, NewNotification | None]]) -> list[Notification]:
        """Records a batch in the inbox with the notifications of its new events, in one statement; returns the
        notifications inserted (PENDING). Events already in the inbox (redeliveries) add nothing."""
        if not batch:
            return []
        document = []
        for entry, new in batch:
            item: dict[str, object] = {
                "event_id": entry.event_id,
                "order_id": entry.order_id,
                "checkout_id": entry.checkout_id,
                "sequence": entry.sequence,
                "event_type": entry.event_type,
                "entry_id": entry.entry_id,
                "payload": binascii.b2a_base64(entry.payload, newline=False).decode("ascii"),
            }
            if new is not None:
                item |= {
                    "notification_id": new.notification_id,
                    "user_id": new.user_id,
                    "channel": new.channel.value,
                    "template": new.template,
                    "recipient": new.recipient,
                    "subject": new.subject,
                    "body": new.body,
                }
            document.append(item)
        rows = await self._rows("record_batch", {"batch": json.dumps(document)})
        created = {row["notification_id"]: row["created_at"] for row in rows}
        return [
            Notification(
                notification_id=new.notification_id,
                event_id=new.event_id,
                user_id=new.user_id,
                order_id=new.order_id,
                checkout_id=new.checkout_id,
                channel=new.channel,
                template=new.template,
                recipient=new.recipient,
                subject=new.subject,
                body=new.body,
                status=NotificationStatus.PENDING,
                attempts=0,
                last_error="",
                created_at=created[new.notification_id],
                updated_at=created[new.notification_id],
                sent_at=None,
                next_attempt_at=None,
            )
            for _, new in batch
            if new is not None and new.notification_id in created
        ]

    async def mark_sent(self, notification_ids: Sequence[str]) -> None:
        if notification_ids:
            await self._rows("mark_sent", {"notification_ids": list(notification_ids)})

    async def renew_pending(self, notification_ids: Sequence[str]) -> None:
        if notification_ids:
            await self._rows("renew_pending", {"notification_ids": list(notification_ids)})

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
