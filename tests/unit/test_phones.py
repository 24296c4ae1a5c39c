"""Phone numbers in every local form people type, normalised to E.164."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.phones import InvalidPhoneNumber, parse_msisdn, provider_msisdn, region_of


@pytest.mark.parametrize(("typed", "region", "e164"), [
    ("0712 345 678", None, "+254712345678"),
    ("0712345678", "KE", "+254712345678"),
    ("254712345678", None, "+254712345678"),
    ("+254 712 345 678", None, "+254712345678"),
    ("712345678", "KE", "+254712345678"),
    ("0110 123 456", None, "+254110123456"),
    ("+221 77 123 45 67", None, "+221771234567"),
    ("221771234567", None, "+221771234567"),
    ("77 123 45 67", "SN", "+221771234567"),
    ("78-123-45-67", "SN", "+221781234567"),
    ("00221 76 123 45 67", None, "+221761234567"),
])
def test_local_formats(typed, region, e164):
    assert parse_msisdn(typed, region) == e164


@pytest.mark.parametrize("bad", ["", "   ", "123", "+1 202 555 0100", "0712 34a 678", "*384#", "0712345",
                                 "+254 20 123 4567", "9" * 40, "'; DROP TABLE users; --"])
def test_refused_with_a_reason(bad):
    with pytest.raises(InvalidPhoneNumber):
        parse_msisdn(bad)


def test_helpers():
    assert provider_msisdn("+254712345678") == "254712345678"
    assert region_of("+221771234567") == "SN"


kenyan_mobile = st.builds(lambda prefix, rest: f"{prefix}{rest:07d}",
                          st.sampled_from(["70", "71", "72", "74", "79", "11"]), st.integers(0, 9_999_999))


@given(kenyan_mobile, st.sampled_from(["0{n}", "254{n}", "+254{n}", "+254 {n}", "0{a} {b} {c}"]))
def test_every_kenyan_spelling_gives_the_same_e164(national, template):
    typed = template.format(n=national, a=national[:3], b=national[3:6], c=national[6:])
    assert parse_msisdn(typed, "KE") == f"+254{national}"


senegal_mobile = st.builds(lambda prefix, rest: f"{prefix}{rest:07d}",
                           st.sampled_from(["70", "76", "77", "78"]), st.integers(0, 9_999_999))


@given(senegal_mobile)
def test_every_senegalese_spelling_gives_the_same_e164(national):
    spaced = f"{national[:2]} {national[2:5]} {national[5:7]} {national[7:]}"
    expected = f"+221{national}"
    assert parse_msisdn(spaced, "SN") == expected
    assert parse_msisdn(f"+221 {spaced}") == expected
    assert parse_msisdn(f"221{national}") == expected


@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes(text):
    try:
        result = parse_msisdn(text)
    except InvalidPhoneNumber:
        return
    assert result.startswith("+") and result[1:].isdigit()
