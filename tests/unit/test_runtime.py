"""The runtime's pure parts: settings parsing, named queries, status details, deadlines."""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from service_runtime import errors
from service_runtime.channels import outbound_timeout
from service_runtime.database import as_service_error
from service_runtime.migrations import MigrationError, discover
from service_runtime.settings import CommonSettings, EnvReader, SettingsError
from service_runtime.sql import load_queries
from service_runtime.status import code_of, to_status


def common(environ: dict[str, str]) -> CommonSettings:
    return CommonSettings.from_env(EnvReader(environ), service_name="x", default_port=50099)


def test_defaults_are_local_and_listen_on_the_services_port():
    settings = common({})

    assert settings.listen_address == "[::]:50099"
    assert settings.database_url.startswith("postgresql://")
    assert settings.redis_key_prefix == "shop:"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DB_POOL_MAX_SIZE": "0"}, "DB_POOL_MAX_SIZE"),
        ({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"}, "DB_POOL_MAX_SIZE"),
        ({"GRPC_LISTEN_ADDRESS": "127.0.0.1:99999"}, "GRPC_LISTEN_ADDRESS"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"GRPC_SHUTDOWN_GRACE_SECONDS": "soon"}, "GRPC_SHUTDOWN_GRACE_SECONDS"),
        ({"REDIS_KEY_PREFIX": "has space"}, "REDIS_KEY_PREFIX"),
    ],
)
def test_a_bad_setting_names_its_variable(environ, variable):
    with pytest.raises(SettingsError) as raised:
        common(environ)
    assert raised.value.variable == variable
    assert str(raised.value).startswith(variable)


def test_passwords_are_not_echoed_in_setting_errors():
    with pytest.raises(SettingsError) as raised:
        EnvReader({"DATABASE_URL": "mysql://user:secret@db/x"}).url("DATABASE_URL", "", schemes=("postgresql",))
    assert "secret" not in str(raised.value)


def test_named_queries_are_split_on_their_headers(tmp_path: Path):
    path = tmp_path / "queries.sql"
    path.write_text("-- name: one\n-- first\nSELECT 1\n\n-- name: two\nSELECT 2\n")

    assert load_queries(path) == {"one": "-- first\nSELECT 1", "two": "SELECT 2"}
    path.write_text("-- name: one\nSELECT 1\n-- name: one\nSELECT 2\n")
    with pytest.raises(ValueError, match="twice"):
        load_queries(path)


def test_migration_files_must_be_numbered_without_gaps(tmp_path: Path):
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "0003_third.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        discover(tmp_path)


def test_invalid_argument_carries_field_violations_and_a_reason():
    status = to_status(
        errors.InvalidArgument([errors.FieldViolation("items[0].quantity", "must be positive")]), domain="x.shop"
    )

    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    bad_request = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "items[0].quantity"


def test_retry_hint_becomes_retry_info():
    status = to_status(errors.Aborted("busy", reason="CONFLICT", retry_after_seconds=0.25), domain="x.shop")

    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and info.reason == "CONFLICT" and info.domain == "x.shop"
    assert status.details[1].Unpack(retry) and retry.retry_delay.ToMilliseconds() == 250


def test_subclasses_map_to_their_parents_code():
    class Declined(errors.FailedPrecondition):
        pass

    assert code_of(Declined("no", reason="DECLINED")) == grpc.StatusCode.FAILED_PRECONDITION


class _Inbound:
    """Stands in for an inbound call's context: only its remaining time matters here."""

    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining

    def time_remaining(self) -> float | None:
        return self._remaining


def test_outbound_timeout_is_capped_and_follows_the_inbound_deadline():
    assert outbound_timeout(_Inbound(None), cap=2.0) == 2.0
    assert outbound_timeout(_Inbound(1e12), cap=2.0) == 2.0  # grpc's "no deadline"
    assert outbound_timeout(_Inbound(0.5), cap=2.0) == pytest.approx(0.48)
    with pytest.raises(errors.DeadlineExceeded):
        outbound_timeout(_Inbound(0.01), cap=2.0)


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (pg_errors.DeadlockDetected("deadlock"), grpc.StatusCode.ABORTED, "CONFLICT"),
        (pg_errors.SerializationFailure("serialization"), grpc.StatusCode.ABORTED, "CONFLICT"),
        (pg_errors.QueryCanceled("statement timeout"), grpc.StatusCode.UNAVAILABLE, "DATABASE_TIMEOUT"),
        (psycopg.OperationalError("connection refused"), grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE"),
        (PoolTimeout("no connection"), grpc.StatusCode.UNAVAILABLE, "DATABASE_BUSY"),
    ],
)
def test_database_failures_become_retryable_statuses_with_a_retry_hint(error, code, reason):
    translated = as_service_error(error)

    assert translated is not None
    assert (code_of(translated), translated.reason) == (code, reason)
    assert translated.retry_after_seconds and translated.retry_after_seconds > 0


def test_other_exceptions_are_not_translated():
    assert as_service_error(ValueError("a bug")) is None
    assert as_service_error(pg_errors.UndefinedTable("a bug too")) is None


def test_redis_spans_name_a_unix_socket_by_its_path_and_a_tcp_server_by_host_and_port():
    import redis.asyncio as redis

    from service_runtime.telemetry import redis_attributes

    unix = redis.Redis(unix_socket_path="/run/redis/redis.sock", db=2)
    tcp = redis.Redis.from_url("redis://cache.internal:6380/0")
    assert redis_attributes(unix) == {
        "db.system": "redis",
        "db.namespace": "2",
        "server.address": "/run/redis/redis.sock",
    }
    assert redis_attributes(tcp) == {
        "db.system": "redis",
        "db.namespace": "0",
        "server.address": "cache.internal",
        "server.port": 6380,
    }


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("", True),
        ("ada@example.com", True),
        ("a.b+tag@sub.example.co.uk", True),
        ("not-an-email", False),
        ("@example.com", False),
        ("ada@", False),
        ("a@b@c", False),
        ("ada @example.com", False),
        ("eve@example.com\r\nBcc: everyone@example.com", False),
        ("eve@example.com\n", False),
        ("eve@exa\x00mple.com", False),
        ("eve@exa\x7fmple.com", False),
        ("a" * 250 + "@b.c", True),  # 254 characters, the most
        ("a" * 251 + "@b.c", False),
    ],
)
def test_an_email_address_is_one_at_sign_and_no_whitespace_or_control_characters(value, accepted):
    from service_runtime.errors import InvalidArgument, Violations
    from service_runtime.validation import check_email

    violations = Violations()
    check_email(violations, value, "customer_email")
    if accepted:
        violations.raise_if_any()
    else:
        with pytest.raises(InvalidArgument):
            violations.raise_if_any()
