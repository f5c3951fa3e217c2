"""Shipping's pure rules: postal formats, address normalisation and validation; no I/O."""

from __future__ import annotations

import dataclasses

import pytest

from service_runtime.values import Address
from shipping_svc import domain
from shipping_svc.domain import AddressViolationType

V = AddressViolationType

GOOD = {
    "US": Address("Ada Lovelace", "1 Main St", "", "Springfield", "IL", "62701", "US", "+14155550123"),
    "CA": Address("Ada Lovelace", "24 Sussex Dr", "", "Ottawa", "ON", "K1A 0B1", "CA"),
    "GB": Address("Ada Lovelace", "10 Downing St", "", "London", "", "SW1A 2AA", "GB"),
    "DE": Address("Ada Lovelace", "Unter den Linden 1", "", "Berlin", "", "10117", "DE"),
    "FR": Address("Ada Lovelace", "1 Rue de Rivoli", "", "Paris", "", "75001", "FR"),
    "JP": Address("Ada Lovelace", "1-1 Chiyoda", "", "Tokyo", "", "100-0001", "JP"),
    "AU": Address("Ada Lovelace", "1 George St", "", "Sydney", "NSW", "2000", "AU"),
    "NL": Address("Ada Lovelace", "Dam 1", "", "Amsterdam", "", "1012 JS", "NL"),
    "IE": Address("Ada Lovelace", "1 O'Connell St", "", "Dublin", "", "", "IE"),
}


def problems(address: Address) -> dict[str, V]:
    return {v.field: v.type for v in domain.validate_address(address)}


@pytest.mark.parametrize("country", sorted(GOOD))
def test_a_well_formed_address_of_each_supported_country_is_valid(country):
    assert domain.validate_address(GOOD[country]) == ()


def test_every_country_with_a_postal_format_is_covered_here():
    assert set(domain.POSTAL_FORMATS) == {"US", "CA", "GB", "DE", "FR", "JP", "AU", "NL"}


# Postal codes


@pytest.mark.parametrize(
    ("country", "entered", "canonical"),
    [
        ("GB", "sw1a1aa", "SW1A 1AA"),
        ("GB", " m1 1ae ", "M1 1AE"),
        ("GB", "cr26xh", "CR2 6XH"),
        ("GB", "gir0aa", "GIR 0AA"),
        ("CA", "k1a0b1", "K1A 0B1"),
        ("JP", "1000001", "100-0001"),
        ("JP", "100 0001", "100-0001"),
        ("NL", "1234ab", "1234 AB"),
        ("US", "627011234", "62701-1234"),
        ("US", "62701", "62701"),
        ("DE", " 10117 ", "10117"),
    ],
)
def test_postal_codes_are_written_in_their_country_s_canonical_form(country, entered, canonical):
    assert domain.normalize_postal_code(country, entered) == canonical


@pytest.mark.parametrize(
    ("country", "code"),
    [
        ("US", "1234"),
        ("US", "123456"),
        ("US", "ABCDE"),
        ("CA", "D1A 0B1"),
        ("CA", "K1A 0B"),
        ("GB", "SW1A 1A"),
        ("GB", "QW1A 1AA"),
        ("GB", "GIR 1AA"),
        ("DE", "1011"),
        ("FR", "750011"),
        ("JP", "100-001"),
        ("AU", "20000"),
        ("NL", "0123 AB"),
        ("NL", "1234 SS"),
    ],
)
def test_postal_codes_that_break_their_country_s_format_are_reported(country, code):
    address = dataclasses.replace(GOOD[country], postal_code=code)
    assert problems(address) == {"address.postal_code": V.POSTAL_CODE_FORMAT}


def test_a_postal_code_format_violation_describes_the_expected_format():
    [violation] = domain.validate_address(dataclasses.replace(GOOD["GB"], postal_code="12345"))
    assert violation.description == "UK postcodes look like SW1A 1AA"


