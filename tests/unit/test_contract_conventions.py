"""The contracts' conventions, checked over the descriptor set with its comments (docs/contracts.md).

`generated/shop/descriptors.binpb` is a FileDescriptorSet built with --include_source_info, so it holds
every comment. Each `check_*` function takes a FileDescriptorSet and returns its violations, one string
each ("<file>: <element>: <problem>"), for the shop.* files in it:

  check_error_model         AIP-193: each service comment states the one-ErrorInfo rule, each RPC lists
                            its errors
  check_pagination          AIP-158: List* RPCs have page_size/page_token/next_page_token and say the
                            one paging convention (default 50, clamp at 200, tamper-evident tokens)
  check_name_clashes        no message or enum of a package is named like one of its RPCs
  check_time_fields         AIP-142: Timestamps are `*_time` in verb form, no `*_at`/`*_timestamp`,
                            no integer seconds, dates are google.type.Date named `*_date`
  check_field_behavior      AIP-203: comments that say Required / Output only / Immutable match the
                            field_behavior annotations, and annotated fields begin with that word
  check_banned_synonyms     one name per concept: the names that lost are used nowhere
  check_metadata_mentions   ErrorInfo metadata in comments is written metadata `key` or
                            metadata `key=VALUE`; keys are lowerCamelCase, statuses enum value names

The first group of tests runs every check on the real contracts and expects nothing. The second
compiles a deliberately broken contract (BROKEN_PROTO, below) and expects every check to report each
thing planted in it, so a check that silently passes everything would fail here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

import shop
from devstack.protogen import googleapis_root, well_known_root

FileSet = descriptor_pb2.FileDescriptorSet
FileProto = descriptor_pb2.FileDescriptorProto
FieldProto = descriptor_pb2.FieldDescriptorProto
MessageProto = descriptor_pb2.DescriptorProto

DESCRIPTOR_SET = Path(shop.__file__).with_name("descriptors.binpb")

TIMESTAMP = ".google.protobuf.Timestamp"
DURATION = ".google.protobuf.Duration"
DATE = ".google.type.Date"

REQUIRED: int = field_behavior_pb2.REQUIRED
OUTPUT_ONLY: int = field_behavior_pb2.OUTPUT_ONLY
IMMUTABLE: int = field_behavior_pb2.IMMUTABLE

# Paths into FileDescriptorProto, as used by SourceCodeInfo.Location.path (descriptor.proto).
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED = 2, 3
_SERVICE_METHOD = 2


# ---- walking a descriptor set ---------------------------------------------------------------------


def shop_files(files: FileSet) -> list[FileProto]:
    return [file for file in files.file if file.package.startswith("shop.")]


def _comments(file: FileProto) -> dict[tuple[int, ...], str]:
    """Leading comment of each element of the file, by its source path, whitespace collapsed."""
    return {
        tuple(location.path): " ".join(location.leading_comments.split())
        for location in file.source_code_info.location
        if location.leading_comments
    }


def _all_comment_text(file: FileProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """Every comment of the file (leading, trailing and detached), whitespace collapsed."""
    for location in file.source_code_info.location:
        parts = [location.leading_comments, location.trailing_comments, *location.leading_detached_comments]
        text = " ".join(" ".join(part.split()) for part in parts if part)
        if text:
            yield tuple(location.path), text


@dataclass(frozen=True)
class Message:
    file: FileProto
    full_name: str  # without the leading dot, e.g. "shop.cart.v1.Cart"
    proto: MessageProto
    path: tuple[int, ...]


@dataclass(frozen=True)
class Field:
    message: Message
    proto: FieldProto
    comment: str

    @property
    def where(self) -> str:
        return f"{self.message.file.name}: {self.message.full_name}.{self.proto.name}"


def messages(file: FileProto) -> Iterator[Message]:
    def walk(proto: MessageProto, prefix: str, path: tuple[int, ...]) -> Iterator[Message]:
        full_name = f"{prefix}.{proto.name}"
        yield Message(file, full_name, proto, path)
        for index, nested in enumerate(proto.nested_type):
            if not nested.options.map_entry:
                yield from walk(nested, full_name, (*path, _MESSAGE_NESTED, index))

    for index, proto in enumerate(file.message_type):
        yield from walk(proto, file.package, (_FILE_MESSAGE, index))


def fields(file: FileProto) -> Iterator[Field]:
    comments = _comments(file)
    for message in messages(file):
        for index, proto in enumerate(message.proto.field):
            yield Field(message, proto, comments.get((*message.path, _MESSAGE_FIELD, index), ""))


def all_fields(files: FileSet) -> Iterator[Field]:
    for file in shop_files(files):
        yield from fields(file)


def message_index(files: FileSet) -> dict[str, MessageProto]:
    """Every message of the set (imports included) by its type_name form, e.g. ".shop.cart.v1.Cart"."""
    return {f".{message.full_name}": message.proto for file in files.file for message in messages(file)}


@dataclass(frozen=True)
class Method:
    file: FileProto
    service: str
    proto: descriptor_pb2.MethodDescriptorProto
    comment: str

    @property
    def where(self) -> str:
        return f"{self.file.name}: {self.file.package}.{self.service}.{self.proto.name}"


def methods(file: FileProto) -> Iterator[Method]:
    comments = _comments(file)
    for s, service in enumerate(file.service):
        for m, method in enumerate(service.method):
            yield Method(file, service.name, method, comments.get((_FILE_SERVICE, s, _SERVICE_METHOD, m), ""))


def field_behaviors(field: FieldProto) -> set[int]:
    extensions: Any = field.options.Extensions  # the googleapis stubs type the extension as a plain FieldDescriptor
    return set(extensions[field_behavior_pb2.field_behavior])


# ---- the checks -----------------------------------------------------------------------------------


def check_error_model(files: FileSet) -> list[str]:
    """AIP-193: every service comment states the one-ErrorInfo rule and MALFORMED_REQUEST, and every RPC
    comment lists its errors ("Errors: ...")."""
    problems = []
    for file in shop_files(files):
        comments = _comments(file)
        for index, service in enumerate(file.service):
            comment = comments.get((_FILE_SERVICE, index), "")
            for phrase in ("exactly one google.rpc.ErrorInfo", "reason INVALID_ARGUMENT", "MALFORMED_REQUEST"):
                if phrase not in comment:
                    problems.append(f"{file.name}: {file.package}.{service.name}: service comment lacks {phrase!r}")
        for method in methods(file):
            if "Errors:" not in method.comment:
                problems.append(f"{method.where}: comment does not list its errors ('Errors: ...')")
    return problems


#: What every List RPC's comment must say (AIP-158, one convention for the whole mesh).
PAGINATION_PHRASES = (
    "page_size of 0 means the default of 50",
    "clamped to 200, not refused",
    "negative page_size is INVALID_ARGUMENT",
    "tamper-evident",
    "reused with different filters",
    "field violation on page_token",
    "never a wrong page",
)


def check_pagination(files: FileSet) -> list[str]:
    """AIP-158: a List* RPC takes int32 page_size and string page_token, answers string
    next_page_token, and its comment states the paging convention."""
    problems = []
    index = message_index(files)
    wanted = (
        ("request", "page_size", FieldProto.TYPE_INT32),
        ("request", "page_token", FieldProto.TYPE_STRING),
        ("response", "next_page_token", FieldProto.TYPE_STRING),
    )
    for file in shop_files(files):
        for method in methods(file):
            if not re.match(r"List[A-Z]", method.proto.name):
                continue
            sides = {"request": index[method.proto.input_type], "response": index[method.proto.output_type]}
            for side, name, type_ in wanted:
                found = next((f for f in sides[side].field if f.name == name), None)
                if found is None:
                    problems.append(f"{method.where}: {side} {sides[side].name} has no {name}")
                elif found.type != type_ or found.label == FieldProto.LABEL_REPEATED:
                    problems.append(
                        f"{method.where}: {sides[side].name}.{name} must be a single {FieldProto.Type.Name(type_)}"
                    )
            for phrase in PAGINATION_PHRASES:
                if phrase not in method.comment:
                    problems.append(f"{method.where}: comment does not say {phrase!r}")
    return problems


def check_name_clashes(files: FileSet) -> list[str]:
    """No message or enum of a package shares its name with an RPC of that package (a `rpc Checkout`
    returning a `Checkout` reads as one thing)."""
    problems = []
    by_package: dict[str, tuple[set[str], dict[str, str]]] = {}
    for file in shop_files(files):
        types, rpcs = by_package.setdefault(file.package, (set(), {}))
        types.update(m.full_name.rsplit(".", 1)[1] for m in messages(file))
        types.update(e.name for e in file.enum_type)
        rpcs.update((method.proto.name, method.where) for method in methods(file))
    for package, (types, rpcs) in sorted(by_package.items()):
        for name in sorted(types & rpcs.keys()):
            problems.append(f"{rpcs[name]}: RPC {name} has the name of a type of {package}")
    return problems


_INTEGER_TYPES = {
    FieldProto.TYPE_INT32,
    FieldProto.TYPE_INT64,
    FieldProto.TYPE_UINT32,
    FieldProto.TYPE_UINT64,
    FieldProto.TYPE_SINT32,
    FieldProto.TYPE_SINT64,
    FieldProto.TYPE_FIXED32,
    FieldProto.TYPE_FIXED64,
    FieldProto.TYPE_SFIXED32,
    FieldProto.TYPE_SFIXED64,
}
_INT_TIME_SUFFIX = re.compile(r"_(seconds|secs|ms|millis|milliseconds|micros|nanos|epoch)$")
_DATE_TEXT = re.compile(r"YYYY-MM-DD|ISO[ -]8601 date", re.IGNORECASE)


def check_time_fields(files: FileSet) -> list[str]:
    """AIP-142: instants are google.protobuf.Timestamp named `*_time` in verb form (create_time, not
    created_time); nothing is named `*_at`/`*_timestamp`; no integer counts seconds or milliseconds
    (Duration or Timestamp instead); durations are not `*_time`; calendar dates are google.type.Date
    named `*_date`, never strings."""
    problems = []
    for field in all_fields(files):
        name, type_name = field.proto.name, field.proto.type_name
        if type_name == TIMESTAMP and not name.endswith("_time"):
            problems.append(f"{field.where}: a Timestamp must be named *_time")
        if type_name == TIMESTAMP and re.search(r"ed_time$", name):
            problems.append(f"{field.where}: use the verb form (create_time, not created_time)")
        if name.endswith("_time") and type_name != TIMESTAMP:
            problems.append(f"{field.where}: *_time must be a google.protobuf.Timestamp")
        if re.search(r"(_at|_timestamp|_datetime)$", name):
            problems.append(f"{field.where}: times are Timestamps named *_time, not *_at or *_timestamp")
        if field.proto.type in _INTEGER_TYPES and _INT_TIME_SUFFIX.search(name):
            problems.append(f"{field.where}: an integer of time units; use google.protobuf.Duration or Timestamp")
        if (name.endswith("_date") or name == "date") and type_name != DATE:
            problems.append(f"{field.where}: a calendar date must be a google.type.Date")
        if type_name == DATE and not (name.endswith("_date") or name == "date"):
            problems.append(f"{field.where}: a google.type.Date must be named *_date")
        if field.proto.type == FieldProto.TYPE_STRING and _DATE_TEXT.search(field.comment):
            problems.append(f"{field.where}: a date in a string; use google.type.Date")
    return problems


_SAYS: dict[int, re.Pattern[str]] = {
    REQUIRED: re.compile(r"\brequired\b", re.IGNORECASE),
    OUTPUT_ONLY: re.compile(
        r"\boutput only\b|\bset by the (server|service)\b|\bassigned by the (server|service|gateway)\b", re.IGNORECASE
    ),
    IMMUTABLE: re.compile(r"\bimmutable\b", re.IGNORECASE),
}
#: The word a field's comment begins with when it carries the behavior.
MARKERS: dict[int, str] = {REQUIRED: "Required.", OUTPUT_ONLY: "Output only.", IMMUTABLE: "Immutable."}


def _leading_markers(comment: str) -> set[int]:
    found: set[int] = set()
    rest = comment
    while True:
        for behavior, marker in MARKERS.items():
            if rest.startswith(marker):
                found.add(behavior)
                rest = rest[len(marker) :].lstrip()
                break
        else:
            return found


def check_field_behavior(files: FileSet) -> list[str]:
    """AIP-203: a field whose comment says "required", "output only"/"set by the server"/"assigned by the
    service" or "immutable" carries that google.api.field_behavior; a field that carries one begins its
    comment with "Required.", "Output only." or "Immutable."; REQUIRED never goes with OUTPUT_ONLY, nor on
    a member of a oneof."""
    problems = []
    for field in all_fields(files):
        behaviors = field_behaviors(field.proto)
        for behavior, says in _SAYS.items():
            name = field_behavior_pb2.FieldBehavior.Name(behavior)
            if says.search(field.comment) and behavior not in behaviors:
                problems.append(f"{field.where}: the comment says {name} but the field lacks that field_behavior")
        markers = _leading_markers(field.comment)
        for behavior in sorted((behaviors & MARKERS.keys()) ^ markers):
            name = field_behavior_pb2.FieldBehavior.Name(behavior)
            if behavior in behaviors:
                problems.append(f"{field.where}: {name}, so the comment must begin with {MARKERS[behavior]!r}")
            else:
                problems.append(f"{field.where}: the comment begins {MARKERS[behavior]!r} but the field is not {name}")
        if {REQUIRED, OUTPUT_ONLY} <= behaviors:
            problems.append(f"{field.where}: REQUIRED and OUTPUT_ONLY contradict each other")
        if REQUIRED in behaviors and field.proto.HasField("oneof_index") and not field.proto.proto3_optional:
            problems.append(f"{field.where}: a oneof member cannot be REQUIRED; say so on the oneof")
    return problems


@dataclass(frozen=True)
class Synonym:
    """A field name that lost to `chosen` (docs/contracts.md says why); `allowed_in` lists the messages
    where the losing name means something else and stays."""

    banned: str
    chosen: str
    allowed_in: frozenset[str] = frozenset()


#: Field names that must not be used, and what to use instead.
BANNED_FIELD_NAMES = (
    Synonym("contact_email", "customer_email"),
    Synonym("email", "customer_email"),
    Synonym("shipping", "shipping_cost"),
    Synonym("shipping_price", "shipping_cost"),
    Synonym("method", "shipping_method"),
    # ValidateAddress checks any address, not only where a parcel goes.
    Synonym("address", "shipping_address", frozenset({"shop.shipping.v1.ValidateAddressRequest"})),
    Synonym("destination", "shipping_address"),
    Synonym("failure_time", "fail_time"),
)
#: Identifiers that must not appear anywhere, comments included (the English words "method",
#: "shipping" and "address" stay free for prose).
BANNED_IDENTIFIERS = {
    "contact_email": "customer_email",
    "failure_time": "fail_time",
    "METHOD_NOT_AVAILABLE": "SHIPPING_METHOD_NOT_AVAILABLE",
    "CheckoutRequest": "CheckoutCartRequest",
    "CheckoutResponse": "CheckoutCartResponse",
}


def check_banned_synonyms(files: FileSet) -> list[str]:
    """One name per concept: no field has a losing name, and no comment mentions a losing identifier."""
    problems = []
    for field in all_fields(files):
        for synonym in BANNED_FIELD_NAMES:
            if field.proto.name == synonym.banned and field.message.full_name not in synonym.allowed_in:
                problems.append(f"{field.where}: name it {synonym.chosen!r}, not {synonym.banned!r}")
    for file in shop_files(files):
        for message in messages(file):
            if message.proto.name in BANNED_IDENTIFIERS:
                chosen = BANNED_IDENTIFIERS[message.proto.name]
                problems.append(f"{file.name}: {message.full_name}: name it {chosen!r}")
        for path, text in _all_comment_text(file):
            for banned, chosen in BANNED_IDENTIFIERS.items():
                if re.search(rf"\b{banned}\b", text):
                    problems.append(f"{file.name}: comment at {list(path)} mentions {banned!r}; it is {chosen!r}")
    return problems


#: How comments mention ErrorInfo metadata: `metadata` then backticked keys joined by commas, "and" or
#: "or"; a key may show an example value after "=". E.g. metadata `checkoutId` and `status=CART_STATUS_MERGED`.
_METADATA_MENTION = re.compile(r"\bmetadata\s+(`[^`]*`(?:(?:\s*,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+)`[^`]*`)*)")
_METADATA_UNFORMATTED = re.compile(r"\bmetadata\s+[\"'{]")
METADATA_KEY = re.compile(r"[a-z][a-zA-Z0-9]*")


def _status_values(files: FileSet) -> set[str]:
    """Value names of every shop enum whose name ends in Status (top-level or nested)."""
    values: set[str] = set()

    def take(enums: Any) -> None:
        for enum in enums:
            if enum.name.endswith("Status"):
                values.update(value.name for value in enum.value)

    for file in shop_files(files):
        take(file.enum_type)
        for message in messages(file):
            take(message.proto.enum_type)
    return values


def check_metadata_mentions(files: FileSet) -> list[str]:
    """ErrorInfo metadata in comments is written metadata `key` (or metadata `key=VALUE` for an example):
    keys are lowerCamelCase (checkoutId, not checkout_id), a status value is an enum value name of a
    *Status enum (RESERVATION_STATUS_EXPIRED, not expired), and nothing uses another format."""
    problems = []
    statuses = _status_values(files)
    for file in shop_files(files):
        for path, text in _all_comment_text(file):
            where = f"{file.name}: comment at {list(path)}"
            for match in _METADATA_UNFORMATTED.finditer(text):
                snippet = text[match.start() : match.start() + 40]
                problems.append(f"{where}: write metadata keys in backticks (metadata `key`): {snippet!r}")
            for match in _METADATA_MENTION.finditer(text):
                for item in re.findall(r"`([^`]*)`", match.group(1)):
                    key, has_value, value = item.partition("=")
                    if not METADATA_KEY.fullmatch(key):
                        problems.append(f"{where}: metadata key {key!r} is not lowerCamelCase")
                    if has_value and (key == "status" or key.endswith("Status")) and value not in statuses:
                        problems.append(f"{where}: metadata {item!r}: a status is written as an enum value name")
    return problems


CHECKS: dict[str, Callable[[FileSet], list[str]]] = {
    "error_model": check_error_model,
    "pagination": check_pagination,
    "name_clashes": check_name_clashes,
    "time_fields": check_time_fields,
    "field_behavior": check_field_behavior,
    "banned_synonyms": check_banned_synonyms,
    "metadata_mentions": check_metadata_mentions,
}


# ---- the contracts follow the conventions ---------------------------------------------------------


@pytest.fixture(scope="module")
def contracts() -> FileSet:
    return FileSet.FromString(DESCRIPTOR_SET.read_bytes())


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_contracts_follow_the_convention(contracts, check):
    assert check(contracts) == []


def test_descriptor_set_keeps_comments_and_python_modules_do_not(contracts):
    from shop.inventory.v1 import inventory_service_pb2

    files = shop_files(contracts)
    assert files and all(file.source_code_info.location for file in files)
    assert all(any(location.leading_comments for location in file.source_code_info.location) for file in files)
    embedded = FileProto.FromString(inventory_service_pb2.DESCRIPTOR.serialized_pb)
    assert not embedded.HasField("source_code_info")


def test_checks_see_what_they_check(contracts):
    """Guards against a check passing because it saw nothing (e.g. annotations not parsed)."""
    list_rpcs = {
        m.proto.name for file in shop_files(contracts) for m in methods(file) if m.proto.name.startswith("List")
    }
    assert list_rpcs == {"ListProducts", "ListPayments", "ListOrders", "ListNotifications", "ListCheckouts"}
    counted = {b: 0 for b in MARKERS}
    for field in all_fields(contracts):
        for behavior in field_behaviors(field.proto) & MARKERS.keys():
            counted[behavior] += 1
    assert all(count >= 5 for count in counted.values()), counted
    mentions = sum(
        len(_METADATA_MENTION.findall(text)) for file in shop_files(contracts) for _, text in _all_comment_text(file)
    )
    assert mentions > 20
    assert {"RESERVATION_STATUS_EXPIRED", "CHECKOUT_STATUS_QUOTED"} <= _status_values(contracts)


def test_gateway_checkout_rpc_is_checkout_cart_on_the_cart():
    from google.api import annotations_pb2

    from shop.gateway.v1 import gateway_service_pb2

    method = gateway_service_pb2.DESCRIPTOR.services_by_name["CheckoutService"].methods_by_name["CheckoutCart"]
    options = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
    extensions: Any = options.Extensions
    rule = extensions[annotations_pb2.http]
    assert (rule.post, rule.body) == ("/v1/carts/{cart_id}:checkout", "*")
    assert method.input_type.name == "CheckoutCartRequest"
    assert method.output_type.name == "CheckoutCartResponse"


# ---- and the checks catch what breaks them --------------------------------------------------------

#: A contract that breaks every convention at least once; comments say what each line plants.
BROKEN_PROTO = """
syntax = "proto3";

