"""Payments benchmark: completed payments per second through the whole gateway, beside the ledger.

The real thing: `create_app` (the gateway: database, ledger, payment orchestrator, in-process outbox
worker, callback routes) listening on a local port, and the provider sandboxes (Daraja, Wave,
Africa's Talking) in a process of their own (`sauti sandbox`), as the real providers would be,
calling back over HTTP. Client tasks run a mix of
payments through `Payments.handle` (what the USSD, voice and API channels call):

  p2p       wallet to wallet (final at once);
  stk       M-Pesa top-up: STK push job, the sandbox's callback after ``--callback-delay`` s, confirmed
            by an STK query, then the wallet credited;
  b2c       withdrawal to M-Pesa: debit to clearing, B2C job, result callback, settlement;

each followed until it is final (polled), so "time to final" includes the worker and the callbacks.
SMS receipts are sent too (they are outbox jobs like the rest). At each concurrency it prints
completed payments/s and p50/p99 time to final per kind, beside the ledger-only rate (case b of
`bench.ledger`: 3-leg transfers with group commit at concurrency 8) measured in the same run on the
same server.

    python -m bench.payments [--concurrency 8,32] [--seconds 10] [--rounds 3] [--mix p2p=2,stk=1,b2c=1]
                             [--callback-delay 0.05] [--payers 2000]

Uses $DATABASE_URL's server when set, else the embedded PostgreSQL under var/bench-pg; creates (and
drops) its own database there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.engine import make_url

from bench.ledger import ROOT, admin, prepare, run_case
from bench.local_servers import free_port, log, start_sandboxes, stop_sandboxes
from db.embedded import start_embedded
from db.engine import async_url, create_engine
from gateway.app import create_app
from gateway.keys import DB_ENGINE, LEDGER, PAYMENTS
from gateway.settings import Settings
from payments import payment_store as store
from payments.accounts import AccountKind, open_account
from payments.commands import Channel, Deposit, SendToWallet, Withdraw
from payments.identities import register_user
from payments.money import Currency, Money
from payments.postings import TransferRequest, payment_legs

KES = Currency.KES
KINDS = ("p2p", "stk", "b2c")


@dataclass
class Tally:
    done: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def completed(self) -> int:
        return sum(len(v) for v in self.done.values())


def parse_mix(text: str) -> list[str]:
    weighted: list[str] = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in KINDS:
            raise SystemExit(f"--mix: unknown kind {name!r} (choose from {', '.join(KINDS)})")
        weighted += [name] * int(weight or 1)
    return weighted


async def make_payers(app: web.Application, count: int) -> list[tuple[int, str]]:
    """Registered KES users with funded wallets; numbers end in 555 (the sandbox's plain success)."""
    engine, ledger = app[DB_ENGINE], app[LEDGER]
    payers: list[tuple[int, str]] = []
    async with engine.begin() as conn:
        source = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, KES, "mpesa")).id
        for i in range(count):
            phone = f"+2547{1_0000 + i:05d}555"
            user = await register_user(conn, phone, display_name=f"Payer {i}", kyc_tier=3)
            wallet = (await open_account(conn, AccountKind.CUSTOMER_WALLET, KES, user.id)).id
            await ledger.transfer(TransferRequest(f"bench-fund-{user.id}", payment_legs(
                source, wallet, Money.of(200_000, KES)), kind="deposit"), conn=conn)
            payers.append((user.id, phone))
    return payers


async def run_mix(app: web.Application, payers: list[tuple[int, str]], mix: list[str], *, concurrency: int,
                  seconds: float) -> tuple[Tally, float]:
    payments, engine = app[PAYMENTS], app[DB_ENGINE]
    tally = Tally()
    run = uuid.uuid4().hex[:8]
    counter = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def final(public_id: str) -> bool:
        while True:
            async with engine.connect() as conn:
                payment = await store.get_payment(conn, public_id)
            assert payment is not None
            if payment.status.is_final:
                return payment.status.value == "succeeded"
            await asyncio.sleep(0.01)

    async def client(seed: int) -> None:
        nonlocal counter
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            kind = rng.choice(mix)
            (payer, _), (payee, _) = rng.sample(payers, 2)
            counter += 1
            key = f"bench-{run}-{counter}"
            amount = Money(rng.randint(10, 500) * 100, KES)
            if kind == "p2p":
                command = SendToWallet(key, payer, amount, Channel.API, recipient_user_id=payee)
            elif kind == "stk":
                command = Deposit(key, payer, amount, Channel.API)
            else:
                command = Withdraw(key, payer, amount, Channel.API, phone=f"+2547{rng.randrange(10**5):05d}555")
            began = time.perf_counter()
            payment = await payments.handle(command)
            ok = payment.status.value == "succeeded" if payment.status.is_final else await final(payment.public_id)
            if ok:
                tally.done[kind].append(time.perf_counter() - began)
            else:
                tally.failed[kind] += 1

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return tally, time.perf_counter() - start


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))] * 1000 if ordered else float("nan")


