"""The USSD channel's test world: the whole gateway (`create_app`) on a real TCP port with the
provider sandboxes, a migrated database of its own and a session store (in-process, or Redis under a
random key prefix), phones that speak Africa's Talking's protocol to it (`gateway.commands.phone`),
and a small transcript language: dial, type, see a screen (checked in the caller's language),
see a text, end."""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
import pytest

from dialogs.catalog import Catalogs, load_catalogs, placeholders
from dialogs.gsm7 import SCREEN_LIMIT, length
from gateway.commands.phone import PhoneSession
from gateway.keys import PINS
from payments.accounts import AccountKind, open_account
from payments.identities import Language, User, register_user
from payments.money import Currency, Money
from tests.e2e.gateway_payments_world import Gateway
from tests.numbers import unique_digits

PIN = "2580"
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
CATALOGS = load_catalogs()
# A payment's short reference as a result screen shows it (`payments.references`), after the word
# each language introduces it with.
REF = re.compile(r"(?:Ref|Réf|Kumb\.) ([0-9A-HJKMNP-TV-Z]{10})\b")


@functools.cache
def redis_available(url: str = REDIS_URL) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_skip_reason(url: str = REDIS_URL) -> str:
    return f"Redis session store not tested: no Redis at {url}; set REDIS_URL"


async def forget_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def store_params() -> list:
    """``memory`` always; ``redis`` when a Redis answers, else skipped, saying so in the summary."""
    redis_param = pytest.param("redis", marks=pytest.mark.skipif(not redis_available(), reason=redis_skip_reason()))
    return ["memory", redis_param]


def phone_number(country: str = "KE", suffix: str = "123") -> str:
    if country == "KE":
        return f"+2547{unique_digits(5)}{suffix}"
    return f"+22177{unique_digits(4)}{suffix}"


async def sms_to(gw, msisdn: str) -> list[str]:
    urls = gw.runtime.sandbox_urls
    async with aiohttp.ClientSession() as http, http.get(f"{urls.africastalking}/_sandbox/messages",
                                                         params={"to": msisdn}) as resp:
        return [m["message"] for m in (await resp.json())["messages"]]


async def sms_saying(gw, msisdn: str, text: str) -> str:
    """The SMS (sent through the outbox, so a moment after the screen) to ``msisdn`` containing ``text``."""
    for _ in range(200):
        found = [m for m in await sms_to(gw, msisdn) if text in m]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no SMS to {msisdn} with {text!r}: {await sms_to(gw, msisdn)}")


async def customer(gw: Gateway, *, country: str = "KE", language: str = "en", name: str = "Amina Otieno",
                   funds: int = 0, suffix: str = "123", pin: str = PIN) -> User:
    """A registered customer with a PIN and a wallet (funded with ``funds`` major units)."""
    currency = Currency.KES if country == "KE" else Currency.XOF
    async with gw.engine.begin() as conn:
        user = await register_user(conn, phone_number(country, suffix), display_name=name,
                                   language=Language(language))
        await open_account(conn, AccountKind.CUSTOMER_WALLET, currency, user.id)
        await gw.app[PINS].set_pin(conn, user.id, pin)
    if funds:
        await gw.fund(user, Money.of(funds, currency))
    return user


@dataclass
class Phone:
    """A phone dialling the gateway; ``screen`` is what it shows now."""

    gw: Gateway
    msisdn: str
    http: aiohttp.ClientSession
    service_code: str = "*384*1#"
    session: PhoneSession | None = None
    screens: list[str] = field(default_factory=list)

    @property
    def screen(self) -> str:
        return self.session.screen if self.session else ""

    @property
    def ended(self) -> bool:
        return bool(self.session and self.session.ended)

    async def dial(self, extension: str = "", session_id: str | None = None) -> str:
        self.session = PhoneSession(self.gw.url, self.msisdn, self.service_code)
        if session_id:
            self.session.session_id = session_id
        return self._seen(await self.session.dial(self.http, extension))

    async def type(self, typed: str) -> str:
        assert self.session is not None
        return self._seen(await self.session.reply(self.http, typed))

    async def retry(self) -> str:
        assert self.session is not None
        return self._seen(await self.session.resend(self.http))

    def _seen(self, screen: str) -> str:
        assert length(screen) <= SCREEN_LIMIT, f"screen over {SCREEN_LIMIT} GSM-7 characters: {screen!r}"
        self.screens.append(screen)
        return screen

    def reference(self) -> str:
        found = REF.search(self.screen)
        assert found, f"no payment reference on {self.screen!r}"
        return found.group(1)


# -- transcripts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dial:
    extension: str = ""


@dataclass(frozen=True)
class Type:
    typed: str


@dataclass(frozen=True)
class See:
    """The screen (or note) with this catalog key, in the transcript's current language."""

    key: str


@dataclass(frozen=True)
class Shows:
    text: str


@dataclass(frozen=True)
class Ends:
    pass


@dataclass(frozen=True)
class Continues:
    pass


@dataclass(frozen=True)
class Speak:
    """From here on, screens are in ``language`` (after choosing one)."""

    language: str


Step = Dial | Type | See | Shows | Ends | Continues | Speak


def fragment(catalogs: Catalogs, language: str, key: str) -> str:
    """The longest fixed part of a catalog text (between its placeholders), to look for on a screen."""
    template = catalogs.texts[language][key]
    parts = re.split(r"\{[^}]*\}", template) if placeholders(template) else [template]
    best = max((p.strip() for line in parts for p in line.split("\n")), key=len)
    return best


async def run(phone: Phone, steps: Iterable[Step], language: str = "en") -> None:
    for step in steps:
        if isinstance(step, Dial):
            await phone.dial(step.extension)
        elif isinstance(step, Type):
            await phone.type(step.typed)
        elif isinstance(step, Speak):
            language = step.language
        elif isinstance(step, See):
            expected = fragment(CATALOGS, language, step.key)
            assert expected in phone.screen, f"[{language}] expected {step.key} ({expected!r}) on {phone.screen!r}"
        elif isinstance(step, Shows):
            assert step.text in phone.screen, f"expected {step.text!r} on {phone.screen!r}"
        elif isinstance(step, Ends):
            assert phone.ended, f"expected the session to end on {phone.screen!r}"
        elif isinstance(step, Continues):
            assert not phone.ended, f"expected the session to continue on {phone.screen!r}"
