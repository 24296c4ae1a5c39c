"""The Daraja sandbox's stand-in for Safaricom's certificate: a key pair made at start-up.

Clients encrypt the initiator password with the certificate (``GET /_sandbox/certificate``); the
sandbox decrypts every ``SecurityCredential`` with the private key and compares, so a credential
made with the wrong certificate or password fails with ResultCode 2001, as on Daraja.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class InitiatorKeys:
    certificate_pem: bytes
    private_key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> InitiatorKeys:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "KE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sauti Daraja Sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, "sandbox.daraja.invalid"),
            ]
        )
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        return cls(certificate.public_bytes(serialization.Encoding.PEM), key)

    def decrypt(self, credential: str) -> str | None:
        """The password inside a SecurityCredential, or None when it was not made with our certificate."""
        try:
            encrypted = base64.b64decode(credential, validate=True)
            return self.private_key.decrypt(encrypted, padding.PKCS1v15()).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
