"""Crash safety: `sauti worker` processes killed with SIGKILL at random moments while payments of
every kind are in flight (after a provider accepted a request and before we recorded it, between a
job's claim and its completion, in the middle of a callback's aftermath), then restarted. When all is
done: every payment is in exactly one final state, reached once; no money was moved twice, on our
side (each wallet holds exactly what its final payments say) or at the provider (one transaction per
payment in the sandbox's statement); `sauti ledger check` passes and `sauti reconcile` matches.

The gateway (callbacks, recovery) runs in this process; workers are real processes run from a config
file; the sandboxes run on fixed ports so every process reaches the same ones.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from payments.commands import Channel, Deposit, SendToPhone, SendToWallet, Withdraw
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import SECRET, free_port, running_gateway, wait_for
from tests.e2e.test_gateway_payments_recovery import sandboxes_at_a_port_base

ROOT = Path(__file__).resolve().parents[2]
KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus
FINAL = ("succeeded", "failed", "reversed", "refunded")


def config_tree(database_url: str, port: int, port_base: int) -> dict[str, Any]:
    """What the gateway and the workers both run with (a worker reads it from a file)."""
    return {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout_s": 5},
        "database": {"url": database_url, "migrate_on_start": False, "pool_size": 5},
        # Short leases: a killed worker's jobs are claimed again a second later.
        "outbox": {"run_in_serve": False, "poll_interval_s": 0.05, "lease_s": 1, "backoff_base_s": 0.05,
                   "backoff_max_s": 0.3, "max_attempts": 50},
        "payments": {"callback_secret": SECRET, "stuck_after_s": 2, "recovery_interval_s": 1},
        # ... and calls that end before a job is cut short (at 80 % of the lease; the settings check it).
        "webhooks": {"timeout_s": 0.75},
        "providers": {"mode": "sandbox", "sandbox": {"run_in_serve": False, "port_base": port_base},
                      "mpesa": {"timeout_s": 0.75, "connect_timeout_s": 0.5},
                      "wave": {"timeout_s": 0.75, "connect_timeout_s": 0.5},
                      "sms": {"connect_timeout_s": 0.35, "read_timeout_s": 0.4}},
        "logging": {"level": "WARNING", "access_log": False},
    }


def start_worker(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "worker",
                             "--concurrency", "4"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def sauti(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def statement(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return body.get("entries") or body.get("transactions") or body.get("items") or []


async def until_a_job_runs(gateway, within_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while await gateway.scalar("SELECT count(*) FROM outbox_jobs WHERE status = 'running'") == 0:
        assert asyncio.get_running_loop().time() < deadline, "the worker never claimed a job"
        await asyncio.sleep(0.01)


async def approve_checkouts(gateway, wave_url: str, created: list[Payment]) -> None:
    pending = {p.public_id for p in created if p.kind == "deposit" and p.amount.currency is XOF}
    deadline = asyncio.get_running_loop().time() + 30
    async with aiohttp.ClientSession() as http:
        while pending and asyncio.get_running_loop().time() < deadline:
            for public_id in sorted(pending):
                payment = await gateway.payment(public_id)
                if payment.provider_ref:
                    async with http.post(f"{wave_url}/_sandbox/checkout/sessions/{payment.provider_ref}/approve") as r:
                        assert r.status in (200, 409), await r.text()
                    pending.discard(public_id)
            await asyncio.sleep(0.1)
    assert not pending, f"checkouts never opened: {pending}"


async def all_final(gateway, created: list[Payment], *, within_s: float) -> list[Payment]:
    """Every payment once final; on time-out, the ones still open with their stories."""
    try:
        return [await wait_for(gateway, p.public_id, within_s=within_s) for p in created]
    except AssertionError:
        stories = []
        for payment in created:
            now, events = await gateway.payments.history(payment.public_id)
            if not now.status.is_final:
                stories.append(f"{now.public_id} {now.kind} {now.currency if hasattr(now, 'currency') else ''} "
                               f"{now.status} refs={now.provider_refs} ref={now.provider_ref} events="
                               + "; ".join(f"{e.from_status}->{e.to_status} ({e.cause})" for e in events))
        raise AssertionError("payments left open:\n" + "\n".join(stories)) from None


async def orphans_settled(gateway, *, within_s: float) -> None:
    """Wait until no orphan push (`payments.stk_orphans`) waits for its grace period: each is then
    matched to its payment, credited, or refuted, and the wallets stop moving."""
    deadline = asyncio.get_running_loop().time() + within_s
    while await gateway.scalar("SELECT count(*) FROM provider_events WHERE kind = 'stk_orphan' "
                               "AND payload->>'outcome' = 'pending'"):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"orphan pushes still pending after {within_s}s")
        await asyncio.sleep(0.1)


async def test_killed_workers_lose_nothing_and_move_nothing_twice(new_database, tmp_path: Path):
    from gateway.settings import Settings  # the same tree the workers read

    url, port = await new_database(), free_port()
    began = datetime.now(UTC) - timedelta(minutes=1)
    rng = random.Random(20261129)
    async with sandboxes_at_a_port_base(callback_delay_s=0.15) as (sandboxes, base):
        tree = config_tree(url, port, base)
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(tree), encoding="utf-8")
        async with running_gateway(Settings.model_validate(tree)) as gateway:
            kes = [await gateway.user(suffix="123") for _ in range(6)]
            xof = [await gateway.user(XOF, suffix="123") for _ in range(3)]
            poor = await gateway.user(suffix="001")  # the sandbox says "insufficient funds" for this payer
            for user in kes:
                await gateway.fund(user, Money.of(5_000, KES))
            for user in xof:
                await gateway.fund(user, Money.of(50_000, XOF))
            start = {user.id: await gateway.wallet(user) for user in kes}
            start |= {user.id: await gateway.wallet(user, XOF) for user in xof}

            commands = []
            for n in range(36):
                payer = kes[n % len(kes)]
                key = f"crash-{n}"
                match n % 6:
                    case 0:
                        commands.append(Withdraw(key, payer.id, Money.of(rng.randint(10, 90), KES), Channel.USSD))
                    case 1:
                        commands.append(Deposit(key, payer.id, Money.of(rng.randint(10, 90), KES), Channel.USSD))
                    case 2:
                        other = kes[(n + 1) % len(kes)]
                        commands.append(SendToWallet(key, payer.id, Money.of(rng.randint(1, 20), KES), Channel.APP,
                                                     recipient_user_id=other.id))
                    case 3:  # a number without a wallet: an M-Pesa B2C payout
                        commands.append(SendToPhone(key, payer.id, Money.of(rng.randint(10, 90), KES), Channel.API,
                                                    recipient_phone=f"+254790{rng.randrange(10**3):03d}777"))
                    case 4:
                        commands.append(Withdraw(key, xof[n % 3].id, Money.of(rng.randint(500, 2000), XOF),
                                                 Channel.USSD))
                    case 5:
                        commands.append(Deposit(key, xof[n % 3].id, Money.of(rng.randint(500, 2000), XOF),
                                                Channel.USSD))
            commands.append(Deposit("crash-poor", poor.id, Money.of(50, KES), Channel.USSD))
            # In six waves: the payments of a wave are made, a worker starts, and it is killed at a
            # random moment shortly after it has claimed its first job (mid-request, mid-record...).
            created: list[Payment] = []
            for wave in range(6):
                created += [await gateway.payments.handle(command) for command in commands[:-1][wave::6]]
                worker = start_worker(config)
                await until_a_job_runs(gateway)
                await asyncio.sleep(rng.uniform(0.0, 0.15))
                worker.send_signal(signal.SIGKILL)
                await asyncio.to_thread(worker.wait, 10)
            created.append(await gateway.payments.handle(commands[-1]))
            # Then one that is left to finish (with the gateway's recovery resolving what it must). The
            # Wave payers approve their checkouts in the app as soon as they have been opened.
            survivor = start_worker(config)
            try:
                await approve_checkouts(gateway, sandboxes.urls.wave, created)
                finished = await all_final(gateway, created, within_s=60)
                await orphans_settled(gateway, within_s=60)
            finally:
                survivor.send_signal(signal.SIGTERM)
                _, errors = await asyncio.to_thread(survivor.communicate, timeout=20)
            assert survivor.returncode == 0, errors.decode()[-2000:]

            # The kills did interrupt work: some jobs were claimed again after their worker died.
            interrupted = await gateway.scalar("SELECT count(*) FROM outbox_jobs WHERE attempts > 1")
            assert interrupted >= 1

            # Exactly one final state per payment, reached once.
            for payment in finished:
                _, events = await gateway.payments.history(payment.public_id)
                into_final = [e for e in events if e.to_status.value in FINAL]
                assert len(into_final) == 1, (payment.public_id, [(e.from_status, e.to_status) for e in events])
            by_status = Counter(p.status.value for p in finished)
            assert by_status["succeeded"] >= len(finished) - 1, by_status  # all but the poor payer's deposit
            assert next(p for p in finished if p.idempotency_key == "crash-poor").status is S.FAILED

            # Our side: each wallet holds exactly what its final payments say, nothing twice.
            expected = dict(start)
            for payment in finished:
                if payment.status is not S.SUCCEEDED:
                    continue
                if payment.kind == "deposit":
                    expected[payment.payer_user_id] += payment.amount
                else:
                    expected[payment.payer_user_id] -= payment.amount + payment.fee
                    if payment.recipient_user_id is not None:
                        expected[payment.recipient_user_id] += payment.amount
            # A push sent again after its worker died may be approved twice: M-Pesa then took the money
            # twice, and the first push is credited once, as a deposit of its own (`payments.stk_orphans`).
            orphans = await gateway.rows(
                "SELECT payer_user_id, amount, status, provider_ref FROM payments "
                "WHERE provider_refs->>'source' = 'stk_orphan'")
            assert len({o.provider_ref for o in orphans}) == len(orphans)  # once per M-Pesa receipt
            for orphan in orphans:
                assert orphan.status == "succeeded", orphan
                expected[orphan.payer_user_id] += Money(orphan.amount, KES)
            for user in kes:
                assert await gateway.wallet(user) == expected[user.id], user.phone
            for user in xof:
                assert await gateway.wallet(user, XOF) == expected[user.id], user.phone

            # Their side: one provider transaction per payment that reached a provider.
            daraja = await statement(f"{sandboxes.urls.daraja}/_sandbox/statement")
            references = Counter(e.get("reference") for e in daraja)
            for payment in finished:
                if payment.provider == "mpesa" and payment.kind != "deposit":
                    assert references[payment.public_id] <= 1, payment.public_id

            await gateway.assert_ledger_ok()
            # In threads: the sandboxes run on this event loop and must keep answering.
            checked = await asyncio.to_thread(sauti, config, "ledger", "check")
            assert checked.returncode == 0, checked.stdout + checked.stderr
            # The sandboxes' statements agree with us, payment for payment.
            reconciled = await asyncio.to_thread(sauti, config, "reconcile", "--from", began.isoformat())
            assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