package shop.broken.v1;

import "google/api/field_behavior.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/timestamp.proto";
import "google/type/date.proto";

// Widgets. Errors carry a BadRequest.
service WidgetService {
  // Lists widgets.
  rpc ListWidgets(ListWidgetsRequest) returns (ListWidgetsResponse);

  // Makes a widget.
  // Errors: FAILED_PRECONDITION (WIDGET_GONE, metadata "widget_id";
  // WIDGET_STALE, metadata `widgetId` and `status=expired`; WIDGET_LOCKED,
  // metadata `lock_owner`); see also METHOD_NOT_AVAILABLE and contact_email.
  rpc Widget(MakeWidgetRequest) returns (.shop.broken.v1.Widget);
}

// Lifecycle of a widget.
enum WidgetStatus {
  // Never returned.
  WIDGET_STATUS_UNSPECIFIED = 0;
  // Made.
  WIDGET_STATUS_MADE = 1;
}

// Request for ListWidgets.
message ListWidgetsRequest {
  // Page size.
  int64 page_size = 1;
}

// Response for ListWidgets.
message ListWidgetsResponse {
  // The widgets.
  repeated Widget widgets = 1;
}

// Request for Widget.
message MakeWidgetRequest {
  // The widget's name; required.
  string name = 1;
  // The owner.
  string owner = 2 [(google.api.field_behavior) = REQUIRED];
  // Required. Both at once.
  string both = 3 [(google.api.field_behavior) = REQUIRED, (google.api.field_behavior) = OUTPUT_ONLY];
  // Address for notifications.
  string contact_email = 4;
  // How to ship.
  int32 method = 5;
  // Required. Says so, but it is not so.
  string size = 6 [(google.api.field_behavior) = OUTPUT_ONLY];
  // Who to make it for.
  oneof maker {
    // Required. A oneof member.
    string person = 7 [(google.api.field_behavior) = REQUIRED];
    // Output only. Says so, but it is not so.
    string robot = 8;
  }
}

