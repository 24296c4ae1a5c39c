"""SMS through Africa's Talking's official Python SDK (``africastalking``).

The SDK is synchronous (``requests``), so each send runs in a worker thread (`asyncio.to_thread`)
with a request timeout, never on the event loop. The SDK cannot be pointed at another host; the
one adapter below (`_RelocatableSMSService`) overrides the ``_baseUrl`` its ``_init_service`` sets,
which is how the local sandbox is reached.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from africastalking.Service import AfricasTalkingException
from africastalking.SMS import SMSService

from payments.providers.errors import ProviderError, ProviderProtocolError, ProviderTimeout, ProviderUnavailable

PROVIDER = "africastalking"

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")

#: Per-recipient statusCodes that mean the message was taken for delivery.
ACCEPTED_STATUS_CODES = frozenset({100, 101, 102})


class InvalidRecipient(ValueError):
    """A recipient that is not an E.164 number (``+`` and digits)."""


class SmsError(ProviderError):
    """Africa's Talking refused the request (non-2xx): bad credentials, server error."""


@dataclass(frozen=True, slots=True)
class SmsSettings:
    username: str
    api_key: str = field(repr=False)
    sender_id: str | None = None
    #: None: Africa's Talking itself (the SDK picks sandbox or live hosts from the username).
    #: A URL such as ``http://127.0.0.1:8702``: that server instead (our local sandbox).
    base_url: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class SmsRecipientStatus:
    number: str
    status: str
    status_code: int
    message_id: str | None
    cost: str | None

    @property
    def accepted(self) -> bool:
        return self.status_code in ACCEPTED_STATUS_CODES


@dataclass(frozen=True, slots=True)
class SmsReceipt:
    summary: str
    recipients: tuple[SmsRecipientStatus, ...]

    @property
    def all_accepted(self) -> bool:
        return bool(self.recipients) and all(r.accepted for r in self.recipients)


class _RelocatableSMSService(SMSService):
    """The SDK's SMS service, with its base URL replaced when one is given."""

    def __init__(self, username: str, api_key: str, base_url: str | None) -> None:
        self._relocated_base = base_url  # read by _init_service, which the parent __init__ calls
        super().__init__(username, api_key)

    def _init_service(self) -> None:
        super()._init_service()
        if self._relocated_base:
            self._baseUrl = self._relocated_base.rstrip("/") + "/version1"


class SmsSender:
    """Sends SMS; safe to share: each send is one independent SDK call in a worker thread."""

    def __init__(self, settings: SmsSettings) -> None:
        self._settings = settings
        self._service = _RelocatableSMSService(settings.username, settings.api_key, settings.base_url)

    async def send(self, message: str, recipients: Sequence[str]) -> SmsReceipt:
        if not message:
            raise ValueError("an SMS needs a message")
        if isinstance(recipients, str) or not recipients:
            raise InvalidRecipient("recipients must be a non-empty list of E.164 numbers")
        for number in recipients:
            if not isinstance(number, str) or not _E164.fullmatch(number):
                raise InvalidRecipient(f"{number!r} is not an E.164 number (+ and 8 to 15 digits)")
        answer = await asyncio.to_thread(self._send_blocking, message, list(recipients))
        return _receipt(answer)

    def _send_blocking(self, message: str, recipients: list[str]) -> Any:
        timeout = (self._settings.connect_timeout_s, self._settings.read_timeout_s)
        try:
            return self._service.send(message, recipients, sender_id=self._settings.sender_id, timeout=timeout)
        except AfricasTalkingException as exc:
            raise SmsError(PROVIDER, str(exc)[:300] or "request refused") from None
        except requests.Timeout as exc:
            raise ProviderTimeout(PROVIDER, "no answer within the timeout") from exc
        except requests.RequestException as exc:
            raise ProviderUnavailable(PROVIDER, str(exc) or type(exc).__name__) from exc


def _receipt(answer: Any) -> SmsReceipt:
    # The SDK returns parsed JSON only when the content type is exactly application/json; accept text.
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            raise ProviderProtocolError(PROVIDER, f"answer is not JSON: {answer[:200]!r}") from None
    data = answer.get("SMSMessageData") if isinstance(answer, Mapping) else None
    if not isinstance(data, Mapping) or not isinstance(data.get("Recipients"), list):
        raise ProviderProtocolError(PROVIDER, "answer has no SMSMessageData.Recipients")
    recipients = []
    for item in data["Recipients"]:
        if not isinstance(item, Mapping) or "number" not in item or "statusCode" not in item:
            raise ProviderProtocolError(PROVIDER, f"unreadable recipient entry {item!r}")
        try:
            status_code = int(item["statusCode"])
        except (TypeError, ValueError):
            raise ProviderProtocolError(PROVIDER, f"statusCode {item['statusCode']!r} is not a number") from None
        recipients.append(
            SmsRecipientStatus(
                number=str(item["number"]),
                status=str(item.get("status", "")),
                status_code=status_code,
                message_id=item.get("messageId") if item.get("messageId") not in ("", "None") else None,
                cost=item.get("cost"),
            )
        )
    return SmsReceipt(summary=str(data.get("Message", "")), recipients=tuple(recipients))
