"""ListNotifications: one user's or one order's notifications, newest first, a page at a time.

A customer lists their own (user_id must be theirs: OWNER_MISMATCH otherwise; by order_id, only their
own notifications of that order, so another's order gives an empty list); trusted mesh callers list any.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from notification_svc.repository import Notification, NotificationStatements
from service_runtime import pagination
from service_runtime.errors import FieldViolation, InvalidArgument, PermissionDenied, Violations
from service_runtime.identity import current_caller, require_customer
from service_runtime.sql import UnitOfWork
from service_runtime.validation import ID_PATTERN, check_id


@dataclass(frozen=True)
class NotificationPage:
    notifications: list[Notification]
    next_page_token: str


class NotificationViews:
    def __init__(self, work: UnitOfWork[NotificationStatements], page_tokens: pagination.PageTokens) -> None:
        self._work = work
        self._page_tokens = page_tokens

    async def list_notifications(
        self, user_id: str | None, order_id: str | None, page_size: int, page_token: str
    ) -> NotificationPage:
        caller = current_caller()
        if not caller.trusted:
            caller = require_customer()
        v = Violations()
        if (user_id is None) == (order_id is None):
            v.add("filter", "set exactly one of user_id and order_id")
        if user_id is not None:
            check_id(v, user_id, "user_id")
        if order_id is not None:
            check_id(v, order_id, "order_id")
        v.raise_if_any()
        limit = pagination.page_size(page_size)
        if user_id is not None and not caller.trusted and caller.owner != f"user:{user_id}":
            raise PermissionDenied(
                "customers list only their own notifications", reason="OWNER_MISMATCH", metadata={"userId": user_id}
            )
        if order_id is not None and not caller.trusted:
            # only the caller's own notifications of that order: another's order lists as empty
            user_id = caller.subject if caller.owner.startswith("user:") else "-"
        query = {"userId": user_id, "orderId": order_id}
        after = _position(self._page_tokens.read(page_token, query))
        found = await self._work.read(lambda tx: tx.list_notifications(user_id, order_id, after, limit + 1))
        token = ""
        if len(found) > limit:
            found = found[:limit]
            last = found[-1]
            token = self._page_tokens.issue([last.created_at.isoformat(), last.notification_id], query)
        return NotificationPage(found, token)


def _position(raw: object) -> tuple[datetime, str] | None:
    if raw is None:
        return None
    try:
        assert isinstance(raw, list) and len(raw) == 2
        moment, notification_id = datetime.fromisoformat(raw[0]), raw[1]
        assert isinstance(notification_id, str) and ID_PATTERN.fullmatch(notification_id)
    except (AssertionError, TypeError, ValueError):
        raise InvalidArgument([FieldViolation("page_token", "is not a token this service issued")]) from None
    return moment, notification_id
