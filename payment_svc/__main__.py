"""Composition root: settings → servicer → server.

`python -m payment_svc` serves; `python -m payment_svc migrate` applies migrations and exits. The
payments repository, PSP client, status cache and reconciler are wired here by the issue that builds them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from payment_svc.servicer import SERVICE_NAME, PaymentServicer
from payment_svc.settings import PaymentSettings
from service_runtime.cli import run_service
from service_runtime.spec import Assembly, Infrastructure, Need, ServiceSpec
from shop.payment.v1 import payment_service_pb2_grpc


def assemble(settings: PaymentSettings, infrastructure: Infrastructure) -> Assembly:
    # The generated stub marks every RPC abstract and none is built yet (the payment issue builds them);
    # warn_unused_ignores flags this ignore once they are.
    servicer = PaymentServicer()  # type: ignore[abstract]

    return Assembly.of(payment_service_pb2_grpc.add_PaymentServiceServicer_to_server, servicer, SERVICE_NAME)


SPEC = ServiceSpec(
    name="payment",
    schema="payment",
    migrations=Path(__file__).with_name("migrations"),
    load_settings=PaymentSettings.from_environ,
    assemble=assemble,
    # Redis only holds the payment status cache; PostgreSQL is the truth.
    redis=Need.OPTIONAL,
)

if __name__ == "__main__":
    sys.exit(run_service(SPEC))
