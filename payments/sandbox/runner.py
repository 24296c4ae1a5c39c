"""Run the three sandboxes in-process on localhost ports and stop them cleanly.

    async with run_sandboxes(SandboxSettings.for_tests()) as sandboxes:
        sandboxes.urls.daraja, sandboxes.urls.wave, sandboxes.urls.africastalking

Ports are free ones chosen by the OS unless `port_base` is given (then base, base+1, base+2 for
Daraja, Wave and Africa's Talking; `free_port_base` finds one for processes that must be told it).
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from payments.sandbox.africastalking_server import AFRICASTALKING, AfricasTalkingSandbox, create_africastalking_sandbox
from payments.sandbox.daraja_server import DARAJA, DarajaSandbox, create_daraja_sandbox
from payments.sandbox.settings import SandboxSettings
from payments.sandbox.wave_server import WAVE, WaveSandbox, create_wave_sandbox


@dataclass(frozen=True, slots=True)
class SandboxUrls:
    daraja: str
    wave: str
    africastalking: str


class RunningSandboxes:
    """The three running sandboxes: their URLs, their state (for tests), and `stop`."""

    def __init__(self, settings: SandboxSettings, runners: list[web.AppRunner], urls: SandboxUrls) -> None:
        self.settings = settings
        self.urls = urls
        self._runners = runners
        daraja_app, wave_app, at_app = (r.app for r in runners)
        self.daraja: DarajaSandbox = daraja_app[DARAJA]
        self.wave: WaveSandbox = wave_app[WAVE]
        self.africastalking: AfricasTalkingSandbox = at_app[AFRICASTALKING]

    @property
    def daraja_certificate_pem(self) -> bytes:
        """The certificate to encrypt the B2C SecurityCredential with (as Safaricom's would be)."""
        return self.daraja.keys.certificate_pem

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners = []


async def _serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    # A short shutdown grace: a "slow" answer in flight must not hold Ctrl-C for long.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    shown_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown_host}:{bound_port}"


def _outgoing_ports() -> range:
    """The ports the kernel gives outgoing connections (Linux's ``ip_local_port_range``)."""
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32_768, 60_999  # Linux's default
    return range(low, high + 1)


def free_port_base(host: str = "127.0.0.1", length: int = 3) -> int:
    """The first of ``length`` consecutive ports free on ``host`` now: a ``port_base`` for
    `start_sandboxes` that other processes can be told (Daraja, Wave and Africa's Talking sit at
    +0, +1, +2; free ports picked one by one need not be consecutive). Never one the kernel may give
    an outgoing connection meanwhile (a test's HTTP client, a database connection): a port picked
    there was taken between the pick and the bind ("address already in use")."""
    outgoing = _outgoing_ports()
    below = range(10_000, outgoing.start - length) if outgoing.start - length > 11_000 else range(20_000, 60_000)
    for _ in range(50):
        base = random.randrange(below.start, below.stop)
        if outgoing.start <= base + length - 1 and base <= outgoing.stop - 1:
            continue
        try:
            for offset in range(length):
                with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
                    s.bind((host, base + offset))
        except OSError:
            continue
        return base
    raise OSError(f"no {length} consecutive free ports on {host}")


async def start_sandboxes(
    settings: SandboxSettings | None = None, *, host: str = "127.0.0.1", port_base: int | None = None
) -> RunningSandboxes:
    settings = settings or SandboxSettings()
    apps = [create_daraja_sandbox(settings), create_wave_sandbox(settings), create_africastalking_sandbox(settings)]
    runners: list[web.AppRunner] = []
    urls: list[str] = []
    try:
        for offset, app in enumerate(apps):
            runner, url = await _serve(app, host, 0 if port_base is None else port_base + offset)
            runners.append(runner)
            urls.append(url)
    except BaseException:
        for runner in reversed(runners):
            await runner.cleanup()
        raise
    return RunningSandboxes(settings, runners, SandboxUrls(*urls))


@asynccontextmanager
async def run_sandboxes(
    settings: SandboxSettings | None = None, *, host: str = "127.0.0.1", port_base: int | None = None
) -> AsyncIterator[RunningSandboxes]:
    running = await start_sandboxes(settings, host=host, port_base=port_base)
    try:
        yield running
    finally:
        await running.stop()
