"""Composition root: settings → database → statements → PSP client → use cases, views, cache → servicer,
with the reconciler as a background worker in every replica.

`python -m payment_svc` serves; `python -m payment_svc migrate` applies migrations and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from payment_svc.handlers import PaymentHandlers
from payment_svc.psp import PspClient
from payment_svc.reconciler import Reconciler
from payment_svc.repository import PaymentStatements
from payment_svc.servicer import SERVICE_NAME, PaymentServicer
from payment_svc.settings import PaymentSettings
from payment_svc.status_cache import PaymentStatusCache
from payment_svc.views import PaymentViews
from service_runtime.cli import run_service
from service_runtime.pagination import PageTokens
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from service_runtime.sql import UnitOfWork
from shop.payment.v1 import payment_service_pb2_grpc


def assemble(settings: PaymentSettings, infrastructure: Infrastructure) -> Assembly:
    work = UnitOfWork(infrastructure.database, PaymentStatements)
    client = PspClient(settings.psp_base_url, timeout_seconds=settings.psp_timeout_seconds)
    handlers = PaymentHandlers(
        work,
        client,
        authorization_ttl_seconds=settings.authorization_ttl_seconds,
        reconcile_after_seconds=settings.reconcile_after_seconds,
    )
    views = PaymentViews(work, PageTokens(settings.common.page_token_secret, purpose="payment.ListPayments"))
    cache = PaymentStatusCache(
        infrastructure.redis, infrastructure.keys.child("payment"), ttl_seconds=settings.cache_ttl_seconds
    )
    reconciler = Reconciler(
        work,
        handlers,
        client,
        interval_seconds=settings.reconcile_interval_seconds,
        lease_seconds=max(settings.psp_timeout_seconds * 2, 1.0),
        batch_size=settings.reconcile_batch_size,
    )
    return Assembly.of(
        payment_service_pb2_grpc.add_PaymentServiceServicer_to_server,
        PaymentServicer(handlers, views, cache),
        SERVICE_NAME,
        background=[reconciler.run],
    )


SPEC = ServiceSpec(
    name="payment",
    schema="payment",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=PaymentSettings.from_environ,
    assemble=assemble,
    # Redis only holds the status cache of final payments; PostgreSQL is the truth.
    redis=Need.OPTIONAL,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
