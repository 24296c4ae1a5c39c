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
  intent    a merchant's payment intent (`payments.intents`), asked then paid by its customer: the p2p
            payment plus the intent's row, its SMS and its end (``--mix p2p=1,intent=1`` sets one
            beside the other in the same run);

each followed until it is final (polled), so "time to final" includes the worker and the callbacks.
SMS receipts are sent too (they are outbox jobs like the rest). At each concurrency it prints
completed payments/s and p50/p99 time to final per kind, beside the ledger-only rate (case b of
`bench.ledger`: 3-leg transfers with group commit at concurrency 8) measured in the same run on the
same server.

With ``--webhooks``, each row runs a second time with every payment made for an API key that has a
webhook endpoint: each final state is also an event, signed and delivered by the same worker to a
receiver in a process of its own (a merchant's server). That row adds the events received per
payment (1.00: none lost) and the lag from the payment's final state to its event's arrival.

    python -m bench.payments [--concurrency 8,32] [--seconds 10] [--rounds 3] [--mix p2p=2,stk=1,b2c=1]
                             [--callback-delay 0.05] [--payers 2000] [--webhooks]

Uses $DATABASE_URL's server when set, else the embedded PostgreSQL under var/bench-pg; creates (and
drops) its own database there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from sqlalchemy.engine import make_url

from bench.ledger import ROOT, admin, prepare, run_case
from bench.local_servers import free_port, log, start_sandboxes, stop_sandboxes, until_listening
from db.embedded import start_embedded
from db.engine import async_url, create_engine
from gateway.app import create_app
from gateway.keys import DB_ENGINE, LEDGER, PAYMENTS
from gateway.settings import Settings
from payments import payment_store as store
from payments.accounts import AccountKind, open_account
from payments.api_keys import ApiKeyHasher, create_api_key
from payments.commands import Channel, Command, Deposit, SendToWallet, Withdraw
from payments.identities import Role, register_user
from payments.intent_store import IntentStatus
from payments.intents import CreateIntent, PayIntent
from payments.money import Currency, Money
from payments.postings import TransferRequest, payment_legs
from payments.webhook_endpoints import add_endpoint

KES = Currency.KES
KINDS = ("p2p", "stk", "b2c", "intent")


@dataclass
class Tally:
    done: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def completed(self) -> int:
        return sum(len(v) for v in self.done.values())


@dataclass
class Row:
    concurrency: int
    webhooks: bool
    rate: float
    tally: Tally
    anchor: float
    #: Events the receiver got per payment that ended (succeeded or failed), and their lags (s).
    events_per_payment: float = 0.0
    lags: list[float] = field(default_factory=list)


def parse_mix(text: str) -> list[str]:
    weighted: list[str] = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in KINDS:
            raise SystemExit(f"--mix: unknown kind {name!r} (choose from {', '.join(KINDS)})")
        weighted += [name] * int(weight or 1)
    return weighted


async def make_payers(app: web.Application, count: int) -> list[tuple[int, str]]:
    """Registered KES users with funded wallets; numbers end in 555 (the sandbox's plain success).
    Each is a merchant too, so that any of them may be asked to be paid through an intent."""
    engine, ledger = app[DB_ENGINE], app[LEDGER]
    payers: list[tuple[int, str]] = []
    async with engine.begin() as conn:
        source = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, KES, "mpesa")).id
        for i in range(count):
            phone = f"+2547{1_0000 + i:05d}555"
            user = await register_user(conn, phone, display_name=f"Payer {i}", kyc_tier=3,
                                       roles={Role.CUSTOMER, Role.MERCHANT})
            wallet = (await open_account(conn, AccountKind.CUSTOMER_WALLET, KES, user.id)).id
            await ledger.transfer(TransferRequest(f"bench-fund-{user.id}", payment_legs(
                source, wallet, Money.of(200_000, KES)), kind="deposit"), conn=conn)
            payers.append((user.id, phone))
    return payers


