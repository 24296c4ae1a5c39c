"""The payment orchestrator's wiring: provider clients (live, or pointed at the sandboxes) and
`payments.orchestrator.Payments`, built from `Settings` and an engine by ONE function,
`open_payments`, which `sauti serve` (cleanup context `payments_ctx`) and `sauti worker` share; and
`recovery_ctx`, the loop that resolves stuck payments in `sauti serve`.

Provider mode (``providers.mode``): ``live`` talks to Daraja, Wave and Africa's Talking with the
configured credentials; ``sandbox`` talks to the local sandboxes (`payments.sandbox`), which
`sauti serve` starts in-process (``providers.sandbox.run_in_serve``) on ``port_base`` or free ports,
calling back to this gateway. A sandbox keeps its state in memory, so every process must talk to the
same ones: `sauti worker` never starts its own; it reaches them at ``providers.sandbox.port_base``.

Daraja signs nothing: its callback URLs are ``<callback_base_url>/callbacks/<secret>/…``. The
secret is ``payments.callback_secret``, or one generated once into ``callback_secret_file`` so that
every process on this machine agrees on it. It never reaches a log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from dialogs.catalog import screen_catalogs
from dialogs.receipts import intent_notice_writer, receipt_writer
from gateway.generated_secrets import BadSecretFile, generated_secret
from gateway.keys import DB_ENGINE, LEDGER, PAYMENTS, SETTINGS
from gateway.settings import PaymentsSection, SandboxSection, Settings
from payments.errors import InvalidRequest
from payments.fees import FeePlan, Limits
from payments.ledger import Ledger
from payments.money import Currency
from payments.orchestrator import Payments
from payments.payment_settings import PROVIDER_FOR, PaymentSettings, ProviderClients
from payments.providers.daraja import DarajaClient, DarajaSettings
from payments.providers.daraja_credentials import security_credential
from payments.providers.errors import ProviderError
from payments.providers.sms import SmsSender, SmsSettings
from payments.providers.wave import WaveClient, WaveSettings
from payments.providers.wave_webhooks import SharedSecret, SigningSecret, WebhookSecurity
from payments.sandbox.runner import RunningSandboxes, SandboxUrls, start_sandboxes
from payments.sandbox.settings import SandboxSettings
from payments.webhook_delivery import WebhookSender

log = logging.getLogger(__name__)

#: Where Wave's webhooks come in (`gateway.callbacks` routes it).
WAVE_WEBHOOK_PATH = "/callbacks/wave"


class ProvidersUnavailable(Exception):
    """The providers cannot be set up as configured (an unreadable certificate, sandboxes that do
    not answer); the message says what to fix."""


@dataclass(frozen=True)
class CallbackAuth:
    """What authenticates provider deliveries: Daraja's URL secret and Wave's webhook security."""

    #: The secret new callback URLs carry, then the one before it while it is being changed.
    daraja_secrets: tuple[str, ...] = field(repr=False)
    #: None when Wave is not configured: its webhook route then answers 404.
    wave: WebhookSecurity | None = field(repr=False)


@dataclass(frozen=True)
class PaymentsRuntime:
    """`Payments` with everything it was built with."""

    payments: Payments
    mode: str
    callbacks: CallbackAuth
    #: The sandboxes this process runs (sandbox mode, in `sauti serve`); None otherwise.
    sandboxes: RunningSandboxes | None = None
    #: Where the sandboxes are (sandbox mode, when reachable); None otherwise.
    sandbox_urls: SandboxUrls | None = None
    #: False for a `sauti worker` in sandbox mode whose sandboxes run inside `sauti serve` on free
    #: ports: it has no provider clients and must leave provider jobs to serve's worker.
    providers_reachable: bool = True


CALLBACK_AUTH = web.AppKey("callback_auth", CallbackAuth)
PAYMENTS_RUNTIME = web.AppKey("payments_runtime", PaymentsRuntime)


# -- what the settings say ------------------------------------------------------------------------


def public_base_url(settings: Settings) -> str:
    """This gateway's URL as providers reach it: ``payments.callback_base_url``, or the address
    `sauti serve` listens on (a wildcard address is reached on the loopback)."""
    if settings.payments.callback_base_url:
        return settings.payments.callback_base_url.rstrip("/")
    host = settings.server.host
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 -- mapped away
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.server.port}"


def callback_secret(settings: Settings) -> str:
    """The configured secret, or the generated one kept in ``callback_secret_file``."""
    configured = settings.payments.callback_secret
    if configured is not None:
        return configured.get_secret_value()
    try:
        return generated_secret(settings.payments.callback_secret_file, "callback secret")
    except BadSecretFile as exc:
        raise ProvidersUnavailable(str(exc)) from None


def payment_settings(section: PaymentsSection, callback_base_url: str, *, hot_account_shards: int = 8,
                     stk_orphan_grace_s: float = 120.0) -> PaymentSettings:
    """The orchestrator's policy from the ``payments:`` section (and ``ledger.hot_account_shards``;
    an unrecorded STK push's grace is twice ``outbox.lease_s``, past which a push job is cut short)."""
    plans = {name: FeePlan(name, plan.basis_points, plan.monthly_allowance) for name, plan in section.fee_plans.items()}
    limits = Limits(
        per_transaction_max={Currency(code): cap for code, cap in section.limits.per_transaction_max.items()},
        daily_by_tier={tier: {Currency(code): cap for code, cap in caps.items()}
                       for tier, caps in section.limits.daily_by_tier.items()},
    )
    return PaymentSettings(
        callback_base_url=callback_base_url, confirm_stk_with_query=section.confirm_stk_with_query,
        fee_plans=plans, default_plan=section.default_plan, limits=limits,
        stk_account_reference=section.stk_account_reference, stk_description=section.stk_description,
        b2c_remarks=section.b2c_remarks, wave_success_url=section.wave_success_url,
        wave_error_url=section.wave_error_url, sms_receipts=section.sms_receipts,
        hot_account_shards=hot_account_shards, stk_orphan_grace_s=stk_orphan_grace_s,
        max_contacts_per_user=section.max_contacts_per_user, intent_expiry_s=section.intent_expiry_s,
        max_pending_intents=section.max_pending_intents,
        max_pending_intents_per_merchant=section.max_pending_intents_per_merchant,
        max_intents_per_day=section.max_intents_per_day, intent_sweep_interval_s=section.intent_sweep_interval_s)


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


