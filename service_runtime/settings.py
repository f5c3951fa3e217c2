"""Settings from environment variables, validated at start.

Each service declares one frozen dataclass of its own settings; it reads them through `EnvReader`,
which raises `SettingsError` naming the variable for a missing or bad value. The host prints that
one line and exits non-zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service_runtime.identity import IdentityConfig
from service_runtime.tls import MutualTls

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The page-token key when PAGE_TOKEN_SECRET is unset: fine on a laptop, public knowledge everywhere
#: else (anyone could forge a token). Deployments set their own (k8s: the shop-secrets Secret).
DEVELOPMENT_PAGE_TOKEN_SECRET = "development-only-page-token-secret"
#: Likewise the end-user JWT key (HS256) and the mesh's service-token secret when unset: `make up` and
#: the tests mint tokens with them; every deployment sets its own (k8s: shop-checkout-secrets).
#: GRPC_MAX_CONCURRENT_STREAMS: streams one client connection may have open on a server at once.
DEFAULT_MAX_CONCURRENT_STREAMS = 4096
DEVELOPMENT_JWT_KEY = "development-only-jwt-signing-key-not-for-production"
DEVELOPMENT_SERVICE_TOKEN_SECRET = "development-only-service-token-secret-not-for-production"


class SettingsError(Exception):
    """A setting is missing or malformed. The message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class EnvReader:
    """Typed, validated access to an environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str | None = None, *, pattern: str | None = None) -> str:
        value = self._raw(name)
        if value is None:
            if default is None:
                raise SettingsError(name, "is required but not set")
            return default
        if pattern is not None and not re.fullmatch(pattern, value):
            raise SettingsError(name, f"{value!r} does not match {pattern}")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, f"{value!r} is not an integer") from None
        if not minimum <= number <= maximum:
            raise SettingsError(name, f"{number} is outside {minimum}..{maximum}")
        return number

    def seconds(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, f"{value!r} is not a number of seconds") from None
        if not minimum <= number <= maximum:
            raise SettingsError(name, f"{number} is outside {minimum}..{maximum} seconds")
        return number

    def url(self, name: str, default: str, *, schemes: tuple[str, ...]) -> str:
        value = self._raw(name) or default
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.hostname or parts.path or parts.query):
            raise SettingsError(name, f"{_redact(value)!r} is not a {'/'.join(schemes)} URL")
        return value

    def address(self, name: str, default: str) -> str:
        value = self._raw(name) or default
        match = _ADDRESS.match(value)
        if not match or int(match.group(2)) > 65535:
            raise SettingsError(name, f"{value!r} is not host:port (e.g. [::]:50052 or 127.0.0.1:0)")
        return value

    def target(self, name: str, default: str) -> str:
        """A gRPC channel target such as dns:///inventory-svc:50052 or 127.0.0.1:50052."""
        value = self._raw(name) or default
        if not re.fullmatch(r"([a-z]+:(//[^/]*/)?)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}", value):
            raise SettingsError(name, f"{value!r} is not a gRPC target (e.g. dns:///inventory-svc:50052)")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self._raw(name) or default).upper()
        if value not in choices:
            raise SettingsError(name, f"{value!r} is not one of {', '.join(choices)}")
        return value


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***")
    return url