async def run_mix(app: web.Application, payers: list[tuple[int, str]], mix: list[str], *, concurrency: int,
                  seconds: float, api_key_id: int | None = None,
                  intent_key_id: int | None = None) -> tuple[Tally, float]:
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
            (payer, payer_phone), (payee, _) = rng.sample(payers, 2)
            counter += 1
            key = f"bench-{run}-{counter}"
            amount = Money(rng.randint(10, 500) * 100, KES)
            began = time.perf_counter()
            if kind == "intent":
                # The merchant (the payee) asks, the customer pays: as the API and USSD do, after the PIN.
                asked, _ = await payments.intents.create(CreateIntent(
                    key, api_key_id or intent_key_id or 0, payee, payer_phone, amount))
                paid = await payments.intents.pay(PayIntent(key, payer, asked.intent.public_id, Channel.API))
                ok = paid.intent.status is IntentStatus.SUCCEEDED
            else:
                payment = await payments.handle(command_of(kind, key, payer, payee, amount, api_key_id, rng))
                ok = payment.status.value == "succeeded" if payment.status.is_final else await final(payment.public_id)
            if ok:
                tally.done[kind].append(time.perf_counter() - began)
            else:
                tally.failed[kind] += 1

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return tally, time.perf_counter() - start


def command_of(kind: str, key: str, payer: int, payee: int, amount: Money, api_key_id: int | None,
               rng: random.Random) -> Command:
    if kind == "p2p":
        return SendToWallet(key, payer, amount, Channel.API, api_key_id=api_key_id, recipient_user_id=payee)
    if kind == "stk":
        return Deposit(key, payer, amount, Channel.API, api_key_id=api_key_id)
    return Withdraw(key, payer, amount, Channel.API, api_key_id=api_key_id, phone=f"+2547{rng.randrange(10**5):05d}555")


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


# -- the merchant's webhook receiver (`--webhooks`), in a process of its own ---------------------------


def serve_receiver(port: int) -> None:
    """Take every event (200 at once) and keep, for ``GET /taken``, how many came and the lag of
    each from its ``created_at`` (the payment's final state) to its arrival."""
    lags: list[float] = []

    async def take(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        lags.append((datetime.now(UTC) - datetime.fromisoformat(event["created_at"])).total_seconds())
        return web.Response(text="ok")

    async def taken(request: web.Request) -> web.Response:
        answer = web.json_response({"lags": lags[:]})
        lags.clear()
        return answer

    app = web.Application()
    app.router.add_post("/hooks", take)
    app.router.add_get("/taken", taken)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def start_receiver() -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.payments", "--webhook-receiver",
                                                   str(port), cwd=ROOT)
    await until_listening(port)
    return process, f"http://127.0.0.1:{port}"


async def platform_key(app: web.Application) -> int:
    """A platform key, which asks for the intents of a row without webhooks (its merchants' backend)."""
    async with app[DB_ENGINE].begin() as conn:
        return (await create_api_key(conn, ApiKeyHasher("bench"), "bench intents")).key.id


async def subscribe(app: web.Application, receiver: str) -> int:
    """A platform API key with an endpoint at the receiver; returns the key's id."""
    async with app[DB_ENGINE].begin() as conn:
        made = await create_api_key(conn, ApiKeyHasher("bench"), "bench merchant")
        await add_endpoint(conn, made.key.id, receiver + "/hooks", allow_local=True, max_per_key=1, actor="bench")
    return made.key.id


