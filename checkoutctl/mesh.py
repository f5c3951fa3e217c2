"""checkoutctl's connections to the mesh: one channel per service, a shopper's JWT for the public API
and a service token for the admin service, both signed with the keys the mesh is configured with
(the development defaults unless AUTH_JWT_KEYS / SERVICE_TOKEN_SECRET are set, exactly as the
services read them). Under `MESH_TLS=1 make up` (MESH_TLS=1 here too) the channels speak mutual TLS with
devstack's certificates: the edge client's for the shopper's calls, checkoutctl's own (a trusted mesh
workload) for the admin service's."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from checkoutctl.failures import CtlError
from checkoutctl.targets import Targets
from devstack.errors import DevstackError
from devstack.pki import MeshFiles
from devstack.settings import DevstackSettings
from service_runtime.channels import Channels
from service_runtime.identity import AUTHORIZATION, IdentityConfig, ServiceTokens, mint_customer_token
from service_runtime.settings import CommonSettings, EnvReader, SettingsError
from service_runtime.tls import MutualTls

SERVICE_NAME = "checkoutctl"
Metadata = tuple[tuple[str, str], ...]


def identity_config(environ: Mapping[str, str] = os.environ) -> IdentityConfig:
    try:
        settings = CommonSettings.from_env(EnvReader(environ), service_name=SERVICE_NAME, default_port=0)
    except SettingsError as error:
        raise CtlError(f"bad setting {error}") from None
    return settings.identity


def mesh_tls(environ: Mapping[str, str] = os.environ) -> tuple[MutualTls, MutualTls] | None:
    """With MESH_TLS=1: (the shopper's edge identity, checkoutctl's trusted identity) from the certificates
    `make up` wrote (DEVSTACK_STATE_DIR/tls); None otherwise."""
    try:
        settings = DevstackSettings.from_environ(environ)
    except DevstackError as error:
        raise CtlError(str(error)) from None
    if not settings.mesh_tls:
        return None
    files = MeshFiles(settings.tls_dir / "ca.pem")

    def identity(name: str) -> MutualTls:
        try:
            return MutualTls(files.certificate(name).read_bytes(), files.key(name).read_bytes(), files.ca.read_bytes())
        except OSError as error:
            raise CtlError(
                f"MESH_TLS=1 but no certificate for {name} in {settings.tls_dir} ({error.strerror}): "
                "start the mesh with `MESH_TLS=1 make up`"
            ) from None

    return identity("bff"), identity(SERVICE_NAME)


class Mesh:
    """Open channels to the services checkoutctl calls; `close()` when done.

    Customer calls go through channels that attach no service token (a service token would make the
    gateway see a trusted service, not the shopper); admin calls through channels that do.
    """

    def __init__(
        self,
        targets: Targets,
        identity: IdentityConfig,
        *,
        timeout_seconds: float,
        tls: tuple[MutualTls, MutualTls] | None = None,
    ) -> None:
        self.targets = targets
        self.timeout_seconds = timeout_seconds
        self._identity = identity
        edge, trusted = tls if tls is not None else (None, None)
        self._public = Channels(default_timeout_seconds=timeout_seconds, tls=edge)
        self._trusted = Channels(default_timeout_seconds=timeout_seconds, tokens=ServiceTokens(identity), tls=trusted)

    def public(self, target: str) -> grpc.aio.Channel:
        return self._public.get(target)

    def trusted(self, target: str) -> grpc.aio.Channel:
        return self._trusted.get(target)

    def as_customer(self, user_id: str) -> Metadata:
        try:
            token = mint_customer_token(self._identity, sub=user_id, lifetime_seconds=900)
        except ValueError as error:
            raise CtlError(f"cannot sign in the demo customer: {error}") from None
        return ((AUTHORIZATION, f"Bearer {token}"),)

    async def require_serving(self, names: Mapping[str, str]) -> None:
        """Each named service (name → address) answers its health check with SERVING, else a CtlError
        that says to run `make up`."""
        problems = await asyncio.gather(*(self._health(name, address) for name, address in names.items()))
        down = [problem for problem in problems if problem]
        if down:
            raise CtlError(
                "the mesh is not running: " + "; ".join(down) + ". Start it with `make up` (and wait for its table), "
                "or point checkoutctl at it with --port-base / DEVSTACK_PORT_BASE"
            )

    async def _health(self, name: str, address: str) -> str:
        """ "" when the service is SERVING, else what is wrong with it."""
        check = health_pb2_grpc.HealthStub(self._public.get(address)).Check  # type: ignore[attr-defined]
        try:
            response = await check(health_pb2.HealthCheckRequest(service=""), timeout=min(self.timeout_seconds, 3))
        except grpc.aio.AioRpcError:
            return f"{name} at {address} does not answer"
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            return f"{name} at {address} is not SERVING yet"
        return ""

    async def close(self) -> None:
        await self._public.close()
        await self._trusted.close()
