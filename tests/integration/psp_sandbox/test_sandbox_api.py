"""The sandbox PSP over HTTP, as its own process against its own schema: outcomes, idempotency, ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.psp import Psp, start_psp


@pytest.fixture
async def psp(database_url: str) -> AsyncIterator[Psp]:
    sandbox = await start_psp(database_url, PSP_HANG_SECONDS="1")
    yield sandbox
    await sandbox.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str
) -> tuple[int, dict[str, Any], str]:
    async with http.post(url, json=body, headers={"Idempotency-Key": key}) as response:
        return response.status, await response.json(), response.headers.get("Idempotent-Replayed", "")


async def test_an_approved_authorization_carries_the_card_summary_and_is_in_the_ledger(psp: Psp, http) -> None:
    status, body, replayed = await post(
        http, f"{psp.base_url}/v1/authorizations", {"amount_minor": 1250, "currency": "USD", "token": "tok_visa"}, "k1"
    )
    assert status == 201 and replayed == "false"
    assert body["status"] == "authorized"
    assert body["card"] == {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034, "funding": "credit"}
    assert [row["authorization_id"] for row in await psp.authorizations()] == [body["id"]]


async def test_a_replay_returns_the_first_answer_and_another_body_is_refused(psp: Psp, http) -> None:
    url = f"{psp.base_url}/v1/authorizations"
    request = {"amount_minor": 100, "currency": "USD", "token": "tok_visa"}
    first = await post(http, url, request, "same")
    second = await post(http, url, request, "same")
    assert second[0] == first[0] and second[1] == first[1] and second[2] == "true"
    other = await post(http, url, {**request, "amount_minor": 101}, "same")
    assert other[0] == 422 and other[1]["error"]["code"] == "idempotency_key_reused"
    assert len(await psp.authorizations()) == 1


async def test_a_concurrent_duplicate_is_409_and_one_authorization_exists(psp: Psp, http) -> None:
    url = f"{psp.base_url}/v1/authorizations"
    request = {"amount_minor": 100, "currency": "USD", "token": "tok_slow_300"}
    answers = await asyncio.gather(*(post(http, url, request, "dup") for _ in range(5)))
    statuses = sorted(answer[0] for answer in answers)
    assert statuses.count(201) == 1 and statuses.count(409) == 4
    assert len(await psp.authorizations()) == 1


async def test_concurrent_duplicates_never_take_over_a_claim_that_is_still_being_made(psp: Psp, http) -> None:
    """A claim that a request of the sandbox is still making or running is never taken over by a duplicate
    (only an abandoned one is): 30 keys, 8 copies of each at once, one authorization per key."""
    url = f"{psp.base_url}/v1/authorizations"
    request = {"amount_minor": 100, "currency": "USD", "token": "tok_visa"}
    keys = [f"burst-{n}" for n in range(30)]
    answers = await asyncio.gather(*(post(http, url, request, key) for key in keys for _ in range(8)))
    assert {answer[0] for answer in answers} <= {201, 409}, answers
    authorizations = await psp.authorizations()
    assert len(authorizations) == len(keys), len(authorizations)


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [
        ("tok_decline_insufficient_funds", "insufficient_funds"),
        ("tok_decline_expired_card", "expired_card"),
        ("tok_decline_incorrect_cvc", "incorrect_cvc"),
        ("tok_decline_fraud", "fraudulent"),
        ("tok_decline_generic", "generic_decline"),
        ("tok_nonsense", "invalid_token"),
    ],
)
async def test_decline_tokens_answer_402_and_hold_nothing(psp: Psp, http, token: str, decline_code: str) -> None:
    status, body, _ = await post(
        http, f"{psp.base_url}/v1/authorizations", {"amount_minor": 100, "currency": "USD", "token": token}, "d"
    )
    assert status == 402 and body["error"]["decline_code"] == decline_code
    assert await psp.authorizations() == []


async def test_server_error_is_not_recorded_so_a_retry_runs_again(psp: Psp, http) -> None:
    request = {"amount_minor": 100, "currency": "USD", "token": "tok_psp_error"}
    for _ in range(2):
        status, _, _ = await post(http, f"{psp.base_url}/v1/authorizations", request, "e")
        assert status == 500
    assert await psp.operations() == []


async def test_drop_processes_then_closes_the_connection_and_the_lookup_finds_it(psp: Psp, http) -> None:
    with pytest.raises(aiohttp.ClientError):
        await post(
            http,
            f"{psp.base_url}/v1/authorizations",
            {"amount_minor": 100, "currency": "USD", "token": "tok_drop"},
            "x",
        )
    async with http.get(f"{psp.base_url}/v1/operations", params={"idempotency_key": "x"}) as response:
        found = await response.json()
    assert found["state"] == "done" and found["http_status"] == 201
    assert [row["authorization_id"] for row in await psp.authorizations()] == [found["response"]["id"]]


async def test_a_fenced_key_refuses_the_late_request(psp: Psp, http) -> None:
    async with http.post(f"{psp.base_url}/v1/operations/fence", headers={"Idempotency-Key": "late"}) as response:
        assert (await response.json())["state"] == "fenced"
    status, body, _ = await post(
        http, f"{psp.base_url}/v1/authorizations", {"amount_minor": 100, "currency": "USD", "token": "tok_visa"}, "late"
    )
    assert status == 409 and body["error"]["code"] == "idempotency_key_fenced"
    assert await psp.authorizations() == []


async def test_capture_partial_then_refunds_up_to_the_capture(psp: Psp, http) -> None:
    _, auth, _ = await post(
        http, f"{psp.base_url}/v1/authorizations", {"amount_minor": 1000, "currency": "USD", "token": "tok_visa"}, "a"
    )
    status, captured, _ = await post(
        http, f"{psp.base_url}/v1/authorizations/{auth['id']}/capture", {"amount_minor": 600}, "c"
    )
    assert status == 200 and captured["captured_minor"] == 600
    status, _, _ = await post(
        http, f"{psp.base_url}/v1/refunds", {"authorization": auth["id"], "amount_minor": 400}, "r1"
    )
    assert status == 201
    status, body, _ = await post(
        http, f"{psp.base_url}/v1/refunds", {"authorization": auth["id"], "amount_minor": 201}, "r2"
    )
    assert status == 400 and body["error"]["code"] == "amount_too_large"
    assert sum(row["amount_minor"] for row in await psp.refunds()) == 400
    status, body, _ = await post(http, f"{psp.base_url}/v1/authorizations/{auth['id']}/void", {}, "v")
    assert status == 409


async def test_an_authorization_lapses_and_cannot_be_captured(psp: Psp, http) -> None:
    _, auth, _ = await post(
        http, f"{psp.base_url}/v1/authorizations", {"amount_minor": 100, "currency": "USD", "token": "tok_lapse_1"}, "a"
    )
    await asyncio.sleep(1.2)
    status, body, _ = await post(http, f"{psp.base_url}/v1/authorizations/{auth['id']}/capture", {}, "c")
    assert status == 402 and body["error"]["code"] == "authorization_expired"


async def test_the_fault_switch_fails_or_drops_every_token_until_cleared(psp: Psp, http) -> None:
    faults = f"{psp.base_url}/v1/sandbox/faults"
    visa = {"amount_minor": 100, "currency": "USD", "token": "tok_visa"}
    async with http.put(faults, json={"error_rate": 1}) as response:
        assert response.status == 200 and (await response.json())["error_rate"] == 1.0
    status, _, _ = await post(http, f"{psp.base_url}/v1/authorizations", visa, "fault-error")
    assert status == 500
    assert await psp.operations() == []  # a 5xx is never recorded

    async with http.put(faults, json={"drop_rate": 1}) as response:
        assert response.status == 200
    with pytest.raises(aiohttp.ClientError):
        await post(http, f"{psp.base_url}/v1/authorizations", visa, "fault-drop")
    async with http.get(f"{psp.base_url}/v1/operations", params={"idempotency_key": "fault-drop"}) as response:
        assert (await response.json())["http_status"] == 201  # processed, then the answer was lost

    async with http.put(faults, json={}) as response:
        assert await response.json() == {"delay_ms": 0, "error_rate": 0.0, "drop_rate": 0.0}
    status, _, replayed = await post(http, f"{psp.base_url}/v1/authorizations", visa, "fault-drop")
    assert (status, replayed) == (201, "true")
    assert len(await psp.authorizations()) == 1


async def test_the_fault_switch_refuses_bad_settings(psp: Psp, http) -> None:
    for bad in ({"error_rate": 2}, {"delay_ms": -1}, {"drop": 1}, {"delay_ms": True}):
        async with http.put(f"{psp.base_url}/v1/sandbox/faults", json=bad) as response:
            assert response.status == 400, bad
    async with http.get(f"{psp.base_url}/v1/sandbox/faults") as response:
        assert await response.json() == {"delay_ms": 0, "error_rate": 0.0, "drop_rate": 0.0}


async def test_a_key_left_in_progress_by_a_killed_sandbox_is_taken_over_by_the_retry(database_url: str, http) -> None:
    """Found by the fault drill: a sandbox that died (or lost its database) mid-request left the key
    in progress for good, so every retry was 409 and the payment could never settle."""
    request = {"amount_minor": 100, "currency": "USD", "token": "tok_hang"}
    first = await start_psp(database_url, PSP_HANG_SECONDS="30")
    try:
        pending = asyncio.ensure_future(post(http, f"{first.base_url}/v1/authorizations", request, "crash"))
        for _ in range(100):  # the claim is committed before the (held) work starts
            if await first.operations():
                break
            await asyncio.sleep(0.05)
        assert [op["state"] for op in await first.operations()] == ["in_progress"]
        first.process.kill()
        await first.process.wait()
        with pytest.raises(aiohttp.ClientError):
            await pending
    finally:
        await first.stop()

    second = await start_psp(database_url, PSP_HANG_SECONDS="0")
    try:
        status, body, replayed = await post(http, f"{second.base_url}/v1/authorizations", request, "crash")
        assert (status, replayed) == (201, "false")
        again = await post(http, f"{second.base_url}/v1/authorizations", request, "crash")
        assert again[0] == 201 and again[1]["id"] == body["id"] and again[2] == "true"
        assert [row["authorization_id"] for row in await second.authorizations()] == [body["id"]]
        other = await post(http, f"{second.base_url}/v1/authorizations", {**request, "amount_minor": 5}, "crash")
        assert other[0] == 422
    finally:
        await second.stop()
