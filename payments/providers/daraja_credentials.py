"""The secrets Daraja wants derived rather than sent as-is: STK password and SecurityCredential.

- STK push/query: ``Password = base64(BusinessShortCode + Passkey + Timestamp)`` with a
  ``YYYYMMDDHHmmss`` timestamp in Nairobi time (getting the zone wrong is a classic cause of
  "Invalid Timestamp" / "Wrong credentials").
- B2C, B2B, status, reversal, balance: ``SecurityCredential`` is the initiator password encrypted
  with RSA PKCS#1 v1.5 under Safaricom's certificate, base64-encoded.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

#: East Africa Time. Kenya has kept UTC+3 without daylight saving since 1960s; a fixed offset avoids
#: depending on the system's tz database being installed.
NAIROBI = timezone(timedelta(hours=3), "EAT")

TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


def nairobi_timestamp(now: datetime | None = None) -> str:
    """``YYYYMMDDHHmmss`` in Nairobi time for an aware datetime (default: now)."""
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no zone; pass an aware one")
    return moment.astimezone(NAIROBI).strftime(TIMESTAMP_FORMAT)


def parse_nairobi_timestamp(text: str) -> datetime:
    """The aware datetime of a Daraja ``YYYYMMDDHHmmss`` stamp (``ValueError`` when it is not one)."""
    if len(text) != 14 or not text.isdigit():
        raise ValueError(f"{text!r} is not a YYYYMMDDHHmmss timestamp")
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=NAIROBI)


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """The STK ``Password``: base64 of shortcode, passkey and timestamp concatenated."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")


def security_credential(initiator_password: str, certificate_pem: bytes) -> str:
    """Encrypt the initiator password for ``SecurityCredential`` with the given X.509 certificate.

    PKCS#1 v1.5 padding is randomised, so two calls give different strings that both decrypt to
    the same password; computing it once per client is enough.
    """
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the Daraja certificate must hold an RSA public key")
    encrypted = public_key.encrypt(initiator_password.encode(), padding.PKCS1v15())
    return base64.b64encode(encrypted).decode("ascii")