@dataclass(frozen=True)
class CommonSettings:
    """What every service reads: where to listen, where PostgreSQL and Redis are, pool and shutdown limits."""

    service_name: str
    listen_address: str
    database_url: str
    redis_url: str
    redis_key_prefix: str
    db_pool_min_size: int
    db_pool_max_size: int
    db_statement_timeout_ms: int
    shutdown_grace_seconds: float
    health_probe_interval_seconds: float
    log_level: str
    #: Signs page tokens (service_runtime.pagination); every replica of a service must share it.
    page_token_secret: bytes
    #: End-user JWT verification (service_runtime.identity): the one accepted algorithm, the keys
    #: (several during a rollover), and the issuer and audience a token must name.
    auth_jwt_algorithm: str
    auth_jwt_keys: tuple[str, ...]
    auth_jwt_issuer: str
    auth_jwt_audience: str
    #: Signs and verifies the mesh's service tokens (trusted callers); shared by every service.
    service_token_secret: str
    #: GRPC_MAX_CONCURRENT_STREAMS (service_runtime.server): streams per client connection; more are refused.
    grpc_max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    #: Mutual TLS (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE; service_runtime.tls): None serves plaintext.
    tls: MutualTls | None = None
    #: METRICS_PORT: the HTTP port of the Prometheus /metrics endpoint (service_runtime.metrics), on the
    #: host of GRPC_LISTEN_ADDRESS; 0 picks a free port (tests); None (unset) serves no metrics.
    metrics_port: int | None = None

    @property
    def identity(self) -> IdentityConfig:
        return IdentityConfig(
            jwt_algorithm=self.auth_jwt_algorithm,
            jwt_keys=self.auth_jwt_keys,
            jwt_issuer=self.auth_jwt_issuer,
            jwt_audience=self.auth_jwt_audience,
            service_token_secret=self.service_token_secret,
            service_name=self.service_name,
            mtls=self.tls is not None,
        )

    @classmethod
    def from_env(cls, env: EnvReader, *, service_name: str, default_port: int) -> CommonSettings:
        minimum_pool = env.integer("DB_POOL_MIN_SIZE", 1, minimum=0, maximum=100)
        maximum_pool = env.integer("DB_POOL_MAX_SIZE", 10, minimum=1, maximum=200)
        if maximum_pool < minimum_pool:
            raise SettingsError("DB_POOL_MAX_SIZE", f"{maximum_pool} is below DB_POOL_MIN_SIZE ({minimum_pool})")
        return cls(
            service_name=service_name,
            listen_address=env.address("GRPC_LISTEN_ADDRESS", f"[::]:{default_port}"),
            database_url=env.url(
                "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop", schemes=("postgresql", "postgres")
            ),
            redis_url=env.url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes=("redis", "rediss", "unix")),
            redis_key_prefix=env.text("REDIS_KEY_PREFIX", "shop:", pattern=r"[A-Za-z0-9:_\-.]{1,64}"),
            db_pool_min_size=minimum_pool,
            db_pool_max_size=maximum_pool,
            db_statement_timeout_ms=env.integer("DB_STATEMENT_TIMEOUT_MS", 5000, minimum=100, maximum=600_000),
            shutdown_grace_seconds=env.seconds("GRPC_SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0.0, maximum=300.0),
            health_probe_interval_seconds=env.seconds("HEALTH_PROBE_INTERVAL_SECONDS", 5.0, minimum=0.1, maximum=300.0),
            log_level=env.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
            page_token_secret=env.text(
                "PAGE_TOKEN_SECRET", DEVELOPMENT_PAGE_TOKEN_SECRET, pattern=r"[\x21-\x7e]{16,256}"
            ).encode(),
            auth_jwt_algorithm=env.choice("AUTH_JWT_ALGORITHM", "HS256", ("HS256", "RS256", "ES256")),
            auth_jwt_keys=_jwt_keys(env.text("AUTH_JWT_KEYS", DEVELOPMENT_JWT_KEY)),
            auth_jwt_issuer=env.text("AUTH_JWT_ISSUER", "shop-dev", pattern=r"[\x21-\x7e]{1,200}"),
            auth_jwt_audience=env.text("AUTH_JWT_AUDIENCE", "shop-checkout", pattern=r"[\x21-\x7e]{1,200}"),
            service_token_secret=env.text(
                "SERVICE_TOKEN_SECRET", DEVELOPMENT_SERVICE_TOKEN_SECRET, pattern=r"[\x21-\x7e]{32,256}"
            ),
            metrics_port=_unset_is_none(env.integer("METRICS_PORT", -1, minimum=0, maximum=65535)),
            tls=_mutual_tls(env),
            grpc_max_concurrent_streams=env.integer(
                "GRPC_MAX_CONCURRENT_STREAMS", DEFAULT_MAX_CONCURRENT_STREAMS, minimum=16, maximum=1_000_000
            ),
        )


def _unset_is_none(port: int) -> int | None:
    return None if port < 0 else port


_TLS_FILES = ("TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE")


def _mutual_tls(env: EnvReader) -> MutualTls | None:
    """TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE, read now: None when none is set, all three or none."""
    paths = {name: env.text(name, "") for name in _TLS_FILES}
    if not any(paths.values()):
        return None
    contents: dict[str, bytes] = {}
    for name, path in paths.items():
        if not path:
            others = " and ".join(other for other in _TLS_FILES if other != name)
            raise SettingsError(name, f"is required when {others} are set (mutual TLS needs all three)")
        try:
            contents[name] = Path(path).read_bytes()
        except OSError as error:
            raise SettingsError(name, f"cannot read {path}: {error.strerror}") from None
        if b"-----BEGIN " not in contents[name]:
            raise SettingsError(name, f"{path} is not a PEM file")
    return MutualTls(contents["TLS_CERT_FILE"], contents["TLS_KEY_FILE"], contents["TLS_CA_FILE"])


_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


def _jwt_keys(value: str) -> tuple[str, ...]:
    """AUTH_JWT_KEYS: concatenated PEM public keys (RS256/ES256), or comma-separated shared secrets (HS256)."""
    pems = _PEM_BLOCK.findall(value)
    keys = tuple(pems) if pems else tuple(key.strip() for key in value.split(",") if key.strip())
    if not keys:
        raise SettingsError("AUTH_JWT_KEYS", "names no key")
    return keys