async def ledger_anchor(url: str, wallets: list[int], fees: int, seconds: float) -> float:
    """Case b of bench.ledger (3-leg transfers, group commit, concurrency 8) on its own database."""
    engine = create_engine(url, pool_size=10)
    try:
        figure = await run_case(engine, wallets, fees, with_fee=True, batched=True, concurrency=8, seconds=seconds)
    finally:
        await engine.dispose()
    return figure.tps


async def main(args: argparse.Namespace) -> None:
    server = os.environ.get("DATABASE_URL")
    server_url = async_url(server) if server else start_embedded(ROOT / "var" / "bench-pg", "postgres")
    names = [f"sauti_bench_pay_{uuid.uuid4().hex[:8]}", f"sauti_bench_anchor_{uuid.uuid4().hex[:8]}"]
    for name in names:
        await admin(server_url, f'CREATE DATABASE "{name}"')
    url, anchor_url = (make_url(server_url).set(database=n).render_as_string(hide_password=False) for n in names)
    mix = parse_mix(args.mix)
    port = free_port()
    sandbox, sandbox_base = await start_sandboxes(args.callback_delay)
    settings = Settings.model_validate({
        "server": {"port": port},
        "database": {"url": url, "pool_size": 30},
        "providers": {"mode": "sandbox", "sandbox": {"run_in_serve": False, "port_base": sandbox_base}},
        "payments": {"default_plan": "pro", "callback_secret": "bench-callback-secret-0123456789",
                     "recovery_interval_s": 3600},
        "outbox": {"concurrency": args.worker_concurrency, "poll_interval_s": 0.2},
        "logging": {"level": "WARNING", "access_log": False},
    })
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    rows: list[tuple[int, float, Tally, float]] = []
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        log(f"gateway on :{port}, sandboxes in their own process on :{sandbox_base}-{sandbox_base + 2} "
            f"(callback delay {args.callback_delay:g} s); "
            f"registering and funding {args.payers:,} payers…")
        payers = await make_payers(app, args.payers)
        anchor_wallets, anchor_fees, _ = await prepare(anchor_url, 2_000, 8)
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}/{args.rounds}")
            anchor = await ledger_anchor(anchor_url, anchor_wallets, anchor_fees, args.seconds)
            log(f"  ledger only (3-leg transfers, group commit, c=8): {anchor:,.0f} transfers/s")
            for concurrency in args.concurrency:
                tally, elapsed = await run_mix(app, payers, mix, concurrency=concurrency, seconds=args.seconds)
                # Let what is still in flight finish before the next row starts.
                await asyncio.sleep(args.callback_delay + 0.5)
                rate = tally.completed / elapsed
                log(f"  c={concurrency:<3} {rate:7.1f} payments/s  " + "  ".join(
                    f"{k}: {len(tally.done[k])} ok/{tally.failed[k]} failed" for k in KINDS if k in mix))
                rows.append((concurrency, rate, tally, anchor))
    finally:
        await runner.cleanup()
        await stop_sandboxes(sandbox)
        for name in names:
            await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(rows, args)


def report(rows: list[tuple[int, float, Tally, float]], args: argparse.Namespace) -> None:
    print(f"\nPayments through the gateway (sandbox providers in their own process, "
          f"callback delay {args.callback_delay:g} s, "
          f"in-process worker, mix {args.mix}), median of {args.rounds} round(s):")
    print(f"{'concurrency':>11}  {'payments/s':>10}  {'ledger tps':>10}  {'ratio':>6}  "
          + "  ".join(f"{k + ' p50/p99 ms':>20}" for k in KINDS))
    for concurrency in args.concurrency:
        mine = [r for r in rows if r[0] == concurrency]
        rate = statistics.median(r[1] for r in mine)
        anchor = statistics.median(r[3] for r in mine)
        times = {k: [t for r in mine for t in r[2].done[k]] for k in KINDS}
        print(f"{concurrency:>11}  {rate:>10.1f}  {anchor:>10.0f}  {rate / anchor:>6.3f}  " + "  ".join(
            f"{quantile(times[k], 0.5):>9.0f}/{quantile(times[k], 0.99):<10.0f}" for k in KINDS))
    failed = {k: sum(r[2].failed[k] for r in rows) for k in KINDS}
    if any(failed.values()):
        print("payments that did not succeed: " + ", ".join(f"{k} {n}" for k, n in failed.items() if n))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians over them")
    parser.add_argument("--mix", default="p2p=2,stk=1,b2c=1", help="kinds and weights")
    parser.add_argument("--callback-delay", type=float, default=0.05, help="sandbox seconds before each callback")
    parser.add_argument("--payers", type=int, default=2000)
    parser.add_argument("--worker-concurrency", type=int, default=16, help="outbox jobs run at once")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
