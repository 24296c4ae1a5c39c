"""Errors shared by the provider clients, and the translation of transport failures into them.

Every error carries the provider's own code (Daraja ``errorCode``, Wave ``code``) so callers can
branch on it without parsing messages, and says whether trying again later may help (`retryable`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp


class ProviderError(Exception):
    """A provider call that did not give the answer asked for."""

    #: True when the same request may succeed later (rate limits, provider outages).
    retryable: bool = False

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        prefix = f"{code}: " if code else ""
        super().__init__(f"{provider}: {prefix}{message}")
        self.provider = provider
        self.code = code
        self.message = message
        self.http_status = http_status


class ProviderUnavailable(ProviderError):
    """No answer at all: connection refused or reset, name resolution failed."""

    retryable = True


class ProviderTimeout(ProviderUnavailable):
    """The provider did not answer within the timeout.

    IMPORTANT: the request may still have been processed. For a money movement the outcome is
    unknown: find out with a status query or the provider's statement before sending it again
    (Daraja has no idempotency key; Wave payouts do, so resending with the same key is safe).
    """


class ProviderProtocolError(ProviderError):
    """An answer that does not follow the provider's contract (not JSON, fields missing)."""


@contextmanager
def transport_errors(provider: str) -> Iterator[None]:
    """Turn aiohttp's and asyncio's transport exceptions into `ProviderUnavailable` / `ProviderTimeout`."""
    try:
        yield
    except TimeoutError as exc:  # aiohttp's timeouts subclass TimeoutError too: check it first
        raise ProviderTimeout(provider, "no answer within the timeout") from exc
    except aiohttp.ClientError as exc:
        raise ProviderUnavailable(provider, str(exc) or type(exc).__name__) from exc
