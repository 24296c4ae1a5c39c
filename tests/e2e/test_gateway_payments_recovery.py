"""The gateway's payments across processes and restarts, and with live-mode settings: `sauti worker`
runs the provider jobs with the clients `sauti serve` uses; a payment whose callback never came is
resolved by the recovery that runs at start-up; a recovery round that fails never takes the app
down; live credentials (here pointed at the sandboxes' URLs) reach the providers as configured."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import click
import pytest
from click.testing import CliRunner, Result

from db.engine import create_engine
from gateway.commands.worker import worker as worker_command
from gateway.payments_resources import ProvidersUnavailable, run_recovery
from gateway.settings import PaymentsSection, Settings
from payments import outbox
from payments.commands import Channel, Deposit, Withdraw
from payments.ledger import Ledger, LedgerLimits
from payments.money import Currency, Money
from payments.orchestrator import Payments
from payments.sandbox.runner import RunningSandboxes, start_sandboxes
from payments.sandbox.settings import SandboxSettings
from payments.states import PaymentStatus
from payments.webhook_events import JOB_WEBHOOK
from tests.e2e.gateway_payments_world import SECRET, free_port, gateway_settings, running_gateway, wait_for

ROOT = Path(__file__).resolve().parents[2]
KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


@asynccontextmanager
async def sandboxes_at_a_port_base(**settings) -> AsyncIterator[tuple[RunningSandboxes, int]]:
    """The sandboxes as `sauti sandbox --port-base N` runs them: outside the gateway, so they
    outlive its restarts."""
    for _ in range(30):
        base = random.randrange(20_000, 60_000)
        try:
            running = await start_sandboxes(SandboxSettings.for_tests(**settings), port_base=base)
        except OSError:
            continue  # one of the three ports was taken: try elsewhere
        try:
            yield running, base
        finally:
            await running.stop()
        return
    pytest.fail("no three consecutive free ports")


def sauti_worker(settings: Settings, *args: str) -> Result:
    """`sauti worker` as the CLI runs it (in a thread: it calls asyncio.run)."""

    @click.group()
    @click.pass_context
    def sauti(ctx: click.Context) -> None:
        ctx.obj = {"settings": settings}

    sauti.add_command(worker_command)
    return CliRunner().invoke(sauti, ["worker", *args])


async def test_sauti_worker_runs_the_jobs_and_start_up_recovery_resolves_a_lost_callback(new_database):
    url, port = await new_database(), free_port()
    async with sandboxes_at_a_port_base() as (_, base):
        def settings(stuck_after_s: float) -> Settings:
            return gateway_settings(url, port, outbox={"run_in_serve": False},
                                    payments={"stuck_after_s": stuck_after_s},
                                    providers={"sandbox": {"run_in_serve": False, "port_base": base}})

        async with running_gateway(settings(3600)) as first:
            paid = await first.user()
            lost = await first.user(suffix="900")  # the payer pays; Daraja never sends the callback
            with_callback = await first.payments.handle(Deposit("rc-1", paid.id, Money.of(200, KES), Channel.USSD))
            without = await first.payments.handle(Deposit("rc-2", lost.id, Money.of(150, KES), Channel.USSD))

            # No worker in serve: `sauti worker` sends both pushes, with the callback URL serve routes.
            ran = await asyncio.to_thread(sauti_worker, settings(3600), "--once")
            assert ran.exit_code == 0, ran.output
            assert "ran 2 job(s)" in ran.output

            assert (await wait_for(first, with_callback.public_id)).status is S.SUCCEEDED
            assert await first.wallet(paid) == Money.of(200, KES)
            await asyncio.sleep(0.3)  # well past the sandbox's callback delay: the payer has paid
            assert (await first.payment(without.public_id)).status is S.PROCESSING

        # A restart: recovery runs at start-up and asks Daraja about the push (STK query).
        async with running_gateway(settings(0)) as second:
            done = await wait_for(second, without.public_id)
            assert done.status is S.SUCCEEDED
            assert await second.wallet(lost) == Money.of(150, KES)
            _, events = await second.payments.history(without.public_id)
            assert events[-1].cause == "status_query"
            await second.assert_ledger_ok()


async def test_sauti_worker_says_what_to_start_when_the_sandboxes_do_not_answer(new_database):
    settings = gateway_settings(await new_database(), free_port(),
                                providers={"sandbox": {"port_base": free_port()}})  # nobody listens there
    ran = await asyncio.to_thread(sauti_worker, settings, "--once")
    assert ran.exit_code != 0
    assert "do not answer" in ran.output and "sauti sandbox --port-base" in ran.output
    assert "Traceback" not in ran.output


async def test_a_failing_recovery_round_is_logged_and_the_next_one_still_runs(caplog):
    port = free_port()  # nothing listens: every round fails to reach "the database"
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{port}/sauti", pool_size=1)
    payments = Payments(engine, Ledger(engine, LedgerLimits.from_major(1000)))
    stop = asyncio.Event()
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.payments_resources"):
            task = asyncio.create_task(run_recovery(payments, PaymentsSection(recovery_interval_s=0.05), stop))
            for _ in range(200):
                if caplog.text.count("payment recovery round failed") >= 2:
                    break
                await asyncio.sleep(0.02)
            assert not task.done()  # still going after its failures
            stop.set()
            await asyncio.wait_for(task, 5)
    finally:
        await engine.dispose()
    assert caplog.text.count("payment recovery round failed") >= 2


async def test_live_settings_reach_the_providers_with_the_configured_credentials(new_database, tmp_path: Path):
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/callbacks/wave"
    async with sandboxes_at_a_port_base(wave_webhook_url=webhook) as (sandboxes, _):
        s, urls = sandboxes.settings, sandboxes.urls
        certificate = tmp_path / "daraja.pem"
        certificate.write_bytes(sandboxes.daraja_certificate_pem)
        settings = gateway_settings(
            await new_database(), port,
            payments={"callback_base_url": f"http://127.0.0.1:{port}"},
            providers={
                "mode": "auto",  # credentials are set: auto means live
                "mpesa": {"base_url": urls.daraja, "consumer_key": s.daraja_consumer_key,
                          "consumer_secret": s.daraja_consumer_secret, "shortcode": int(s.daraja_shortcode),
                          "passkey": s.daraja_passkey, "initiator_name": s.daraja_initiator_name,
                          "initiator_password": s.daraja_initiator_password, "certificate_path": str(certificate)},
                "wave": {"base_url": urls.wave, "api_key": s.wave_api_key,
                         "webhook_secret": s.wave_webhook_secrets[0]},
                "sms": {"username": s.at_username, "api_key": s.at_api_key, "base_url": urls.africastalking},
            })
        assert settings.providers.effective_mode == "live"
        async with running_gateway(settings) as gw:
            assert gw.runtime.mode == "live" and gw.runtime.sandboxes is None
            customer = await gw.user()
            deposit = await gw.payments.handle(Deposit("live-dep", customer.id, Money.of(500, KES), Channel.APP))
            assert (await wait_for(gw, deposit.public_id)).status is S.SUCCEEDED
            # B2C: the SecurityCredential was encrypted at start-up with the configured certificate.
            payout = await gw.payments.handle(Withdraw("live-wd", customer.id, Money.of(100, KES), Channel.APP))
            assert (await wait_for(gw, payout.public_id)).status is S.SUCCEEDED
            # Wave: the checkout opens with the configured API key; its webhook passes the configured secret.
            payer = await gw.user(XOF)
            checkout = await gw.payments.handle(Deposit("live-wave", payer.id, Money.of(2000, XOF), Channel.APP))
            opened = await wait_for(gw, checkout.public_id, S.PROCESSING)
            async with aiohttp.ClientSession() as http, http.post(
                    f"{urls.wave}/_sandbox/checkout/sessions/{opened.provider_ref}/approve") as resp:
                assert resp.status == 200
            assert (await wait_for(gw, checkout.public_id)).status is S.SUCCEEDED
            assert await gw.wallet(payer, XOF) == Money.of(2000, XOF)
            # The receipts went out through the configured SMS account.
            await asyncio.sleep(0.3)
            assert any(m.to == customer.phone for m in sandboxes.africastalking.messages)
            await gw.assert_ledger_ok()


async def test_without_wave_configured_its_webhook_route_does_not_exist(new_database):
    port = free_port()
    settings = gateway_settings(
        await new_database(), port, payments={"callback_base_url": "https://pay.example.com"},
        providers={"mode": "live", "mpesa": {
            "consumer_key": "k", "consumer_secret": "s", "shortcode": "600000", "passkey": "p",
            "initiator_name": "api", "security_credential": "pre-made-credential"}})
    async with running_gateway(settings) as gw:
        assert gw.runtime.mode == "live"
        assert gw.payments.settings.callback_base_url == f"https://pay.example.com/callbacks/{SECRET}"
        status, answer = await gw.post("/callbacks/wave", b"{}")
        assert status == 404 and answer["error"] == "not_found"


async def test_sauti_serve_refuses_to_start_without_its_sandboxes_and_says_why(database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE": "false",
           "SAUTI__PROVIDERS__SANDBOX__PORT_BASE": str(free_port()), "SAUTI__PAYMENTS__CALLBACK_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port()), cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = (await asyncio.wait_for(proc.communicate(), timeout=60))[0].decode()
    assert proc.returncode == 1, output
    assert "do not answer" in output and "sauti sandbox --port-base" in output
    assert "Traceback" not in output and SECRET not in output


async def test_a_worker_that_cannot_reach_the_sandboxes_leaves_provider_jobs_for_one_that_can(new_database, caplog):
    url = await new_database()
    settings = gateway_settings(url, free_port(), outbox={"run_in_serve": False})  # sandboxes on free ports
    async with running_gateway(settings) as gw:
        user = await gw.user()
        payment = await gw.payments.handle(Deposit("defer-1", user.id, Money.of(100, KES), Channel.USSD))
        async with gw.engine.begin() as conn:  # a delivery to an endpoint since deleted: run, then dropped
            hook = await outbox.enqueue(conn, JOB_WEBHOOK, {"endpoint": 2**31 - 1, "event": {"id": "evt_defer"}})

        with caplog.at_level(logging.WARNING):
            ran = await asyncio.to_thread(sauti_worker, settings, "--once")
        assert ran.exit_code == 0, ran.output
        assert "providers.sandbox.port_base" in caplog.text
        assert "ran 1 job(s)" in ran.output  # the webhook delivery: it goes to the API's callers
        assert await gw.scalar("SELECT status FROM outbox_jobs WHERE id = :j", j=hook) == "done"
        # Not claimed at all: a claim would cost the job one of its attempts and a backoff, and a
        # job whose every claim fell on such a worker was parked although serve's could run it.
        status, attempts, error = (await gw.scalar(
            "SELECT json_build_array(status, attempts, last_error) FROM outbox_jobs WHERE dedupe_key = :k",
            k=f"mpesa.stk_push:{payment.public_id}"))
        assert (status, attempts, error) == ("pending", 0, None)
        assert (await gw.payment(payment.public_id)).status is S.CREATED


async def test_sandbox_ports_already_taken_stop_start_up_with_a_clear_error(new_database):
    async with sandboxes_at_a_port_base() as (_, base):
        settings = gateway_settings(await new_database(), free_port(), providers={"sandbox": {"port_base": base}})
        with pytest.raises(ProvidersUnavailable, match=f"cannot start the provider sandboxes on 127.0.0.1 "
                                                       rf"\(providers.sandbox.port_base {base}\)"):
            async with running_gateway(settings):
                pass
