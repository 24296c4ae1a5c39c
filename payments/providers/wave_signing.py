"""Wave's ``Wave-Signature`` header: ``t=<unix seconds>,v1=<hex>[,v1=<hex>…]``.

hex = HMAC-SHA256(secret, str(t) + raw_body), with no separator between the timestamp and the body
(the body is empty for a GET). Wave uses the same scheme to let us sign our requests and to sign the
webhooks it sends us; during a key rotation a header carries one ``v1`` per active secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


class InvalidSignatureHeader(ValueError):
    """A ``Wave-Signature`` header that cannot be read."""


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[str, ...]


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``str(timestamp) + body`` under `secret`."""
    message = str(timestamp).encode("ascii") + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The full header value, one ``v1`` per secret."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    parts = [f"t={timestamp}"] + [f"v1={compute_signature(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)


def parse_signature_header(header: str) -> SignatureHeader:
    """Split a header into its timestamp and its ``v1`` signatures; unknown schemes are ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignatureHeader(f"{part.strip()!r} is not key=value")
        if key == "t":
            # A Unix time in seconds has 10 digits (until 2286): more is no timestamp, refused before
            # int() (which refuses 4,300 digits) and before any arithmetic on it (which overflows).
            if timestamp is not None or not value.isascii() or not value.isdigit() or len(value) > 12:
                raise InvalidSignatureHeader("the t= timestamp is missing, repeated or not a number")
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None:
        raise InvalidSignatureHeader("no t= timestamp")
    if not signatures:
        raise InvalidSignatureHeader("no v1= signature")
    return SignatureHeader(timestamp, tuple(signatures))
