"""Shipping's business rules, free of I/O: what a valid postal address is, and its normalised form.

`normalize_address` trims every field, upper-cases the country code (and US, CA and AU region
codes), and writes the postal code of the countries below in its canonical form ("sw1a1aa" →
"SW1A 1AA", "k1a0b1" → "K1A 0B1", "1000001" → "100-0001", "1234ab" → "1234 AB").
`validate_address` reports every problem of the normalised address, in field order, with the
field paths and descriptions that ValidateAddress returns and other RPCs put in BadRequest.

Postal formats are checked for US, CA, GB, DE, FR, JP, AU and NL; elsewhere a permissive fallback
applies. Regions are required for US, CA and AU. Checking regions against the official lists (and
writing region names as abbreviations, "california" → "CA") needs region data that the shipping
issue brings; until then a region is only checked for presence, length and characters.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from service_runtime.values import Address

#: ISO 3166-1 alpha-2: the 249 officially assigned codes.
# fmt: off
COUNTRY_CODES = frozenset([
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
])
# fmt: on

#: Countries whose postal system needs a state, province or territory.
REGION_REQUIRED = frozenset({"US", "CA", "AU"})

#: Longest value of each field, in characters (shop.type.v1.Address).
MAX_LENGTHS: Mapping[str, int] = {
    "recipient_name": 200,
    "line1": 200,
    "line2": 200,
    "city": 100,
    "region": 100,
    "postal_code": 20,
}

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_FALLBACK_POSTAL_CODE = re.compile(r"^[A-Za-z0-9 -]{0,20}$")


@dataclass(frozen=True)
class PostalFormat:
    """A country's postal code: `pattern` matches the upper-cased input with its parts in groups
    `a` and (optionally) `b`; the canonical form joins them with `separator`."""

    pattern: re.Pattern[str]
    separator: str
    description: str

    def canonical(self, code: str) -> str | None:
        match = self.pattern.match(code)
        if match is None:
            return None
        return match["a"] + (self.separator + match["b"] if match["b"] else "")


_CA_LETTER = "[ABCEGHJ-NPRSTV-Z]"
POSTAL_FORMATS: Mapping[str, PostalFormat] = {
    "US": PostalFormat(
        re.compile(r"^(?P<a>\d{5})(?:[ -]?(?P<b>\d{4}))?$"), "-", "US ZIP codes look like 12345 or 12345-6789"
    ),
    "CA": PostalFormat(
        re.compile(rf"^(?P<a>[ABCEGHJ-NPRSTVXY]\d{_CA_LETTER}) ?(?P<b>\d{_CA_LETTER}\d)$"),
        " ",
        "Canadian postal codes look like K1A 0B1",
    ),
    "GB": PostalFormat(
        re.compile(r"^(?P<a>GIR(?= ?0AA)|[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?) ?(?P<b>\d[ABD-HJLNP-UW-Z]{2})$"),
        " ",
        "UK postcodes look like SW1A 1AA",
    ),
    "DE": PostalFormat(re.compile(r"^(?P<a>\d{5})(?P<b>)$"), "", "German postal codes have 5 digits, like 10115"),
    "FR": PostalFormat(re.compile(r"^(?P<a>\d{5})(?P<b>)$"), "", "French postal codes have 5 digits, like 75001"),
    "JP": PostalFormat(re.compile(r"^(?P<a>\d{3})[ -]?(?P<b>\d{4})$"), "-", "Japanese postal codes look like 100-0001"),
    "AU": PostalFormat(re.compile(r"^(?P<a>\d{4})(?P<b>)$"), "", "Australian postcodes have 4 digits, like 2000"),
    "NL": PostalFormat(
        re.compile(r"^(?P<a>[1-9]\d{3}) ?(?P<b>(?!SA|SD|SS)[A-Z]{2})$"), " ", "Dutch postcodes look like 1234 AB"
    ),
}


class AddressViolationType(enum.Enum):
    REQUIRED = "required"
    TOO_LONG = "too_long"
    INVALID_CHARACTERS = "invalid_characters"
    UNKNOWN_COUNTRY = "unknown_country"
    POSTAL_CODE_FORMAT = "postal_code_format"
    PHONE_FORMAT = "phone_format"


@dataclass(frozen=True)
class AddressViolation:
    field: str
    type: AddressViolationType
    description: str


def normalize_postal_code(country_code: str, postal_code: str) -> str:
    """The canonical form of a postal code of a country with a known format; otherwise the code trimmed."""
    code = postal_code.strip()
    postal_format = POSTAL_FORMATS.get(country_code)
    if postal_format is None:
        return code
    upper = " ".join(code.upper().split())
    return postal_format.canonical(upper) or upper


def normalize_address(address: Address, prefix: str = "address") -> tuple[Address, tuple[str, ...]]:
    """The address normalised, and the paths of the fields normalisation changed (in field order)."""
    trimmed = {field.name: getattr(address, field.name).strip() for field in dataclasses.fields(Address)}
    country = trimmed["country_code"].upper()
    trimmed["country_code"] = country
    if country in REGION_REQUIRED and re.fullmatch(r"[A-Za-z]{2,3}", trimmed["region"]):
        trimmed["region"] = trimmed["region"].upper()
    trimmed["postal_code"] = normalize_postal_code(country, trimmed["postal_code"])
    normalized = Address(**trimmed)
    changed = tuple(
        f"{prefix}.{field.name}"
        for field in dataclasses.fields(Address)
        if getattr(normalized, field.name) != getattr(address, field.name)
    )
    return normalized, changed


def _has_unprintable(value: str) -> bool:
    return any(unicodedata.category(character).startswith("C") for character in value)


def validate_address(address: Address, prefix: str = "address") -> tuple[AddressViolation, ...]:
    """Every problem of the address as `normalize_address` leaves it, in field order.

    A field that is missing, too long or holds unprintable characters is not also checked for its format.
    """
    normalized, _ = normalize_address(address, prefix)
    country = normalized.country_code
    postal_format = POSTAL_FORMATS.get(country)
    required = {"recipient_name", "line1", "city", "country_code"}
    if country in REGION_REQUIRED:
        required.add("region")
    if postal_format is not None:
        required.add("postal_code")

    violations: list[AddressViolation] = []

    def add(field: str, kind: AddressViolationType, description: str) -> None:
        violations.append(AddressViolation(f"{prefix}.{field}", kind, description))

    for field in dataclasses.fields(Address):
        name = field.name
        value = getattr(normalized, name)
        if not value:
            if name in required:
                add(
                    name,
                    AddressViolationType.REQUIRED,
                    "is required" + (f" for {country}" if name in ("region", "postal_code") else ""),
                )
            continue
        limit = MAX_LENGTHS.get(name)
        too_long = limit is not None and len(value) > limit
        if too_long:
            add(name, AddressViolationType.TOO_LONG, f"must be at most {limit} characters")
        unprintable = _has_unprintable(value)
        if unprintable:
            add(name, AddressViolationType.INVALID_CHARACTERS, "must not contain control or unprintable characters")
        if too_long or unprintable:
            continue
        if name == "country_code" and value not in COUNTRY_CODES:
            add(name, AddressViolationType.UNKNOWN_COUNTRY, "must be an ISO 3166-1 alpha-2 country code, like US or DE")
        elif name == "postal_code":
            if postal_format is not None and postal_format.canonical(value) is None:
                add(name, AddressViolationType.POSTAL_CODE_FORMAT, postal_format.description)
            elif postal_format is None and not _FALLBACK_POSTAL_CODE.match(value):
                add(name, AddressViolationType.POSTAL_CODE_FORMAT, "may hold only letters, digits, spaces and hyphens")
        elif name == "phone" and not _E164.match(value):
            add(name, AddressViolationType.PHONE_FORMAT, "must be in E.164 format, like +14155550123")
    return tuple(violations)
