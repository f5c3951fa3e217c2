"""Gateway settings, read from the environment once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.events.bus import BusConfig
from service_runtime.events.settings import bus_config
from service_runtime.settings import CommonSettings, EnvReader

DEFAULT_PORT = 50050


@dataclass(frozen=True)
class Hop:
    """A downstream service: where it is, and the longest deadline one call to it may get."""

    #: <SERVICE>_TARGET: gRPC target, e.g. dns:///cart-svc:50051.
    target: str
    #: <SERVICE>_DEADLINE_SECONDS: cap on one call's deadline; less when the caller's own deadline leaves less.
    deadline_seconds: float


def _hop(env: EnvReader, service: str, default_port: int, default_deadline: float) -> Hop:
    return Hop(
        target=env.target(f"{service}_TARGET", f"127.0.0.1:{default_port}"),
        deadline_seconds=env.seconds(f"{service}_DEADLINE_SECONDS", default_deadline, minimum=0.05, maximum=60.0),
    )


@dataclass(frozen=True)
class GatewaySettings:
    common: CommonSettings
    cart: Hop
    inventory: Hop
    #: Authorization and capture wait for the PSP, so the payment hop gets the longest cap.
    payment: Hop
    order: Hop
    shipping: Hop
    #: RESERVATION_TTL_SECONDS (900): how long StartCheckout holds the stock.
    reservation_ttl_seconds: int
    #: RESERVATION_EXTEND_SECONDS (900): the reservation's lifetime from the saga's extend step on.
    reservation_extend_seconds: int
    #: SAGA_LEASE_SECONDS (10): a replica's hold on a running saga; renewed every third of it while it runs.
    lease_seconds: float
    #: SAGA_RECOVERY_INTERVAL_SECONDS (1): how often the recovery worker looks for lapsed leases and quotes.
    recovery_interval_seconds: float
    #: SAGA_RECOVERY_BATCH_SIZE (50): sagas claimed per pass.
    recovery_batch_size: int
    #: SAGA_STEP_MAX_ATTEMPTS (8): calls of one step (transport failures) before the saga gives up on it.
    step_max_attempts: int
    #: SAGA_COMPENSATION_MAX_ATTEMPTS (20): calls of one undo before the checkout ends FAILED.
    compensation_max_attempts: int
    #: SAGA_BACKOFF_INITIAL_SECONDS (0.1) and SAGA_BACKOFF_MAX_SECONDS (5): retry backoff of steps and undos.
    backoff_initial_seconds: float
    backoff_max_seconds: float
    #: PLACE_ORDER_WAIT_SECONDS (20): how long PlaceOrder waits for the saga when the call has no deadline.
    place_wait_seconds: float
    #: IDEMPOTENCY_HOLD_SECONDS (30): how long a first request holds its key before a crash lets it go.
    idempotency_hold_seconds: float
    #: RATE_LIMIT_CAPACITY (30) and RATE_LIMIT_PER_SECOND (5): each user's bucket of checkout calls;
    #: reads (GetCheckout) get four times both.
    rate_limit_capacity: int
    rate_limit_per_second: float
    #: EVENT_BUS, KAFKA_BOOTSTRAP_SERVERS: where checkout events go (service_runtime.events).
    bus: BusConfig
    #: GATEWAY_EVENTS_STREAM (shop.gateway.v1.events): the topic of checkout events (CheckoutExpired).
    events_stream: str
    #: GATEWAY_FAILPOINT: "before:<step>" or "after:<step>" ends the process at that point of a saga
    #: (crash-recovery tests only; empty in production).
    failpoint: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GatewaySettings:
        env = EnvReader(environ)
        return cls(
            common=CommonSettings.from_env(env, service_name="gateway", default_port=DEFAULT_PORT),
            cart=_hop(env, "CART", 50051, 2.0),
            inventory=_hop(env, "INVENTORY", 50052, 2.0),
            payment=_hop(env, "PAYMENT", 50053, 10.0),
            order=_hop(env, "ORDER", 50054, 2.0),
            shipping=_hop(env, "SHIPPING", 50055, 2.0),
            reservation_ttl_seconds=env.integer("RESERVATION_TTL_SECONDS", 900, minimum=1, maximum=86_400),
            reservation_extend_seconds=env.integer("RESERVATION_EXTEND_SECONDS", 900, minimum=1, maximum=86_400),
            lease_seconds=env.seconds("SAGA_LEASE_SECONDS", 10.0, minimum=0.3, maximum=600.0),
            recovery_interval_seconds=env.seconds("SAGA_RECOVERY_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=600.0),
            recovery_batch_size=env.integer("SAGA_RECOVERY_BATCH_SIZE", 50, minimum=1, maximum=10_000),
            step_max_attempts=env.integer("SAGA_STEP_MAX_ATTEMPTS", 8, minimum=1, maximum=1000),
            compensation_max_attempts=env.integer("SAGA_COMPENSATION_MAX_ATTEMPTS", 20, minimum=1, maximum=1000),
            backoff_initial_seconds=env.seconds("SAGA_BACKOFF_INITIAL_SECONDS", 0.1, minimum=0.001, maximum=60.0),
            backoff_max_seconds=env.seconds("SAGA_BACKOFF_MAX_SECONDS", 5.0, minimum=0.001, maximum=600.0),
            place_wait_seconds=env.seconds("PLACE_ORDER_WAIT_SECONDS", 20.0, minimum=0.1, maximum=600.0),
            idempotency_hold_seconds=env.seconds("IDEMPOTENCY_HOLD_SECONDS", 30.0, minimum=1.0, maximum=3600.0),
            rate_limit_capacity=env.integer("RATE_LIMIT_CAPACITY", 30, minimum=1, maximum=1_000_000),
            rate_limit_per_second=env.seconds("RATE_LIMIT_PER_SECOND", 5.0, minimum=0.001, maximum=1_000_000.0),
            bus=bus_config(env),
            events_stream=env.text("GATEWAY_EVENTS_STREAM", "shop.gateway.v1.events", pattern=r"[A-Za-z0-9._-]{1,200}"),
            failpoint=env.text("GATEWAY_FAILPOINT", "", pattern=r"((before|after):[a-z_]+)?"),
        )
