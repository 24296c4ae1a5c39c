"""SMS through Africa's Talking's official Python SDK (``africastalking``).

The SDK is synchronous (``requests``), so each send runs in a worker thread with a request timeout,
never on the event loop: on the sender's own threads (``threads``, one per SMS job the outbox worker
may run at once), not asyncio's default executor, whose few threads (the cores plus four) capped
receipts at a few dozen a second when each waits a few hundred milliseconds for Africa's Talking.

Two things the SDK does not offer are added by one adapter (`_KeptAliveSMSService`), each by
overriding one of its methods: another host (the ``_baseUrl`` its ``_init_service`` sets), which is
how the local sandbox is reached; and connections kept alive between sends. The SDK posts with
``requests.post``, a new connection (a TCP and TLS handshake with Africa's Talking) for every SMS;
here each thread posts on a ``requests.Session`` of its own (a session is not safe to share between
threads), so a receipt after the first goes out on an open connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from africastalking.Service import DEFAULT_TIMEOUT_S, AfricasTalkingException
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


class _KeptAliveSMSService(SMSService):
    """The SDK's SMS service, with its base URL replaced when one is given, posting on one
    ``requests.Session`` per thread (connections kept alive) instead of ``requests.post``."""

    def __init__(self, username: str, api_key: str, base_url: str | None) -> None:
        self._relocated_base = base_url  # read by _init_service, which the parent __init__ calls
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        super().__init__(username, api_key)

    def _init_service(self) -> None:
        super()._init_service()
        if self._relocated_base:
            self._baseUrl = self._relocated_base.rstrip("/") + "/version1"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._new_session()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _new_session(self) -> requests.Session:
        """A session that reads the environment's proxy and CA settings once, when made: requests
        otherwise reads them on every request (walking the whole environment twice, a quarter of an
        SMS's CPU). Only Africa's Talking is asked, so its proxy (or none, by ``NO_PROXY``) is the
        only one needed; ``~/.netrc`` is not read (Africa's Talking authenticates by the apiKey header)."""
        session = requests.Session()
        session.proxies.update(requests.utils.get_environ_proxies(self._baseUrl))
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
        return session

    # `Service._make_request` calls its private ``__make_post_request`` (so ``_Service__make_post_request``),
    # which posts with ``requests.post``; the same request on this thread's session instead.
    def _Service__make_post_request(self, url, headers, data, params, callback=None, timeout=DEFAULT_TIMEOUT_S):
        res = self._session().post(url=url, headers=headers, params=params, data=data, timeout=timeout)
        if callback is None or callback == {}:
            return res
        callback(res)
        return None

    @property
    def connections_opened(self) -> int:
        """Connections opened so far, all threads together (kept-alive ones are counted once)."""
        with self._sessions_lock:
            sessions = list(self._sessions)
        opened = 0
        for session in sessions:
            for adapter in session.adapters.values():
                pools = adapter.poolmanager.pools  # urllib3's container: keys() is a copy, iterating is refused
                found = (pools.get(key) for key in pools.keys())
                opened += sum(pool.num_connections for pool in found if pool is not None)
        return opened

    def close(self) -> None:
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


class SmsSender:
    """Sends SMS; safe to share: each send is one SDK call in a worker thread, on that thread's
    kept-alive connection. `close` closes those connections."""

    def __init__(self, settings: SmsSettings, *, threads: int = 16) -> None:
        self._settings = settings
        self._service = _KeptAliveSMSService(settings.username, settings.api_key, settings.base_url)
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sms")
        self._closed = False

    @property
    def connections_opened(self) -> int:
        """Connections to Africa's Talking opened so far (a diagnostic: sends reuse them)."""
        return self._service.connections_opened

    def close(self) -> None:
        """Refuse further sends and close the threads and their connections (a send in flight
        finishes on its thread; nothing waits for it here, on the event loop)."""
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._service.close()

    async def send(self, message: str, recipients: Sequence[str]) -> SmsReceipt:
        if not message:
            raise ValueError("an SMS needs a message")
        if isinstance(recipients, str) or not recipients:
            raise InvalidRecipient("recipients must be a non-empty list of E.164 numbers")
        for number in recipients:
            if not isinstance(number, str) or not _E164.fullmatch(number):
                raise InvalidRecipient(f"{number!r} is not an E.164 number (+ and 8 to 15 digits)")
        if self._closed:
            raise ProviderUnavailable(PROVIDER, "the SMS sender is closed (the gateway is stopping)")
        answer = await asyncio.get_running_loop().run_in_executor(
            self._threads, self._send_blocking, message, list(recipients))
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