# -- live providers -------------------------------------------------------------------------------


def _live_daraja(settings: Settings) -> DarajaSettings | None:
    m = settings.providers.mpesa
    if not m.configured:
        return None
    credential = _secret(m.security_credential)
    if credential is None and m.certificate_path is not None and m.initiator_password is not None:
        # Encrypt once now: a bad certificate stops start-up instead of failing every payout.
        try:
            credential = security_credential(m.initiator_password.get_secret_value(), m.certificate_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ProvidersUnavailable(f"providers.mpesa.certificate_path {m.certificate_path}: "
                                       f"{type(exc).__name__}: {exc}") from None
    return DarajaSettings(
        consumer_key=_secret(m.consumer_key) or "", consumer_secret=_secret(m.consumer_secret) or "",
        shortcode=m.shortcode or "", passkey=_secret(m.passkey) or "", base_url=m.base_url.rstrip("/"),
        initiator_name=m.initiator_name, security_credential=credential,
        timeout_s=m.timeout_s, connect_timeout_s=m.connect_timeout_s)


def _live_wave(settings: Settings) -> tuple[WaveSettings | None, WebhookSecurity | None]:
    w = settings.providers.wave
    if not w.configured or w.webhook_secret is None:
        return None, None
    client = WaveSettings(api_key=_secret(w.api_key) or "", base_url=w.base_url.rstrip("/"),
                          signing_secret=_secret(w.signing_secret), timeout_s=w.timeout_s,
                          connect_timeout_s=w.connect_timeout_s)
    current = w.webhook_secret.get_secret_value()
    if w.webhook_strategy == "shared_secret":
        return client, SharedSecret(current)
    previous = _secret(w.webhook_previous_secret)
    return client, SigningSecret((current, previous) if previous else (current,))


def _live_sms(settings: Settings) -> SmsSettings | None:
    s = settings.providers.sms
    if not s.configured:
        return None
    return SmsSettings(username=s.username or "", api_key=_secret(s.api_key) or "", sender_id=s.sender_id,
                       base_url=s.base_url, connect_timeout_s=s.connect_timeout_s, read_timeout_s=s.read_timeout_s)


# -- sandboxes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sandbox:
    settings: SandboxSettings
    urls: SandboxUrls
    certificate_pem: bytes = field(repr=False)
    running: RunningSandboxes | None = None


def _sandbox_urls(host: str, port_base: int) -> SandboxUrls:
    shown = f"[{host}]" if ":" in host else host
    return SandboxUrls(*(f"http://{shown}:{port_base + offset}" for offset in range(3)))


async def _reach_sandboxes(settings: Settings, *, register_webhook_url: str | None) -> _Sandbox:
    """The sandboxes another process runs (`sauti serve`, `sauti sandbox`), at ``port_base``: fetch
    the Daraja certificate and, for a gateway, point Wave's webhooks at it."""
    box = settings.providers.sandbox
    assert box.port_base is not None
    sandbox_settings = SandboxSettings()  # the credentials `sauti sandbox` and `sauti serve` start them with
    urls = _sandbox_urls(box.host, box.port_base)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(f"{urls.daraja}/_sandbox/certificate") as resp:
                resp.raise_for_status()
                certificate = await resp.read()
            if register_webhook_url is not None:
                body = {"url": register_webhook_url, "strategy": "signing",
                        "secrets": list(sandbox_settings.wave_webhook_secrets)}
                async with http.post(f"{urls.wave}/_sandbox/webhooks", json=body) as resp:
                    resp.raise_for_status()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProvidersUnavailable(
            f"the provider sandboxes at {urls.daraja} (providers.sandbox.port_base) do not answer "
            f"({type(exc).__name__}); start them first: `sauti sandbox --port-base {box.port_base}`, or "
            "`sauti serve` with providers.sandbox.run_in_serve") from None
    return _Sandbox(sandbox_settings, urls, certificate)


SANDBOXES_OUT_OF_REACH = (
    "sandbox mode, but the sandboxes run inside `sauti serve` on free ports this process cannot know: provider "
    "jobs are left to serve's in-process worker (this worker claims none; it sends webhooks). Set "
    "providers.sandbox.port_base (e.g. 8700) to run `sauti worker` processes in sandbox mode")


async def start_local_sandboxes(box: SandboxSection, *, port_base: int | None,
                                webhook_url: str | None = None) -> RunningSandboxes:
    """The sandboxes as ``providers.sandbox`` configures them, on ``port_base`` (None: free ports),
    for `sauti serve` (in its process, or once for all of `serve --workers`); `ProvidersUnavailable`
    when they cannot listen there."""
    wanted = SandboxSettings(callback_delay_s=box.callback_delay_s, wave_webhook_url=webhook_url)
    try:
        return await start_sandboxes(wanted, host=box.host, port_base=port_base)
    except OSError as exc:  # the ports are taken, or the host is not ours
        where = f"{box.host} (providers.sandbox.port_base {box.port_base})"
        raise ProvidersUnavailable(f"cannot start the provider sandboxes on {where}: {exc.strerror or exc}") from None


async def _sandbox(settings: Settings, stack: AsyncExitStack, *, serving: bool, webhook_url: str) -> _Sandbox | None:
    box = settings.providers.sandbox
    if serving and box.run_in_serve:
        running = await start_local_sandboxes(box, port_base=box.port_base, webhook_url=webhook_url)
        stack.push_async_callback(running.stop)
        return _Sandbox(running.settings, running.urls, running.daraja_certificate_pem, running)
    if box.port_base is not None:
        return await _reach_sandboxes(settings, register_webhook_url=webhook_url if serving else None)
    if serving:
        raise ProvidersUnavailable("providers.sandbox.run_in_serve is false: set providers.sandbox.port_base to "
                                   "where `sauti sandbox` listens")
    log.warning(SANDBOXES_OUT_OF_REACH)
    return None


def _sandbox_clients(box: _Sandbox, settings: Settings) -> tuple[DarajaSettings, WaveSettings, SmsSettings]:
    s, urls, p = box.settings, box.urls, settings.providers
    daraja = DarajaSettings(
        consumer_key=s.daraja_consumer_key, consumer_secret=s.daraja_consumer_secret, shortcode=s.daraja_shortcode,
        passkey=s.daraja_passkey, base_url=urls.daraja, initiator_name=s.daraja_initiator_name,
        initiator_password=s.daraja_initiator_password, certificate_pem=box.certificate_pem,
        timeout_s=p.mpesa.timeout_s, connect_timeout_s=p.mpesa.connect_timeout_s)
    wave = WaveSettings(api_key=s.wave_api_key, base_url=urls.wave, signing_secret=s.wave_request_signing_secret,
                        timeout_s=p.wave.timeout_s, connect_timeout_s=p.wave.connect_timeout_s)
    sms = SmsSettings(username=s.at_username, api_key=s.at_api_key, base_url=urls.africastalking,
                      sender_id=p.sms.sender_id, connect_timeout_s=p.sms.connect_timeout_s,
                      read_timeout_s=p.sms.read_timeout_s)
    return daraja, wave, sms


# -- the one composition ----------------------------------------------------------------------------


@asynccontextmanager
async def open_payments(settings: Settings, engine: AsyncEngine, ledger: Ledger, *,
                        serving: bool) -> AsyncIterator[PaymentsRuntime]:
    """`Payments` with started provider clients (one HTTP session each), closed on exit.

    ``serving``: for `sauti serve`, which may start the sandboxes and receives the callbacks;
    `sauti worker` passes False. Raises `ProvidersUnavailable` when the providers cannot be set up.
    """
    mode = settings.providers.effective_mode
    base = public_base_url(settings)
    secret = await asyncio.to_thread(callback_secret, settings)
    async with AsyncExitStack() as stack:
        sandbox_urls = running = None
        reachable = True
        if mode == "sandbox":
            box = await _sandbox(settings, stack, serving=serving, webhook_url=base + WAVE_WEBHOOK_PATH)
            if box is None:
                daraja_settings = wave_settings = sms_settings = webhook = None
                reachable = False
            else:
                daraja_settings, wave_settings, sms_settings = _sandbox_clients(box, settings)
                webhook = SigningSecret(box.settings.wave_webhook_secrets)
                sandbox_urls, running = box.urls, box.running
        else:
            daraja_settings = await asyncio.to_thread(_live_daraja, settings)  # reads the certificate file
            wave_settings, webhook = _live_wave(settings)
            sms_settings = _live_sms(settings)
        daraja = await stack.enter_async_context(DarajaClient(daraja_settings)) if daraja_settings else None
        wave = await stack.enter_async_context(WaveClient(wave_settings)) if wave_settings else None
        # A thread per job the outbox worker runs at once: no receipt waits for a thread.
        sms = SmsSender(sms_settings, threads=settings.outbox.concurrency) if sms_settings else None
        if sms is not None:
            stack.callback(sms.close)  # its threads and their kept-alive connections
        policy = payment_settings(settings.payments, f"{base}/callbacks/{secret}",
                                  hot_account_shards=settings.ledger.hot_account_shards,
                                  stk_orphan_grace_s=2 * settings.outbox.lease_s)
        webhooks = WebhookSender(engine, timeout_s=settings.webhooks.timeout_s,
                                 allow_local=settings.webhooks.allow_local_urls)
        stack.push_async_callback(webhooks.close)
        payments = Payments(engine, ledger, settings=policy,
                            providers=ProviderClients(daraja=daraja, wave=wave, sms=sms),
                            write_receipt=receipt_writer(screen_catalogs()), webhooks=webhooks,
                            write_intent_notice=intent_notice_writer(screen_catalogs(), settings.ussd.service_code))
        await _open_own_accounts(payments)
        configured = [name for name, client in (("M-Pesa", daraja), ("Wave", wave), ("SMS", sms)) if client]
        where = f" at {sandbox_urls.daraja}, {sandbox_urls.wave}, {sandbox_urls.africastalking}" if sandbox_urls else ""
        log.info("payments: %s providers (%s)%s; callbacks to %s/callbacks/***/…", mode,
                 ", ".join(configured) or "none", where, base)
        previous = settings.payments.callback_previous_secret
        accepted = (secret, previous.get_secret_value()) if previous is not None else (secret,)
        if previous is not None:
            log.warning("payments.callback_previous_secret is set: Daraja callbacks under it are let in. Set it to "
                        "null once what was sent before the change has ended (a leaked secret stays good until "
                        "then)")
        yield PaymentsRuntime(payments, mode, CallbackAuth(accepted, webhook), running, sandbox_urls, reachable)


async def _open_own_accounts(payments: Payments) -> None:
    """Sauti's own accounts, opened before any payment (opening one mid-payment takes a second
    connection). A database that is down now does not stop the start: `/readyz` says so, and the
    first payments open them once it is back."""
    try:
        await payments.accounts.open_own(PROVIDER_FOR)
    except (OSError, SQLAlchemyError) as exc:
        log.warning("Sauti's own accounts not opened at start (%s); the first payments will open them",
                    type(exc).__name__)


# -- `sauti serve` ------------------------------------------------------------------------------------


async def payments_ctx(app: web.Application) -> AsyncIterator[None]:
    """`Payments` for the app's lifetime, under `gateway.keys.PAYMENTS`. Goes after `database_ctx`
    (it needs the engine and the ledger) and before `worker_ctx` (whose handlers it gives)."""
    settings = app[SETTINGS]
    async with open_payments(settings, app[DB_ENGINE], app[LEDGER], serving=True) as runtime:
        app[PAYMENTS] = runtime.payments
        app[CALLBACK_AUTH] = runtime.callbacks
        app[PAYMENTS_RUNTIME] = runtime
        if runtime.payments.providers.daraja is not None and (
                runtime.mode == "sandbox" or settings.payments.register_c2b_on_start):
            # The sandbox forgets registrations when it stops, and needs one for C2B simulate.
            await register_c2b(runtime.payments)
        yield


async def register_c2b(payments: Payments) -> bool:
    """Register the C2B URLs with Daraja at start-up; a failure is logged, never fatal (payments
    other than C2B do not need it; `sauti mpesa register-c2b` can do it later)."""
    try:
        registered = await payments.register_c2b_urls()
    except (ProviderError, InvalidRequest) as exc:
        log.error("C2B URL registration failed (%s: %s); customers' paybill payments will not reach us until "
                  "`sauti mpesa register-c2b` succeeds", type(exc).__name__, exc)
        return False
    log.info("C2B URLs registered with Daraja (%s)", registered.response_description)
    return True


async def run_recovery(payments: Payments, section: PaymentsSection, stop: asyncio.Event) -> None:
    """Resolve stuck payments now, then every ``recovery_interval_s`` until ``stop`` is set. A round
    that fails is logged and the next one runs as planned: recovery never takes the app down."""
    older_than = timedelta(seconds=section.stuck_after_s)
    while not stop.is_set():
        try:
            report = await payments.recover_stuck(older_than, limit=section.recovery_batch)
        except Exception:
            log.exception("payment recovery round failed; the next one runs in %gs", section.recovery_interval_s)
        else:
            if report.examined:
                log.info("payment recovery: %d examined, %d resolved, %d still open, %d need review, %d errors",
                         report.examined, report.resolved, report.still_open, report.needs_review, report.errors)
        try:
            await asyncio.wait_for(stop.wait(), timeout=section.recovery_interval_s)
        except TimeoutError:
            pass


async def recovery_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run `run_recovery`, and the expiry of payment intents, in the background for the app's
    lifetime (after `payments_ctx`); on
    shutdown let a round in progress finish within ``server.shutdown_timeout_s``, else cancel it
    (each payment is resolved in a transaction of its own: a cancelled round loses nothing)."""
    settings = app[SETTINGS]
    stop = asyncio.Event()
    task = asyncio.create_task(run_recovery(app[PAYMENTS], settings.payments, stop), name="payments-recovery")
    # Payment intents past their expiry are closed here too (each in a transaction of its own).
    intents = asyncio.create_task(app[PAYMENTS].intents.sweep_expired(stop), name="intents-expiry")
    try:
        yield
    finally:
        stop.set()
        for running, what in ((task, "payment recovery"), (intents, "payment intents' expiry")):
            try:
                await asyncio.wait_for(running, timeout=settings.server.shutdown_timeout_s)
            except TimeoutError:
                log.warning("%s: a round outlasted the shutdown grace period; cancelled", what)
