"""The gateway with its payment orchestrator, as `sauti serve` runs it: `create_app(settings)` on a
real TCP port, a migrated database of its own, the provider sandboxes calling back over HTTP, and
small helpers to register users, fund wallets and wait for payments to end. Nothing is mocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.keys import DB_ENGINE, LEDGER, PAYMENTS
from gateway.payments_resources import PAYMENTS_RUNTIME, PaymentsRuntime
from gateway.settings import Settings
from payments.ledger import Ledger
from payments.orchestrator import Payments
from payments.payment_store import Payment
from payments.sandbox.runner import free_port_base
from payments.states import PaymentStatus
from tests.ledger_views import LedgerViews

#: Daraja callback secret of these tests (long enough for the settings' check).
SECRET = "e2e-callback-secret-0123456789abcdef"
#: The secret before SECRET: every gateway here is in the middle of changing it (gateway.callbacks).
PREVIOUS_SECRET = "e2e-previous-secret-fedcba9876543210"


def free_port() -> int:
    """A port free now, outside those the kernel gives outgoing connections (`free_port_base`)."""
    return free_port_base(length=1)


async def until_serving(port: int, process: asyncio.subprocess.Process, within_s: float = 30.0) -> None:
    """Wait for a `sauti serve` process to answer ``/readyz`` on ``port``; fails the test with its
    output if it exits first or never answers."""
    async with aiohttp.ClientSession() as http:
        for _ in range(int(within_s * 10)):
            if process.returncode is not None:
                output = (await process.stdout.read()).decode() if process.stdout else ""
                pytest.fail(f"sauti serve exited with {process.returncode}: {output[-3000:]}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    pytest.fail(f"sauti serve did not become ready on :{port} within {within_s:g} s")


def _merge(into: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


PIN_CHECK_KEY = "test-pin-check-key-0123456789abcdef"


def gateway_settings(database_url: str, port: int, **sections: Any) -> Settings:
    """Sandbox providers, fast retries and callbacks, recovery out of the way unless asked for."""
    tree: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout_s": 5},
        "database": {"url": database_url, "migrate_on_start": False},
        "outbox": {"poll_interval_s": 0.05, "backoff_base_s": 0.05, "backoff_max_s": 0.2, "max_attempts": 5},
        "payments": {"callback_secret": SECRET, "callback_previous_secret": PREVIOUS_SECRET,
                     "stuck_after_s": 3600, "recovery_interval_s": 3600},
        "providers": {"mode": "sandbox", "sandbox": {"callback_delay_s": 0.05}},
        # Keyed PIN checks, as by default, with a key of the test's own (not one generated in var/).
        "security": {"pin_check_key": PIN_CHECK_KEY},
    }
    return Settings.model_validate(_merge(tree, sections))


@dataclass
class Gateway(LedgerViews):
    """A running gateway and what tests need of it."""

    app: web.Application
    url: str

    @property
    def engine(self) -> AsyncEngine:
        return self.app[DB_ENGINE]

    @property
    def ledger(self) -> Ledger:
        return self.app[LEDGER]

    @property
    def payments(self) -> Payments:
        return self.app[PAYMENTS]

    @property
    def runtime(self) -> PaymentsRuntime:
        return self.app[PAYMENTS_RUNTIME]

    async def post(self, path: str, body: bytes | str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.post(
                self.url + path, data=body, headers={"Content-Type": "application/json", **(headers or {})}) as resp:
            return resp.status, await resp.json(content_type=None)


async def sandbox_deliveries(gw: Gateway, provider: str) -> list[dict]:
    """Every callback (Daraja) or webhook (Wave) the sandbox POSTed, with the status we answered."""
    urls = gw.runtime.sandbox_urls
    assert urls is not None
    url = f"{urls.daraja}/_sandbox/callbacks" if provider == "daraja" else f"{urls.wave}/_sandbox/webhooks/deliveries"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return (await resp.json())["attempts"]


async def wait_for(gateway: Gateway, public_id: str, *statuses: PaymentStatus, within_s: float = 10.0) -> Payment:
    """The payment once it reaches one of ``statuses`` (its final ones when none are given); the
    gateway's own worker and the providers' callbacks get it there."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        payment = await gateway.payment(public_id)
        if payment.status in statuses or (not statuses and payment.status.is_final):
            return payment
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"payment {public_id} still {payment.status} after {within_s}s")
        await asyncio.sleep(0.03)


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """`create_app(settings)` listening on ``settings.server`` (a real TCP site), stopped on exit."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.server.host, settings.server.port).start()
        yield Gateway(app, f"http://{settings.server.host}:{settings.server.port}")
    finally:
        await runner.cleanup()
