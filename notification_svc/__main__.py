"""Composition root: settings → servicer → server.

`python -m notification_svc` serves; `python -m notification_svc migrate` applies migrations and exits.
The event consumer, senders and notifications repository are wired here by the issue that builds them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from notification_svc.servicer import SERVICE_NAME, NotificationServicer
from notification_svc.settings import NotificationSettings
from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from shop.notification.v1 import notification_service_pb2_grpc


def assemble(settings: NotificationSettings, infrastructure: Infrastructure) -> Assembly:
    # The generated stub marks every RPC abstract and none is built yet (the notification issue builds them);
    # warn_unused_ignores flags this ignore once they are.
    servicer = NotificationServicer()  # type: ignore[abstract]

    return Assembly.of(notification_service_pb2_grpc.add_NotificationServiceServicer_to_server, servicer, SERVICE_NAME)


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
