"""The derived Daraja secrets: STK password (contract test vector), Nairobi timestamps, and the
SecurityCredential's RSA PKCS#1 v1.5 encryption."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import padding

from payments.providers.daraja_credentials import (
    NAIROBI,
    nairobi_timestamp,
    parse_nairobi_timestamp,
    security_credential,
    stk_password,
)
from payments.sandbox.initiator_keys import InitiatorKeys

PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"


def test_the_contract_test_vector():
    password = stk_password("174379", PASSKEY, "20160216165627")
    assert password == (
        "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJhZGExZWQyYzkxOTIwMTYwMjE2MTY1NjI3"
    )
    assert base64.b64decode(password).decode() == "174379" + PASSKEY + "20160216165627"


def test_timestamps_are_nairobi_time_whatever_the_zone_given():
    utc_moment = datetime(2016, 2, 16, 13, 56, 27, tzinfo=UTC)
    assert nairobi_timestamp(utc_moment) == "20160216165627"
    lagos = timezone(timedelta(hours=1))
    assert nairobi_timestamp(utc_moment.astimezone(lagos)) == "20160216165627"
    assert parse_nairobi_timestamp("20160216165627") == utc_moment
    assert parse_nairobi_timestamp("20160216165627").tzinfo == NAIROBI


def test_a_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="naive"):
        nairobi_timestamp(datetime(2016, 2, 16, 16, 56, 27))


@pytest.mark.parametrize("text", ["2016021616562", "201602161656270", "2016-02-16T16", "20161316165627", ""])
def test_malformed_timestamps_are_refused(text):
    with pytest.raises(ValueError):
        parse_nairobi_timestamp(text)


def test_the_security_credential_decrypts_to_the_password_with_the_matching_key():
    keys = InitiatorKeys.generate()
    credential = security_credential("Safaricom999!*!", keys.certificate_pem)
    raw = keys.private_key.decrypt(base64.b64decode(credential), padding.PKCS1v15())
    assert raw == b"Safaricom999!*!"
    assert keys.decrypt(credential) == "Safaricom999!*!"
    # PKCS#1 v1.5 padding is random: two encryptions differ and both decrypt.
    assert security_credential("Safaricom999!*!", keys.certificate_pem) != credential


def test_a_credential_for_another_certificate_does_not_decrypt_to_the_password():
    ours, theirs = InitiatorKeys.generate(), InitiatorKeys.generate()
    credential = security_credential("Safaricom999!*!", theirs.certificate_pem)
    assert ours.decrypt(credential) != "Safaricom999!*!"
    assert ours.decrypt("not base64 at all!") is None