async def taken(receiver: str, expected: int, within_s: float = 30.0) -> list[float]:
    """The lags of the events the receiver got since the last call, once ``expected`` came (or the
    wait ran out: then fewer)."""
    lags: list[float] = []
    deadline = time.perf_counter() + within_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(receiver + "/taken") as answer:
                lags += (await answer.json())["lags"]
            if len(lags) >= expected or time.perf_counter() > deadline:
                return lags
            await asyncio.sleep(0.2)


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
        "webhooks": {"allow_local_urls": True},
        "logging": {"level": "WARNING", "access_log": False},
    })
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    rows: list[Row] = []
    receiver = await start_receiver() if args.webhooks else None
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        log(f"gateway on :{port}, sandboxes in their own process on :{sandbox_base}-{sandbox_base + 2} "
            f"(callback delay {args.callback_delay:g} s); "
            f"registering and funding {args.payers:,} payers…")
        payers = await make_payers(app, args.payers)
        key_id = await subscribe(app, receiver[1]) if receiver else None
        intent_key_id = await platform_key(app) if "intent" in mix else None
        anchor_wallets, anchor_fees, _ = await prepare(anchor_url, 2_000, 8)
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}/{args.rounds}")
            anchor = await ledger_anchor(anchor_url, anchor_wallets, anchor_fees, args.seconds)
            log(f"  ledger only (3-leg transfers, group commit, c=8): {anchor:,.0f} transfers/s")
            for concurrency in args.concurrency:
                for hooks in (False, True) if receiver else (False,):
                    tally, elapsed = await run_mix(app, payers, mix, concurrency=concurrency, seconds=args.seconds,
                                                   api_key_id=key_id if hooks else None, intent_key_id=intent_key_id)
                    # Let what is still in flight finish before the next row starts.
                    await asyncio.sleep(args.callback_delay + 0.5)
                    row = Row(concurrency, hooks, tally.completed / elapsed, tally, anchor)
                    if hooks:
                        ended = tally.completed + sum(tally.failed.values())
                        row.lags = await taken(receiver[1], ended)
                        row.events_per_payment = len(row.lags) / max(ended, 1)
                    log(f"  c={concurrency:<3}{' webhooks' if hooks else ''} {row.rate:7.1f} payments/s  " + "  ".join(
                        f"{k}: {len(tally.done[k])} ok/{tally.failed[k]} failed" for k in KINDS if k in mix))
                    rows.append(row)
    finally:
        await runner.cleanup()
        await stop_sandboxes(sandbox)
        if receiver:
            await stop_sandboxes(receiver[0])
        for name in names:
            await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report(rows, args)


def report(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nPayments through the gateway (sandbox providers in their own process, "
          f"callback delay {args.callback_delay:g} s, "
          f"in-process worker, mix {args.mix}), median of {args.rounds} round(s):")
    print(f"{'concurrency':>11}  {'webhooks':>8}  {'payments/s':>10}  {'ledger tps':>10}  {'ratio':>6}  "
          + "  ".join(f"{k + ' p50/p99 ms':>20}" for k in KINDS)
          + ("  events/payment  event lag p50/p99 ms" if args.webhooks else ""))
    for concurrency in args.concurrency:
        for hooks in (False, True) if args.webhooks else (False,):
            mine = [r for r in rows if r.concurrency == concurrency and r.webhooks == hooks]
            rate = statistics.median(r.rate for r in mine)
            anchor = statistics.median(r.anchor for r in mine)
            times = {k: [t for r in mine for t in r.tally.done[k]] for k in KINDS}
            line = (f"{concurrency:>11}  {'yes' if hooks else 'no':>8}  {rate:>10.1f}  {anchor:>10.0f}  "
                    f"{rate / anchor:>6.3f}  " + "  ".join(
                        f"{quantile(times[k], 0.5):>9.0f}/{quantile(times[k], 0.99):<10.0f}" for k in KINDS))
            if hooks:
                lags = [lag for r in mine for lag in r.lags]
                line += (f"  {min(r.events_per_payment for r in mine):>14.2f}  "
                         f"{quantile(lags, 0.5):>9.0f}/{quantile(lags, 0.99):<.0f}")
            print(line)
    failed = {k: sum(r.tally.failed[k] for r in rows) for k in KINDS}
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
    parser.add_argument("--webhooks", action="store_true",
                        help="run each row again with every payment's final state sent as a webhook event")
    parser.add_argument("--webhook-receiver", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.webhook_receiver:
        serve_receiver(args.webhook_receiver)
        return
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
