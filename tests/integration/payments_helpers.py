"""The payment orchestrator's test world: a database of its own, the three provider sandboxes over
real HTTP, the clients pointed at them, an outbox worker with the orchestrator's handlers, and a
small aiohttp server that receives the providers' callbacks and hands them, parsed, to the
orchestrator, as the gateway will. Nothing of ours is mocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from gateway.errors import error_middleware
from gateway.keys import DB_ENGINE, PAYMENTS, SETTINGS
from gateway.payments_resources import PAYMENTS_RUNTIME, CallbackAuth, PaymentsRuntime
from gateway.settings import Settings
from payments.commands import Channel, Deposit
from payments.identities import User
from payments.ledger import Ledger, LedgerLimits
from payments.money import Money
from payments.orchestrator import Payments, PaymentSettings, ProviderClients
from payments.outbox import RetryPolicy
from payments.payment_settings import (
    CALLBACK_C2B_CONFIRMATION,
    CALLBACK_C2B_VALIDATION,
)
from payments.payment_store import Payment
from payments.providers.daraja import DarajaClient, DarajaSettings
from payments.providers.daraja_callbacks import (
    callback_acknowledgement,
    parse_c2b_payment,
    parse_queue_timeout,
    parse_result,
    parse_stk_callback,
)
from payments.providers.sms import SmsSender, SmsSettings
from payments.providers.wave import WaveClient, WaveSettings
from payments.providers.wave_webhooks import SigningSecret, WebhookRejected, verify_webhook
from payments.sandbox.runner import RunningSandboxes, run_sandboxes
from payments.sandbox.settings import SandboxSettings
from payments.states import PaymentStatus
from payments.webhook_delivery import WebhookSender
from payments.worker import OutboxWorker
from tests.http_servers import serve_app
from tests.ledger_views import LedgerViews

CALLBACK_SECRET = "cb-7f3a"  # a secret path segment, as the gateway will use


@dataclass
class CallbackServer:
    """Receives Daraja's POSTs and applies them through the orchestrator; remembers what each did."""

    payments: Payments | None = None
    wave_security: SigningSecret | None = None
    outcomes: list[tuple[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/{CALLBACK_SECRET}/stk", self._stk)
        app.router.add_post(f"/{CALLBACK_SECRET}/b2c/result", self._b2c_result)
        app.router.add_post(f"/{CALLBACK_SECRET}/b2c/timeout", self._b2c_timeout)
        app.router.add_post(f"/{CALLBACK_SECRET}/wave/webhook", self._wave_webhook)
        results = {"b2b/result": Payments.on_b2b_result, "reversal/result": Payments.on_reversal_result,
                   "status/result": Payments.on_status_result}
        timeouts = {"b2b/timeout": Payments.on_b2b_queue_timeout,
                    "reversal/timeout": Payments.on_reversal_queue_timeout,
                    "status/timeout": Payments.on_status_queue_timeout}
        for path, apply in results.items():
            app.router.add_post(f"/{CALLBACK_SECRET}/{path}", self._daraja(path, parse_result, apply))
        for path, apply in timeouts.items():
            app.router.add_post(f"/{CALLBACK_SECRET}/{path}", self._daraja(path, parse_queue_timeout, apply))
        app.router.add_post(f"/{CALLBACK_SECRET}{CALLBACK_C2B_VALIDATION}", self._c2b_validation)
        app.router.add_post(f"/{CALLBACK_SECRET}{CALLBACK_C2B_CONFIRMATION}",
                            self._daraja("c2b/confirmation", parse_c2b_payment, Payments.on_c2b_confirmation))
        return app

    def _daraja(self, what: str, parse: Any, apply: Any) -> Any:
        """A receiver for one more Daraja callback: parse the body, apply it, record what it did."""
        async def receive(request: web.Request) -> web.Response:
            assert self.payments is not None
            return self._answer(what, await apply(self.payments, parse(await request.read())))
        return receive

    async def _c2b_validation(self, request: web.Request) -> web.Response:
        assert self.payments is not None
        answer = await self.payments.on_c2b_validation(parse_c2b_payment(await request.read()))
        self.outcomes.append(("c2b/validation", answer["ResultCode"]))
        return web.json_response(answer)

    async def _stk(self, request: web.Request) -> web.Response:
        assert self.payments is not None
        outcome = await self.payments.on_stk_callback(parse_stk_callback(await request.read()))
        return self._answer("stk", outcome)

    async def _b2c_result(self, request: web.Request) -> web.Response:
        assert self.payments is not None
        outcome = await self.payments.on_b2c_result(parse_result(await request.read()))
        return self._answer("b2c_result", outcome)

    async def _b2c_timeout(self, request: web.Request) -> web.Response:
        assert self.payments is not None
        outcome = await self.payments.on_b2c_queue_timeout(parse_queue_timeout(await request.read()))
        return self._answer("b2c_timeout", outcome)

    async def _wave_webhook(self, request: web.Request) -> web.Response:
        assert self.payments is not None and self.wave_security is not None
        raw = await request.read()
        try:
            event = verify_webhook(raw, request.headers, self.wave_security)
        except WebhookRejected:
            return web.json_response({"error": "rejected"}, status=401)
        return self._answer("wave", await self.payments.on_wave_event(event))

    def _answer(self, what: str, outcome: str) -> web.Response:
        self.outcomes.append((what, outcome))
        return web.json_response(callback_acknowledgement())


@dataclass
class PaymentsWorld(LedgerViews):
    engine: AsyncEngine
    ledger: Ledger
    payments: Payments
    worker: OutboxWorker
    sandboxes: RunningSandboxes
    callbacks: CallbackServer

    async def settle(self, public_id: str, *, within_s: float = 8.0) -> Payment:
        """Run outbox jobs and wait for callbacks until the payment is final, then run what its
        final state enqueued (receipts)."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            await self.worker.drain()
            payment = await self.payment(public_id)
            if payment.status.is_final:
                await self.worker.drain()
                return payment
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"payment {public_id} still {payment.status} after {within_s}s")
            await asyncio.sleep(0.03)

    async def deposit_credited_without_receipt(self, amount: Money, key: str) -> tuple[User, Payment]:
        """An M-Pesa deposit whose callback never came (a number ending 900), credited by recovery's
        STK query: it succeeded with no receipt among its references."""
        user = await self.user(suffix="900")
        deposit = await self.payments.handle(Deposit(key, user.id, amount, Channel.USSD))
        for _ in range(300):
            await self.worker.drain()
            if (await self.payment(deposit.public_id)).status is PaymentStatus.PROCESSING:
                break
            await asyncio.sleep(0.02)
        for _ in range(300):
            await self.payments.recover_stuck(timedelta(0))
            deposit = await self.payment(deposit.public_id)
            if deposit.status is PaymentStatus.SUCCEEDED:
                break
            await asyncio.sleep(0.05)
        assert deposit.status is PaymentStatus.SUCCEEDED and "receipt" not in deposit.provider_refs
        return user, deposit

    async def until_callback(self, what: str, outcome: str | None = None, *, after: int = 0,
                             within_s: float = 8.0) -> str:
        """Run outbox jobs and wait until a callback of kind ``what`` (with ``outcome``, when given)
        was applied, among those received after the first ``after``; returns its outcome."""
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            await self.worker.drain()
            for seen, did in self.callbacks.outcomes[after:]:
                if seen == what and (outcome is None or did == outcome):
                    return did
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {what} callback {outcome or ''} within {within_s}s: "
                                     f"{self.callbacks.outcomes[after:]}")
            await asyncio.sleep(0.02)


def daraja_settings(sandboxes: RunningSandboxes, *, timeout_s: float = 5.0) -> DarajaSettings:
    settings = sandboxes.settings
    return DarajaSettings(
        consumer_key=settings.daraja_consumer_key, consumer_secret=settings.daraja_consumer_secret,
        shortcode=settings.daraja_shortcode, passkey=settings.daraja_passkey, base_url=sandboxes.urls.daraja,
        initiator_name=settings.daraja_initiator_name, initiator_password=settings.daraja_initiator_password,
        certificate_pem=sandboxes.daraja_certificate_pem, timeout_s=timeout_s)


@asynccontextmanager
async def payments_world(database_url: str, *, sandbox: dict[str, Any] | None = None,
                         daraja_timeout_s: float = 5.0, **settings: Any) -> AsyncIterator[PaymentsWorld]:
    """Everything the orchestrator talks to, started; stopped in reverse order on exit. ``sandbox``
    overrides the sandboxes' test settings (e.g. a longer ``callback_delay_s``), ``daraja_timeout_s``
    how long the Daraja client waits for an answer (below the sandbox's ``slow_answer_s``: slow
    answers time out), ``settings`` the orchestrator's."""
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url, pool_size=10, max_overflow=10)
        stack.push_async_callback(engine.dispose)
        callbacks = CallbackServer()
        base = f"{await stack.enter_async_context(serve_app(callbacks.app()))}/{CALLBACK_SECRET}"
        sandboxes = await stack.enter_async_context(run_sandboxes(SandboxSettings.for_tests(
            wave_webhook_url=f"{base}/wave/webhook", **(sandbox or {}))))
        callbacks.wave_security = SigningSecret(sandboxes.settings.wave_webhook_secrets)
        daraja = await stack.enter_async_context(DarajaClient(daraja_settings(sandboxes, timeout_s=daraja_timeout_s)))
        wave = await stack.enter_async_context(WaveClient(WaveSettings(
            api_key=sandboxes.settings.wave_api_key, base_url=sandboxes.urls.wave, timeout_s=5.0)))
        sms = SmsSender(SmsSettings(username=sandboxes.settings.at_username, api_key=sandboxes.settings.at_api_key,
                                    base_url=sandboxes.urls.africastalking, sender_id="SAUTI"))
        policy = PaymentSettings(callback_base_url=base, **settings)
        # As `gateway.resources.ledger_limits` sizes it: the amount cap plus the plans' largest fee on it.
        ledger = Ledger(engine, LedgerLimits.for_payments(999_999, policy.fee_plans.values()))
        # Webhooks to the tests' receivers, on this machine.
        payments = Payments(engine, ledger, settings=policy,
                            providers=ProviderClients(daraja=daraja, wave=wave, sms=sms),
                            webhooks=WebhookSender(engine, allow_local=True))
        stack.push_async_callback(payments.webhooks.close)
        callbacks.payments = payments
        worker = OutboxWorker(engine, payments.register_handlers(), concurrency=4, listen=False,
                              retry=RetryPolicy(base_s=0.05, max_s=0.2), max_attempts=5)
        yield PaymentsWorld(engine, ledger, payments, worker, sandboxes, callbacks)


def module_world(**options: Any) -> tuple[Any, Any]:
    """The fixtures most payments test modules open with, as ``world, ledger_stays_consistent =
    module_world()``: one `payments_world` on a database of the module's own (with ``options``: its
    sandbox's, its timeouts), and after every test the ledger's invariants checked."""

    @pytest.fixture(scope="module")
    async def world(new_database) -> AsyncIterator[PaymentsWorld]:
        async with payments_world(await new_database(), **options) as running:
            yield running

    @pytest.fixture(autouse=True)
    async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
        yield
        await world.assert_ledger_ok()

    return world, ledger_stays_consistent


@asynccontextmanager
async def api_client(world: PaymentsWorld, settings: Settings,
                     *mounts: Callable[[web.Application], None]) -> AsyncIterator[TestClient]:
    """The JSON APIs that ``mounts`` add (as the gateway mounts them), over real HTTP, on an app
    holding ``settings`` and the world's engine and orchestrator, behind the gateway's own error
    middleware."""
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[DB_ENGINE] = world.engine
    app[PAYMENTS] = world.payments
    # As `sauti serve` in sandbox mode: what reconciliation reads the statements through.
    app[PAYMENTS_RUNTIME] = PaymentsRuntime(world.payments, "sandbox", CallbackAuth((CALLBACK_SECRET,), None),
                                            sandbox_urls=world.sandboxes.urls)
    for mount in mounts:
        mount(app)
    async with TestClient(TestServer(app)) as client:
        yield client


def stk_callback(checkout_id: str, result_code: int = 0, desc: str = "The service request is processed.", *,
                 amount: Money | int = 0, receipt: str | None = None, phone: str | None = None) -> dict[str, Any]:
    """An STK callback as Daraja POSTs it to our CallBackURL (the contract, mpesa-daraja.md:
    CallbackMetadata only when ResultCode is 0), or as a forger could; ``amount`` in whole shillings."""
    body: dict[str, Any] = {"MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout_id,
                            "ResultCode": result_code, "ResultDesc": desc}
    if result_code == 0:
        shillings = amount.minor // 100 if isinstance(amount, Money) else amount
        body["CallbackMetadata"] = {"Item": [
            {"Name": "Amount", "Value": shillings}, {"Name": "MpesaReceiptNumber", "Value": receipt},
            {"Name": "TransactionDate", "Value": 20261201120000},
            {"Name": "PhoneNumber", "Value": int((phone or "+254700000000").removeprefix("+"))}]}
    return {"Body": {"stkCallback": body}}


def local(phone: str) -> str:
    """``+254712345678`` as a customer types it on the phone (an account number, a payer): ``0712345678``."""
    return "0" + phone.removeprefix("+254")
