"""Verify and parse the webhooks Wave sends us.

Wave secures a webhook endpoint with one of two strategies, chosen per endpoint in its portal:

- signing secret: ``Wave-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`` over ``t + raw body``. Any
  ``v1`` may match (several appear while a secret is rotated); comparison is constant-time; a
  timestamp more than five minutes away from now is refused, so a captured delivery cannot be
  replayed later.
- shared secret: ``Authorization: Bearer <secret>``.

Verify against the raw request bytes, before any JSON parsing: re-serialised JSON is not what Wave
signed. Answer 2xx quickly and deduplicate on the event `id`: Wave delivers at least once.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from payments.plain_text import plain
from payments.providers.errors import ProviderProtocolError
from payments.providers.wave import CheckoutSession, parse_checkout_session
from payments.providers.wave_signing import InvalidSignatureHeader, compute_signature, parse_signature_header

#: How far a signature's timestamp may be from our clock.
DEFAULT_TOLERANCE_S = 300


class WebhookRejected(Exception):
    """A delivery that must not be trusted. Answer it with 401 and do nothing else."""


class MalformedWebhook(ValueError):
    """An authentic delivery whose body is not a Wave event envelope."""


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """The signing-secret strategy. List every secret that is live during a rotation."""

    secrets: tuple[str, ...] = field(repr=False)
    tolerance_s: float = DEFAULT_TOLERANCE_S

    def __post_init__(self) -> None:
        if not self.secrets or not all(self.secrets):
            raise ValueError("at least one non-empty signing secret is needed")


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """The shared-secret strategy: Wave sends ``Authorization: Bearer <secret>``."""

    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("the shared secret must not be empty")


WebhookSecurity = SigningSecret | SharedSecret


@dataclass(frozen=True, slots=True)
class WaveEvent:
    """``{"id": "EV_…", "type": "…", "data": {…}}``."""

    id: str
    type: str
    data: Mapping[str, Any] = field(hash=False)

    def checkout_session(self) -> CheckoutSession:
        """The session in a ``checkout.session.*`` event."""
        if not self.type.startswith("checkout.session."):
            raise MalformedWebhook(f"a {self.type} event holds no checkout session")
        try:
            return parse_checkout_session(self.data)
        except ProviderProtocolError as exc:
            raise MalformedWebhook(f"{self.type} data: {exc.message}") from None


def verify_signature(
    raw_body: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: Callable[[], float] = time.time,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise `WebhookRejected` unless `header` signs `raw_body` with one of `secrets`, recently."""
    if not header:
        raise WebhookRejected("no Wave-Signature header")
    try:
        parsed = parse_signature_header(header)
    except InvalidSignatureHeader as exc:
        raise WebhookRejected(f"unreadable Wave-Signature: {exc}") from None
    if abs(now() - parsed.timestamp) > tolerance_s:
        raise WebhookRejected("the signature timestamp is outside the allowed window")
    expected = [compute_signature(secret, parsed.timestamp, raw_body) for secret in secrets]
    # Compare every pair, without stopping early, so timing says nothing about which one matched.
    matched = False
    for candidate in parsed.signatures:
        for good in expected:
            matched |= hmac.compare_digest(candidate.encode(), good.encode())
    if not matched:
        raise WebhookRejected("no signature matches")


def verify_shared_secret(authorization: str | None, secret: str) -> None:
    """Raise `WebhookRejected` unless ``Authorization`` is ``Bearer <secret>``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise WebhookRejected("missing or wrong bearer secret")


#: Wave's event ids are about 20 characters; the id is the key its delivery is recorded under.
EVENT_ID_MAX = 100


def parse_event(raw_body: bytes | str) -> WaveEvent:
    """The event envelope; `MalformedWebhook` when it is not one."""
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:
        raise MalformedWebhook(f"not JSON: {exc}") from None
    if not isinstance(payload, Mapping):
        raise MalformedWebhook("the body is not a JSON object")
    event_id, event_type, data = payload.get("id"), payload.get("type"), payload.get("data")
    if not isinstance(event_id, str) or not event_id or len(event_id) > EVENT_ID_MAX:
        raise MalformedWebhook(f"the event has no id of 1 to {EVENT_ID_MAX} characters")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedWebhook("the event has no type")
    if not isinstance(data, Mapping):
        raise MalformedWebhook("the event data is not an object")
    # Verified already (on the raw body): what Wave sent is kept, less any control character.
    try:
        kept = plain(data)
    except RecursionError:  # plain() recurses once a level: data nested nearly as deep as JSON allows
        raise MalformedWebhook("the event data is nested too deeply") from None
    return WaveEvent(event_id, event_type, MappingProxyType(kept))


def verify_webhook(
    raw_body: bytes,
    headers: Mapping[str, str],
    security: WebhookSecurity,
    *,
    now: Callable[[], float] = time.time,
) -> WaveEvent:
    """Check a delivery with the endpoint's strategy, then parse it.

    `headers` is looked up by exact name first, then case-insensitively (aiohttp's
    ``request.headers`` already ignores case).
    """
    if isinstance(security, SigningSecret):
        verify_signature(
            raw_body,
            _header(headers, "Wave-Signature"),
            security.secrets,
            now=now,
            tolerance_s=security.tolerance_s,
        )
    else:
        verify_shared_secret(_header(headers, "Authorization"), security.secret)
    return parse_event(raw_body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
