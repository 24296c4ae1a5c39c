"""Fixtures for the provider tests: the three sandboxes (one set per session, on free localhost
ports), clients pointed at them, and a callback receiver: a small aiohttp app that records every
POST it gets, over real HTTP, and answers as a test tells it to."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from payments.providers.daraja import DarajaClient, DarajaSettings
from payments.providers.sms import SmsSender, SmsSettings
from payments.providers.wave import WaveClient, WaveSettings
from payments.sandbox.runner import RunningSandboxes, run_sandboxes
from payments.sandbox.settings import SandboxSettings
from tests.http_servers import serve_app


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Delivery], tuple[int, Any]]


class CallbackReceiver:
    """Records POSTs by path. Answers 200 ``{"ResultCode": 0}`` unless told otherwise."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._responders: dict[str, Responder] = {}
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return self.base_url + path

    def respond(self, path: str, responder: Responder) -> None:
        """Answer POSTs to `path` with ``responder(delivery) -> (status, json body)``."""
        self._responders[path] = responder

    def fail_first(self, path: str, times: int, status: int = 500) -> None:
        """Answer the first `times` POSTs to `path` with `status`, then 200."""
        remaining = [times]

        def responder(delivery: Delivery) -> tuple[int, Any]:
            if remaining[0] > 0:
                remaining[0] -= 1
                return status, {"error": "not now"}
            return 200, {"ResultCode": 0}

        self.respond(path, responder)

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def wait_for(self, path: str, count: int = 1, within_s: float = 5.0) -> list[Delivery]:
        async def enough() -> None:
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.at(path)) >= count)

        try:
            await asyncio.wait_for(enough(), within_s)
        except TimeoutError:
            raise AssertionError(f"expected {count} POSTs to {path}, got {len(self.at(path))}") from None
        return self.at(path)

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(request.path, dict(request.headers), await request.read(), time.monotonic())
        async with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()
        responder = self._responders.get(request.path)
        status, body = responder(delivery) if responder else (200, {"ResultCode": 0, "ResultDesc": "Success"})
        return web.json_response(body, status=status)


def daraja_settings_for(
    settings: SandboxSettings, base_url: str, certificate_pem: bytes, **overrides: Any
) -> DarajaSettings:
    values: dict[str, Any] = {
        "consumer_key": settings.daraja_consumer_key,
        "consumer_secret": settings.daraja_consumer_secret,
        "shortcode": settings.daraja_shortcode,
        "passkey": settings.daraja_passkey,
        "base_url": base_url,
        "initiator_name": settings.daraja_initiator_name,
        "initiator_password": settings.daraja_initiator_password,
        "certificate_pem": certificate_pem,
        "timeout_s": 5.0,
    }
    return DarajaSettings(**{**values, **overrides})


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sandboxes() -> AsyncIterator[RunningSandboxes]:
    # A small page size so that statement paging is exercised with a handful of transactions.
    async with run_sandboxes(SandboxSettings.for_tests(wave_transactions_page_size=3)) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_outcomes(request: pytest.FixtureRequest) -> Any:
    """Overrides set by one test never leak into the next."""
    yield
    if "sandboxes" in request.fixturenames:
        running: RunningSandboxes = request.getfixturevalue("sandboxes")
        for book in (running.daraja.outcomes, running.wave.outcomes, running.africastalking.outcomes):
            book.clear()
        running.wave.webhook = None  # the next test's receiver is another server


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    receiving = CallbackReceiver()
    await receiving.start()
    yield receiving
    await receiving.stop()


@pytest.fixture
def daraja_settings(sandboxes: RunningSandboxes) -> DarajaSettings:
    return daraja_settings_for(sandboxes.settings, sandboxes.urls.daraja, sandboxes.daraja_certificate_pem)


@pytest_asyncio.fixture
async def daraja(daraja_settings: DarajaSettings) -> AsyncIterator[DarajaClient]:
    async with DarajaClient(daraja_settings) as client:
        yield client


@pytest_asyncio.fixture
async def wave(sandboxes: RunningSandboxes) -> AsyncIterator[WaveClient]:
    settings = WaveSettings(api_key=sandboxes.settings.wave_api_key, base_url=sandboxes.urls.wave, timeout_s=5.0)
    async with WaveClient(settings) as client:
        yield client


@pytest.fixture
def sms(sandboxes: RunningSandboxes) -> SmsSender:
    return SmsSender(
        SmsSettings(
            username=sandboxes.settings.at_username,
            api_key=sandboxes.settings.at_api_key,
            base_url=sandboxes.urls.africastalking,
            sender_id="SAUTI",
        )
    )


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client for the sandboxes' control API."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def set_outcome(
    http: aiohttp.ClientSession,
    base_url: str,
    outcome: str,
    *,
    msisdn: str | None = None,
    times: int = 1,
    delay_s: float | None = None,
) -> None:
    body: dict[str, Any] = {"outcome": outcome, "times": times}
    if msisdn is not None:
        body["msisdn"] = msisdn
    if delay_s is not None:
        body["delay_s"] = delay_s
    async with http.post(f"{base_url}/_sandbox/outcomes", json=body) as resp:
        assert resp.status == 200, await resp.text()


@pytest.fixture
def control() -> Callable[..., Any]:
    """``await control(http, base_url, outcome, msisdn=..., times=..., delay_s=...)``."""
    return set_outcome


@pytest.fixture
def serve() -> Callable[[web.Application], Any]:
    """``async with serve(app) as base_url:`` runs an extra sandbox app with its own settings."""
    return serve_app


@pytest.fixture
def daraja_settings_factory() -> Callable[..., DarajaSettings]:
    """``daraja_settings_factory(sandbox_settings, base_url, certificate_pem, **overrides)``."""
    return daraja_settings_for
