"""Hypothesis strategies for any request message of the mesh, built from its descriptor: random, boundary
and hostile values for every field (negative, zero and huge numbers, unknown enum numbers, unicode, NUL,
emoji, over-long strings, forged page tokens, wrong currencies, unknown and real ids, duplicated and
10,000-element repeated fields), and the documented answers of every RPC read from the contracts'
comments (generated/shop/descriptors.binpb is built with its source comments)."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

import shop

DESCRIPTOR_SET = Path(shop.__file__).with_name("descriptors.binpb")
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
#: Elements in the largest repeated field a request gets: 10,000 copies of one value (a duplicate, too).
HUGE_REPEAT = 10_000

_FORGED_PAGE_TOKENS = (
    base64.urlsafe_b64encode(b'{"offset": 0, "after": "x"}').decode(),
    base64.urlsafe_b64encode(b"\x00" * 40).decode(),
    "eyJhbGciOiJub25lIn0.eyJvZmZzZXQiOjB9.",
    "!!not-base64!!",
    "a" * 4096,
)
_CURRENCIES = ("USD", "usd", "EUR", "XXX", "US", "USDD", "", "U\x00D", "💵💵💵")
_TOKENS = ("tok_visa", "tok_decline_generic", "tok_psp_error", "4242424242424242", "tok_unknown")


def _text() -> st.SearchStrategy[str]:
    # protobuf strings are UTF-8: lone surrogates cannot be sent at all, everything else can
    printable = st.text(st.characters(codec="utf-8"), max_size=40)
    return st.one_of(
        printable,
        st.sampled_from(("", " ", "\x00", "a\x00b", "🛒🔥", "Ωmega", "ＡＢＣ", "‮rtl", "' OR 1=1 --", "../../etc")),
        st.integers(1, 5_000).map(lambda size: "x" * size),
    )


@dataclass(frozen=True)
class Pool:
    """Real values to mix in, so requests reach past the first lookups: ids that exist in the mesh."""

    ids: Sequence[str] = ()


_SHORT = ("", "\x00", "🛒", "x", "Ω", "-1")


def _string(field: FieldDescriptor, pool: Pool, small: bool) -> st.SearchStrategy[str]:
    name = field.name
    if small:  # an element repeated 10,000 times: hostile but short, so the request stays a few MB
        return st.sampled_from((*_SHORT, *pool.ids))
    options: list[st.SearchStrategy[str]] = [_text()]
    if pool.ids:
        options.append(st.sampled_from(tuple(pool.ids)))
    if name.endswith("page_token"):
        options.append(st.sampled_from(_FORGED_PAGE_TOKENS))
    if name == "currency_code":
        options.append(st.sampled_from(_CURRENCIES))
    if "token" in name:
        options.append(st.sampled_from(_TOKENS))
    return st.one_of(*options)


def _integer(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted(edge for edge in {low, high, 0, 1, -1, 99, 100, 101, 200, 201, 1000, 10**9} if low <= edge <= high)
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _scalar(field: FieldDescriptor, pool: Pool, small: bool) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _string(field, pool, small)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return _integer(*INT32)
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _integer(*INT64)
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return _integer(*UINT32)
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return _integer(*UINT64)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        # proto3 enums are open: a number the contract does not name decodes and must be refused
        return st.sampled_from([*known, -1, 999, 2**31 - 1])
    raise AssertionError(f"unhandled field type {kind} of {field.full_name}")


def message_strategy(
    descriptor: Descriptor, pool: Pool, depth: int = 0, *, small: bool = False
) -> st.SearchStrategy[Message]:
    """Any message of this type: each field unset or given a hostile value (nested up to depth 3).
    `small`: an element of a 10,000-element field, whose strings are short and which repeats nothing."""
    cls = message_factory.GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None
            if depth >= 3:
                continue
            value = message_strategy(field.message_type, pool, depth + 1, small=small)
        else:
            value = _scalar(field, pool, small)
        if field.is_repeated and small:
            fields[field.name] = st.lists(value, max_size=1)
        elif field.is_repeated:
            # duplicated: the same element twice; and, at the top level only, 10,000 copies of a short one
            options: list[st.SearchStrategy[Any]] = [
                st.lists(value, max_size=4),
                value.map(lambda element: [element, element]),
            ]
            if depth == 0:
                short = (
                    message_strategy(field.message_type, pool, depth + 1, small=True)
                    if field.message_type is not None
                    else _scalar(field, pool, small=True)
                )
                options.append(short.map(lambda element: [element] * HUGE_REPEAT))
            fields[field.name] = st.one_of(*options)
        else:
            fields[field.name] = st.one_of(st.none(), value)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            value = draw(strategy)
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                target = getattr(message, name)
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    for element in value:
                        target.add().CopyFrom(element)
                else:
                    target.extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        assert message.ByteSize() < 64 * 1024 * 1024, f"{descriptor.full_name}: a generated request grew too large"
        return message

    return build()


# ---- what each RPC is documented to answer -------------------------------------------------------

_CODE_NAMES = {code.name for code in grpc.StatusCode}
_CODE = re.compile(r"\b(" + "|".join(sorted(_CODE_NAMES, key=len, reverse=True)) + r")\b")
_SERVICE_FIELD, _METHOD_FIELD = 6, 2


@dataclass(frozen=True)
class Contract:
    """The status codes an RPC's comment and its service's comment name."""

    codes: frozenset[grpc.StatusCode]
    text: str


def documented_answers() -> dict[str, Contract]:
    """Method full name ("shop.cart.v1.CartService.GetCart") → what its contract says it answers."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    contracts: dict[str, Contract] = {}
    for file in files.file:
        if not file.package.startswith("shop."):
            continue
        comments = {
            tuple(location.path): location.leading_comments
            for location in file.source_code_info.location
            if location.leading_comments
        }
        for s, service in enumerate(file.service):
            service_text = comments.get((_SERVICE_FIELD, s), "")
            for m, method in enumerate(service.method):
                text = service_text + "\n" + comments.get((_SERVICE_FIELD, s, _METHOD_FIELD, m), "")
                codes = frozenset(grpc.StatusCode[name] for name in _CODE.findall(text))
                contracts[f"{file.package}.{service.name}.{method.name}"] = Contract(codes, text)
    return contracts
