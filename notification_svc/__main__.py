"""Composition root: settings → database → statements → senders, consumer, retry worker, views → server.

`python -m notification_svc` serves; `python -m notification_svc migrate` applies migrations and exits.
The event consumer and the retry worker run as background workers of every replica.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from notification_svc.consumer import (
    ConsumerSettings,
    Dispatcher,
    EventConsumer,
    RetryWorker,
    decode_checkout_event,
)
from notification_svc.domain import Channel
from notification_svc.repository import NotificationStatements
from notification_svc.senders import LogSender, Sender, SmtpSender
from notification_svc.servicer import SERVICE_NAME, NotificationServicer
from notification_svc.settings import NotificationSettings
from notification_svc.views import NotificationViews
from service_runtime.cli import run_service
from service_runtime.events import open_bus
from service_runtime.pagination import PageTokens
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shop.notification.v1 import notification_service_pb2_grpc


def assemble(settings: NotificationSettings, infrastructure: Infrastructure) -> Assembly:
    work = UnitOfWork(infrastructure.database, NotificationStatements)
    bus = open_bus(settings.bus, infrastructure.redis, infrastructure.keys)
    log_sender = LogSender()
    email: Sender = (
        SmtpSender(settings.smtp_host, settings.smtp_port, settings.smtp_from)
        if settings.sender == "smtp"
        else log_sender
    )
    consumer_settings = ConsumerSettings(
        topic=settings.events_stream,
        group=settings.consumer_group,
        name=settings.consumer_name,
        dead_letter_topic=settings.dead_letter_stream,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        lease_seconds=settings.lease_seconds,
    )
    dispatcher = Dispatcher(work, {Channel.EMAIL: email, Channel.LOG: log_sender}, bus.publisher(), consumer_settings)
    consumer = EventConsumer(work, bus, dispatcher, consumer_settings)
    checkout_consumer = EventConsumer(
        work,
        bus,
        dispatcher,
        dataclasses.replace(consumer_settings, topic=settings.checkout_events_stream),
        decoder=decode_checkout_event,
    )
    retry = RetryWorker(work, dispatcher, consumer_settings)
    views = NotificationViews(work, PageTokens(settings.common.page_token_secret, purpose="notification.List"))
    return Assembly.of(
        notification_service_pb2_grpc.add_NotificationServiceServicer_to_server,
        NotificationServicer(views),
        SERVICE_NAME,
        background=[consumer.run, checkout_consumer.run, retry.run],
    )


SPEC = ServiceSpec(
    name="notification",
    schema="notification",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=NotificationSettings.from_environ,
    assemble=assemble,
    # the event consumer waits for Redis; ListNotifications reads PostgreSQL.
    redis=Need.OPTIONAL,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