// A widget.
message Widget {
  // Identifier; assigned by the service.
  string widget_id = 1;
  // When it was made.
  google.protobuf.Timestamp created_at = 2;
  // When it was updated.
  google.protobuf.Timestamp updated_time = 3;
  // Seconds since the last change.
  int64 idle_seconds = 4;
  // Delivery date, "YYYY-MM-DD".
  string delivery_date = 5;
  // A calendar day.
  google.type.Date ship_time = 6;
  // How long it lasts.
  google.protobuf.Duration life_time = 7;
  // When it broke.
  google.protobuf.Timestamp failure_time = 8;
  // Immutable. Marked, but not annotated.
  string serial = 9;
  // Current state.
  WidgetStatus status = 10;
}
"""

#: For each check, what it must report about BROKEN_PROTO (a substring of some violation each).
EXPECTED = {
    "error_model": [
        "WidgetService: service comment lacks 'exactly one google.rpc.ErrorInfo'",
        "WidgetService: service comment lacks 'MALFORMED_REQUEST'",
        "WidgetService.ListWidgets: comment does not list its errors",
    ],
    "pagination": [
        "ListWidgets: ListWidgetsRequest.page_size must be a single TYPE_INT32",
        "ListWidgets: request ListWidgetsRequest has no page_token",
        "ListWidgets: response ListWidgetsResponse has no next_page_token",
        "ListWidgets: comment does not say 'page_size of 0 means the default of 50'",
        "ListWidgets: comment does not say 'clamped to 200, not refused'",
        "ListWidgets: comment does not say 'tamper-evident'",
    ],
    "name_clashes": ["WidgetService.Widget: RPC Widget has the name of a type of shop.broken.v1"],
    "time_fields": [
        "Widget.created_at: a Timestamp must be named *_time",
        "Widget.created_at: times are Timestamps named *_time",
        "Widget.updated_time: use the verb form",
        "Widget.idle_seconds: an integer of time units",
        "Widget.delivery_date: a calendar date must be a google.type.Date",
        "Widget.delivery_date: a date in a string",
        "Widget.ship_time: *_time must be a google.protobuf.Timestamp",
        "Widget.ship_time: a google.type.Date must be named *_date",
        "Widget.life_time: *_time must be a google.protobuf.Timestamp",
    ],
    "field_behavior": [
        "MakeWidgetRequest.name: the comment says REQUIRED but the field lacks",
        "MakeWidgetRequest.owner: REQUIRED, so the comment must begin with 'Required.'",
        "MakeWidgetRequest.both: REQUIRED and OUTPUT_ONLY contradict each other",
        "MakeWidgetRequest.both: OUTPUT_ONLY, so the comment must begin with 'Output only.'",
        "MakeWidgetRequest.size: the comment says REQUIRED but the field lacks",
        "MakeWidgetRequest.person: a oneof member cannot be REQUIRED",
        "MakeWidgetRequest.robot: the comment says OUTPUT_ONLY but the field lacks",
        "MakeWidgetRequest.robot: the comment begins 'Output only.' but the field is not OUTPUT_ONLY",
        "Widget.widget_id: the comment says OUTPUT_ONLY but the field lacks",
        "Widget.serial: the comment begins 'Immutable.' but the field is not IMMUTABLE",
    ],
    "banned_synonyms": [
        "MakeWidgetRequest.contact_email: name it 'customer_email', not 'contact_email'",
        "MakeWidgetRequest.method: name it 'shipping_method', not 'method'",
        "Widget.failure_time: name it 'fail_time', not 'failure_time'",
        "mentions 'METHOD_NOT_AVAILABLE'; it is 'SHIPPING_METHOD_NOT_AVAILABLE'",
        "mentions 'contact_email'; it is 'customer_email'",
    ],
    "metadata_mentions": [
        'write metadata keys in backticks (metadata `key`): \'metadata "widget_id"',
        "metadata 'status=expired': a status is written as an enum value name",
        "metadata key 'lock_owner' is not lowerCamelCase",
    ],
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> FileSet:
    root = tmp_path_factory.mktemp("broken")
    (root / "shop" / "broken" / "v1").mkdir(parents=True)
    (root / "shop" / "broken" / "v1" / "widget_service.proto").write_text(BROKEN_PROTO)
    out = root / "broken.binpb"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{googleapis_root()}",
            f"-I{well_known_root()}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            "shop/broken/v1/widget_service.proto",
        ]
    )
    assert code == 0, "the broken contract must still compile: it breaks conventions, not protobuf"
    return FileSet.FromString(out.read_bytes())


def test_every_check_is_exercised_by_the_broken_contract():
    assert EXPECTED.keys() == CHECKS.keys()


@pytest.mark.parametrize("name", CHECKS.keys())
def test_check_reports_what_the_broken_contract_plants(broken, name):
    reported = CHECKS[name](broken)
    missing = [expected for expected in EXPECTED[name] if not any(expected in line for line in reported)]
    assert not missing, "\n".join(["not reported:", *missing, "reported:", *reported])


def test_checks_ignore_files_outside_shop(broken):
    """The Google protos in the set (imports) are not ours to judge."""
    only_google = FileSet(file=[file for file in broken.file if not file.package.startswith("shop.")])
    assert only_google.file
    assert all(check(only_google) == [] for check in CHECKS.values())
