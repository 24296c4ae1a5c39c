"""`sauti phone`: a feature phone in the terminal, speaking Africa's Talking's USSD protocol to a
running gateway (a demo and a debugging aid). Each answer is one hop: the whole input history
joined by ``*`` in ``text``, as Africa's Talking sends it; an extended dial code (``*384*1*2#``)
arrives as pre-typed input. `PhoneSession` is the protocol part, used by the tests too."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import aiohttp
import click


class DialError(ValueError):
    """A dial string that is not the service code or an extension of it."""


def split_dial(dial: str, service_code: str) -> tuple[str, str]:
    """``*384*1*2*3#`` with service code ``*384*1#`` → (``*384*1#``, ``2*3``)."""
    dial = dial.strip()
    if dial == service_code:
        return service_code, ""
    base = service_code.removesuffix("#")
    if dial.startswith(base + "*") and dial.endswith("#") and len(dial) > len(base) + 2:
        return service_code, dial[len(base) + 1:-1]
    raise DialError(f"{dial} is not {service_code} or an extension of it (like {base}*1#)")


@dataclass
class PhoneSession:
    """One USSD session as Africa's Talking would run it for one phone."""

    url: str
    msisdn: str
    service_code: str = "*384*1#"
    network_code: str = "99999"
    session_id: str = field(default_factory=lambda: f"ATUid_{uuid.uuid4().hex}")
    text: str = ""
    screen: str = ""
    ended: bool = False
    hops: int = 0

    async def _post(self, http: aiohttp.ClientSession) -> str:
        form = {"sessionId": self.session_id, "serviceCode": self.service_code, "phoneNumber": self.msisdn,
                "networkCode": self.network_code, "text": self.text}
        async with http.post(f"{self.url.rstrip('/')}/ussd", data=form) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"the gateway answered HTTP {resp.status}: {body[:200]}")
        if body.startswith("CON "):
            self.ended = False
        elif body.startswith("END "):
            self.ended = True
        else:
            raise RuntimeError(f"not an Africa's Talking answer (must start with CON or END): {body[:80]!r}")
        self.screen = body[4:]
        self.hops += 1
        return self.screen

    async def dial(self, http: aiohttp.ClientSession, prefilled: str = "") -> str:
        self.text, self.hops = prefilled, 0
        return await self._post(http)

    async def reply(self, http: aiohttp.ClientSession, typed: str) -> str:
        if self.ended:
            raise RuntimeError("the session has ended; dial again")
        self.text = f"{self.text}*{typed}" if (self.text or self.hops > 1) else typed
        return await self._post(http)

    async def resend(self, http: aiohttp.ClientSession) -> str:
        """The last hop again, as a network retry would send it."""
        return await self._post(http)


def _show(screen: str, ended: bool) -> None:
    width = max(24, *(len(line) for line in screen.splitlines() or [""]))
    click.echo("+" + "-" * (width + 2) + "+")
    for line in screen.splitlines() or [""]:
        click.echo(f"| {line.ljust(width)} |")
    click.echo("+" + "-" * (width + 2) + "+" + ("  (session ended)" if ended else ""))


async def _run(url: str, msisdn: str, service_code: str, prefilled: str, network_code: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        while True:
            session = PhoneSession(url, msisdn, service_code, network_code)
            _show(await session.dial(http, prefilled), session.ended)
            while not session.ended:
                typed = await _ask("> ")
                if typed is None:
                    return
                _show(await session.reply(http, typed), session.ended)
            again = await _ask(f"Dial {service_code} again? [y/N] ")
            if again is None or again.lower() not in ("y", "yes"):
                return
            prefilled = ""


async def _ask(prompt: str) -> str | None:
    """A line typed at ``prompt``, stripped; None at the end of input (Ctrl-D, or a piped script
    that ran out), which ends the phone quietly, as hanging up does."""
    try:
        return (await asyncio.to_thread(input, prompt)).strip()
    except EOFError:
        click.echo()
        return None


@click.command("phone")
@click.option("--dial", default=None, help="What to dial (default: ussd.service_code); *384*1*2# pre-selects 2.")
@click.option("--msisdn", required=True, help="The phone number dialling, e.g. +254712345678.")
@click.option("--url", default=None, help="The gateway (default: http://server.host:server.port).")
@click.option("--network-code", default="99999", show_default=True, help="networkCode sent (99999: AT sandbox).")
@click.pass_context
def phone(ctx: click.Context, dial: str | None, msisdn: str, url: str | None, network_code: str) -> None:
    """An interactive USSD phone talking to a running gateway, as Africa's Talking does."""
    settings = ctx.obj["settings"]
    service_code = settings.ussd.service_code
    try:
        code, prefilled = split_dial(dial or service_code, service_code)
    except DialError as exc:
        raise click.BadParameter(str(exc), param_hint="--dial") from None
    url = url or f"http://{settings.server.host}:{settings.server.port}"
    try:
        asyncio.run(_run(url, msisdn, code, prefilled, network_code))
    except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(f"{url}: {exc}") from None
    except KeyboardInterrupt:
        click.echo()