def test_other_countries_get_the_permissive_fallback():
    assert problems(dataclasses.replace(GOOD["IE"], postal_code="D02 X285")) == {}
    assert problems(dataclasses.replace(GOOD["IE"], postal_code="D02#X285")) == {
        "address.postal_code": V.POSTAL_CODE_FORMAT
    }


def test_a_postal_code_is_required_only_where_the_country_has_a_format():
    assert problems(dataclasses.replace(GOOD["DE"], postal_code="")) == {"address.postal_code": V.REQUIRED}
    assert problems(dataclasses.replace(GOOD["IE"], postal_code="")) == {}


# Required fields and limits


def test_an_empty_address_names_every_required_field_in_field_order():
    fields = [v.field for v in domain.validate_address(Address())]
    assert fields == ["address.recipient_name", "address.line1", "address.city", "address.country_code"]


@pytest.mark.parametrize("country", ["US", "CA", "AU"])
def test_a_region_is_required_in_the_us_canada_and_australia(country):
    assert problems(dataclasses.replace(GOOD[country], region="  ")) == {"address.region": V.REQUIRED}


def test_fields_longer_than_their_limit_are_reported_too_long():
    address = dataclasses.replace(GOOD["DE"], recipient_name="x" * 201, city="y" * 101, line2="z" * 200)
    assert problems(address) == {"address.recipient_name": V.TOO_LONG, "address.city": V.TOO_LONG}


def test_control_characters_are_reported_as_invalid_characters():
    assert problems(dataclasses.replace(GOOD["DE"], line1="Unter den\x00Linden 1")) == {
        "address.line1": V.INVALID_CHARACTERS
    }


def test_an_unassigned_country_code_is_unknown():
    assert problems(dataclasses.replace(GOOD["IE"], country_code="XX")) == {"address.country_code": V.UNKNOWN_COUNTRY}
    assert problems(dataclasses.replace(GOOD["IE"], country_code="USA")) == {"address.country_code": V.UNKNOWN_COUNTRY}


def test_all_249_assigned_country_codes_are_known():
    assert len(domain.COUNTRY_CODES) == 249
    assert all(len(code) == 2 and code.isupper() for code in domain.COUNTRY_CODES)


@pytest.mark.parametrize("phone", ["4155550123", "+0123456", "+1 415 555 0123", "+1234567890123456"])
def test_a_phone_not_in_e164_format_is_reported(phone):
    assert problems(dataclasses.replace(GOOD["US"], phone=phone)) == {"address.phone": V.PHONE_FORMAT}


def test_every_problem_is_reported_at_once_in_field_order():
    address = Address("", "1 Main St", "", "", "", "1234", "US", "555")
    assert [(v.field, v.type) for v in domain.validate_address(address, prefix="shipping_address")] == [
        ("shipping_address.recipient_name", V.REQUIRED),
        ("shipping_address.city", V.REQUIRED),
        ("shipping_address.region", V.REQUIRED),
        ("shipping_address.postal_code", V.POSTAL_CODE_FORMAT),
        ("shipping_address.phone", V.PHONE_FORMAT),
    ]


# Normalisation


def test_normalisation_trims_upper_cases_codes_and_reports_what_it_changed():
    entered = Address(" Ada Lovelace ", "1 Main St", "", "Springfield", "il", "62701 1234", "us")
    normalized, changed = domain.normalize_address(entered)
    assert normalized == Address("Ada Lovelace", "1 Main St", "", "Springfield", "IL", "62701-1234", "US")
    assert changed == ("address.recipient_name", "address.region", "address.postal_code", "address.country_code")


def test_an_address_that_only_needed_normalising_is_valid():
    assert domain.validate_address(Address("Ada", "1 High St", "", "London", "", "sw1a1aa", "gb")) == ()


def test_region_names_outside_the_us_canada_and_australia_are_left_as_entered():
    normalized, changed = domain.normalize_address(dataclasses.replace(GOOD["DE"], region="by"))
    assert normalized.region == "by"
    assert changed == ()
