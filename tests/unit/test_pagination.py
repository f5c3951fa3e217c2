"""Page sizes and page tokens as every List RPC uses them (AIP-158)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from service_runtime.errors import InvalidArgument
from service_runtime.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageTokens, page_size

TOKENS = PageTokens(b"test-secret-of-sixteen", purpose="inventory.ListProducts")
QUERY = {"inStockOnly": False}


def test_page_size_zero_means_the_default_too_large_is_clamped_and_negative_is_refused():
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
    assert page_size(10**9) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgument) as refused:
        page_size(-1)
    assert refused.value.violations[0].field == "page_size"


def test_a_token_reads_back_the_position_it_was_issued_for():
    assert TOKENS.read("", QUERY) is None
    assert TOKENS.read(TOKENS.issue("SKU-42", QUERY), QUERY) == "SKU-42"
    assert TOKENS.read(TOKENS.issue(["2026-01-01T00:00:00Z", 17], QUERY), QUERY) == ["2026-01-01T00:00:00Z", 17]


def refusal(token: str, query: Mapping[str, object] = QUERY, tokens: PageTokens = TOKENS) -> str:
    with pytest.raises(InvalidArgument) as refused:
        tokens.read(token, query)
    (violation,) = refused.value.violations
    assert violation.field == "page_token"
    return violation.description


def test_forged_altered_foreign_and_reused_tokens_are_refused_never_read():
    token = TOKENS.issue("SKU-42", QUERY)
    payload, signature = token.split(".")
    forged = TOKENS.issue("SKU-42", QUERY).replace(payload, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"))

    assert "not a token" in refusal("not-a-token")
    assert "not a token" in refusal(forged)
    assert "not a token" in refusal(f"{payload}.{signature[:-1]}")
    assert "not a token" in refusal("%%%.$$$")
    other_rpc = PageTokens(b"test-secret-of-sixteen", purpose="order.ListOrders")
    assert "not a token" in refusal(token, tokens=other_rpc)
    other_deployment = PageTokens(b"another-secret-sixteen", purpose="inventory.ListProducts")
    assert "not a token" in refusal(token, tokens=other_deployment)
    assert "different query" in refusal(token, {"inStockOnly": True})
