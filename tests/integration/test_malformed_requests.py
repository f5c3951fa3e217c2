"""Bytes that do not decode as the method's request message are INVALID_ARGUMENT (MALFORMED_REQUEST) on
every RPC of every service, with no internal text in the answer, and nothing is written."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from google.protobuf import descriptor_pool

from tests.conftest import SERVICE_PACKAGES
from tests.integration.test_service_runtime import spec_of
from tests.rpc_errors import failure_of

#: Undecodable whatever the message: a truncated varint, an invalid tag, a length past the end, and
#: field 1 as a length-delimited value holding invalid UTF-8 (the hostile report's ReserveInventory bytes).
HOSTILE_PAYLOADS = {
    "truncated varint": b"\x08",
    "invalid tag": b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    "length past the end": b"\x0a\x7fabc",
}
INVALID_UTF8_IN_FIELD_1 = bytes.fromhex("0a05fffe534b55")
LEAKS = ("DecodeError", "Traceback", "<class", "Unexpected", "utf-8", "codec")


async def row_count(database_url: str) -> int:
    """Rows in every table of every service's schema (a refusal must write none)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        tables = await connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'public')"
        )
        total = 0
        for schema, table in await tables.fetchall():
            counted = await connection.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}.{}").format(
                    psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table)
                )
            )
            row = await counted.fetchone()
            assert row is not None
            total += row[0]
        return total


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
async def test_undecodable_bytes_are_invalid_argument_on_every_rpc(start_service, database_url, package):
    running = await start_service(spec_of(package))
    service = next(name for name in running._assembly.service_names if name.startswith("shop."))
    methods = descriptor_pool.Default().FindServiceByName(service).methods
    rows_before = await row_count(database_url)
    async with grpc.aio.insecure_channel(running.address) as channel:
        for method in methods:
            # raw bytes in, raw bytes out
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{service}/{method.name}")
            payloads = dict(HOSTILE_PAYLOADS)
            first = method.input_type.fields_by_number.get(1)
            if first is not None and first.type == first.TYPE_STRING:
                payloads["invalid UTF-8 in a string field"] = INVALID_UTF8_IN_FIELD_1
            for label, payload in payloads.items():
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call(payload, timeout=5)
                failure = failure_of(raised.value)
                where = f"{method.full_name} with {label}"
                assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, where
                assert failure.reason == "MALFORMED_REQUEST", where
                assert failure.domain == f"{running.spec.name}.shop", where
                assert method.input_type.full_name in failure.message, where
                assert not any(leak in failure.message for leak in LEAKS), (where, failure.message)
    assert await row_count(database_url) == rows_before
