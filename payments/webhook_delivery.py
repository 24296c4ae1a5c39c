"""Sending webhook events: the outbox handler of ``webhook.deliver`` jobs (`payments.webhook_events`).

One delivery is one ``POST`` of the event's JSON to the endpoint's URL, with:

- ``Sauti-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 under the endpoint's secret of the
  timestamp followed by the raw body, the scheme Wave signs its own webhooks with
  (`payments.providers.wave_signing`), so receivers that verify Wave's can verify ours the same way
  (`verify_delivery` does it). Signed afresh at each try: a receiver may refuse timestamps more than
  five minutes old, and a retry is not a replay. For a while after the endpoint's secret is rolled,
  one ``v1`` per secret, the newest first (`webhook_endpoints.roll_secret`): a receiver checking
  either secret accepts it;
- ``Sauti-Event-Id`` and ``Sauti-Event-Type``, the event's own ``id`` and ``type``.

Unless ``allow_local`` (tests, a demo on one machine), the URL is checked again when sending
(`webhook_endpoints.check_url`), and the name is resolved by `PublicOnlyResolver`, which keeps only
public addresses: the connection goes to the very addresses checked, so a name that resolves to our
own network (from the start, or since it was registered) gets nothing.

A 2xx answer within ``timeout_s`` delivers it. Anything else (another status, a time-out, a refused
connection, a redirect, which is not followed) fails this try; the outbox retries it with backoff
and parks it after `DELIVERY_ATTEMPTS`, with the last answer as its error. An endpoint disabled, or
whose key was revoked, since the event was queued gets nothing: the job ends without sending.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import ThreadedResolver
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import autocommit
from payments.outbox import Job, PermanentJobError
from payments.providers.wave_signing import signature_header
from payments.providers.wave_webhooks import DEFAULT_TOLERANCE_S, WebhookRejected, verify_signature
from payments.webhook_endpoints import InvalidWebhookUrl, check_url, delivery_target, public_address

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Sauti-Signature"
USER_AGENT = "Sauti-Webhooks/1"
#: What of an endpoint's refusal is kept as the delivery's error: enough to see why.
_ANSWER_CHARS = 300


class DeliveryFailed(Exception):
    """The endpoint did not take the event this time: retried later."""


def event_body(event: Mapping[str, object]) -> bytes:
    """The bytes sent and signed: compact JSON, the same at every try."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


_PUBLIC_REASON = re.compile(
    rf"(?:{re.escape(DeliveryFailed.__module__)}\.DeliveryFailed|{re.escape(PermanentJobError.__module__)}"
    r"\.PermanentJobError): (?P<reason>.*?)(?: \(at \S+:\d+ in \w+\))?", re.S)
#: What the endpoint's owner reads for any other failure: the outbox keeps where it happened (a file,
#: a host name, a statement), which is for operators.
OUR_SIDE = "an error on Sauti's side, not your endpoint's; it is tried again (or an operator sends it again)"


def public_error(last_error: str | None) -> str | None:
    """What a delivery's ``last_error`` says to the endpoint's owner: its endpoint's answer, or why it
    could not be reached or was refused; never where in our code, or on which host, anything failed."""
    if last_error is None:
        return None
    said = _PUBLIC_REASON.fullmatch(last_error)
    return said.group("reason") if said else OUR_SIDE


def verify_delivery(raw_body: bytes, signature: str | None, secret: str, *, now: Callable[[], float] = time.time,
                    tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict:
    """For receivers: the event, if ``signature`` (the ``Sauti-Signature`` header) signs
    ``raw_body`` with ``secret`` within ``tolerance_s`` of now; else `WebhookRejected`."""
    verify_signature(raw_body, signature, [secret], now=now, tolerance_s=tolerance_s)
    return json.loads(raw_body)


class PublicOnlyResolver(AbstractResolver):
    """Resolves as the system does, then keeps only public addresses (`public_address`: a name whose
    AAAA record is ``::127.0.0.1`` or a 6to4 address of a private one is no more public); none
    left is a resolution error, so the delivery fails and is retried like any other."""

    def __init__(self) -> None:
        self._system = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        found = await self._system.resolve(host, port, family)
        public = [r for r in found if public_address(ipaddress.ip_address(r["host"].split("%", 1)[0]))]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._system.close()


class WebhookSender:
    """Delivers ``webhook.deliver`` jobs over one kept-alive HTTP session, made at the first
    delivery (most processes never send one) and closed by `close`. ``allow_local`` as
    ``webhooks.allow_local_urls``: False sends only to public https addresses."""

    def __init__(self, engine: AsyncEngine, *, timeout_s: float = 10.0, allow_local: bool = False) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.allow_local = allow_local
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            resolver = None if self.allow_local else PublicOnlyResolver()
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver),
                                               timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                               headers={"User-Agent": USER_AGENT})
        return self._http

    async def deliver(self, job: Job) -> None:
        event = job.payload.get("event")
        endpoint = job.payload.get("endpoint")
        if not isinstance(event, Mapping) or not isinstance(endpoint, int):
            raise PermanentJobError("the job holds no event and endpoint")
        async with autocommit(self.engine).connect() as conn:
            target = await delivery_target(conn, endpoint)
        if target is None or not target.live:
            log.info("webhook job %s: endpoint %s is disabled or gone; event %s dropped", job.id, endpoint,
                     event.get("id"))
            return
        if not self.allow_local:
            try:
                check_url(target.url, allow_local=False)
            except InvalidWebhookUrl as exc:
                raise PermanentJobError(f"the endpoint's URL is refused now: {exc}") from None
        body = event_body(event)
        headers = {"Content-Type": "application/json", "Sauti-Event-Id": str(event.get("id")),
                   "Sauti-Event-Type": str(event.get("type")),
                   SIGNATURE_HEADER: signature_header(target.secrets, int(time.time()), body)}
        try:
            async with self._session().post(target.url, data=body, headers=headers, allow_redirects=False) as answer:
                if 200 <= answer.status < 300:
                    return
                said = (await answer.content.read(_ANSWER_CHARS)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__} sending to the endpoint: {exc}"[:_ANSWER_CHARS]) from None
        raise DeliveryFailed(f"the endpoint answered HTTP {answer.status}: {said!r}")


__all__ = ["DeliveryFailed", "PublicOnlyResolver", "WebhookRejected", "WebhookSender", "event_body",
           "verify_delivery"]
