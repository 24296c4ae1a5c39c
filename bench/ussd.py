"""USSD benchmark: hops per second and p50/p99 hop latency of `POST /ussd`, beside a bare aiohttp
handler answering a fixed ``CON`` screen, measured in the same run with the same client.

The gateway runs as `sauti serve` does (one process, PostgreSQL, the outbox worker in-process),
with its session store in Redis (``REDIS_URL``, default redis://127.0.0.1:6379/0) and, for
comparison, in-process. The provider sandboxes (the SMS receipts' Africa's Talking) run in a
process of their own, as the real providers would (``--sandboxes in-gateway``: inside `sauti serve`,
on its event loop, its default for a person trying it). Callers are concurrent sessions, each
running one realistic session after another:
  - 40 % menu browsing: dial, My account, back, Send money, back, home (no END: the caller walks away);
  - 35 % balance checks: dial, My account, Balance, PIN, END;
  - 25 % p2p sends: dial, Send money, a registered number, an amount, PIN, END (a ledger transfer,
    an SMS receipt to each side through the outbox). A send that does not end on the "Sent … Ref …"
    screen (a limit, a refusal) is a failed hop: the callers are on the ``pro`` fee plan (no monthly
    allowance), since on the default plan every send after a caller's fiftieth would be refused
    cheaply and the figures would measure refusals, not payments.
A second mix, menu browsing only (no PIN), shows the engine's own cost apart from the payments'
(``--mixes balance`` and ``--mixes send`` run only those sessions). Each case
runs at 64 and 256 concurrent sessions, with no pause between hops (a saturating load). PINs are
checked as by default, against keyed check values (``--pin-check keyed``), or with an argon2 verify
each (``--pin-check argon2``, as with ``security.pin_check_key_file: null``); the argon2 cost is as
configured (config.yml's security section) and printed with the results. Beside each rate: the CPU
time the server's process, and PostgreSQL's processes when they run on this machine, spent per hop
served (a steadier figure than hops/s on a shared machine, where the rate swings between runs).
After the realistic mix at the lowest concurrency, the same callers pause before each hop (a person
reading and typing, random pauses) so that together they offer a share of the rate just measured
(``--paced 0.5``: half): the latency of a gateway run below saturation, as one would be.

    python -m bench.ussd [--seconds 10] [--concurrency 64,256] [--stores redis,memory]
                         [--mixes realistic,browse] [--users 1000] [--pin-check keyed|argon2]
                         [--pool-size N] [--sandboxes own-process|in-gateway] [--paced 0.5] [--workers 1]

Uses $DATABASE_URL's server when set, else the embedded PostgreSQL under var/bench-pg; creates (and
drops) its own database there. Target (issue 4): at least 40 % of the bare handler's rate, and p99
under 50 ms at 64 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import secrets
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field, replace

import aiohttp
import psutil
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.local_servers import ROOT, free_port, log, start_sandboxes, stop_sandboxes
from db.embedded import start_embedded
from db.engine import async_url, create_engine
from db.migrate import upgrade
from gateway.resources import pin_policy
from gateway.settings import load_settings
from payments.accounts import AccountKind, open_account
from payments.identities import PinService, register_user
from payments.ledger import Ledger, LedgerLimits
from payments.money import Currency, Money
from payments.postings import TransferRequest, payment_legs
from payments.sandbox.outcomes import SUFFIXES

PIN = "2580"
SERVICE_CODE = "*384*1#"
SORRY = "Sorry, something went wrong"
# A p2p send's result screen (`send.done` in the English catalog): a send session that ends on any
# other screen (a limit, a refusal) measured no payment, and counts as a failed hop.
# The offer to continue a session cut off mid-journey (`sys.resume`); "2" starts again.
RESUME = "CON Your last session was not finished."
SENT = re.compile(r"^END Sent .* Ref [0-9A-Z]{10}\. New balance ")
BARE_SCREEN = "CON Sauti\n1. Send money\n2. Pay bill\n3. Buy goods\n4. Withdraw\n5. Deposit\n6. My account"


# -- the anchor: a bare aiohttp handler ------------------------------------------------------------


def bare_app() -> web.Application:
    async def ussd(request: web.Request) -> web.Response:
        await request.post()  # parse the form, as any USSD handler must
        return web.Response(text=BARE_SCREEN, content_type="text/plain")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ready")

    app = web.Application()
    app.router.add_post("/ussd", ussd)
    app.router.add_get("/readyz", ready)  # so the benchmark waits for it as for the gateway
    return app


# -- load --------------------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float]
    #: Hops that carry no PIN (no PIN check, no payment): the engine's own cost.
    plain: list[float] = field(default_factory=list)
    errors: int = 0
    sessions: int = 0


def _scenario(rng: random.Random, phones: list[str], me: str, mix: str) -> tuple[list[str], str]:
    """The inputs of one session and its kind."""
    roll = {"realistic": rng.random(), "browse": 0.0, "balance": 0.5, "send": 1.0}[mix]
    if roll < 0.40:
        return ["6", "0", "1", "0", "00"], "browse"
    if roll < 0.75:
        return ["6", "1", PIN], "balance"
    payee = rng.choice(phones)
    while payee == me:
        payee = rng.choice(phones)
    return ["1", payee, str(rng.randint(1, 50)), PIN], "send"


async def _caller(url: str, http: aiohttp.ClientSession, me: str, phones: list[str], stop: float, tally: Tally,
                  rng: random.Random, bare: bool, mix: str, think_s: float = 0.0) -> None:
    while time.perf_counter() < stop:
        inputs, kind = _scenario(rng, phones, me, mix)
        session_id = f"ATUid_{uuid.uuid4().hex}"
        history: list[str] = []
        steps = [None, *inputs]
        # A list's iterator walks by index, so a step inserted ahead (the resume offer's "2") is taken next.
        for typed in steps:
            if think_s:
                # A person reading the screen and typing: random pauses, so the hops of the callers
                # arrive spread out (as from many phones), not in step.
                await asyncio.sleep(rng.expovariate(1 / think_s))
                if time.perf_counter() >= stop:
                    break
            if typed is not None:
                history.append(typed)
            form = {"sessionId": session_id, "serviceCode": SERVICE_CODE, "phoneNumber": me, "networkCode": "63902",
                    "text": "*".join(history)}
            started = time.perf_counter()
            try:
                async with http.post(url, data=form) as resp:
                    body = await resp.text()
                    # Our "something went wrong" screen is a valid answer, but a failed hop.
                    ok = resp.status == 200 and body[:4] in ("CON ", "END ") and SORRY not in body
                    if ok and kind == "send" and typed == PIN and not bare:
                        ok = SENT.match(body) is not None
            except (aiohttp.ClientError, TimeoutError):
                ok, body = False, ""
            if time.perf_counter() < stop:
                took = time.perf_counter() - started
                tally.latencies.append(took)
                if typed != PIN:
                    tally.plain.append(took)
                tally.errors += not ok
            if not ok or (body.startswith("END ") and not bare) or time.perf_counter() >= stop:
                break
            if typed is None and body.startswith(RESUME):
                # This caller's last session was cut off mid-journey (a row, or the warm-up, ended
                # under it): start again, as a person beginning something new would.
                steps.insert(1, "2")
        tally.sessions += 1


async def measure(url: str, concurrency: int, seconds: float, phones: list[str], *, bare: bool,
                  mix: str = "realistic", cpu: CpuMeter | None = None, think_s: float = 0.0) -> Tally:
    """Hops of ``concurrency`` callers for ``seconds``: back to back (a saturating load), or with a
    pause of ``think_s`` on average before each hop (a load below saturation)."""
    tally = Tally([])
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        # Warm up: a second of the same load, not counted.
        warm = Tally([])
        stop = time.perf_counter() + 1.0
        await asyncio.gather(*(_caller(url, http, phones[i % len(phones)], phones, stop, warm, random.Random(i), bare,
                                       mix, think_s) for i in range(concurrency)))
        started = time.perf_counter()
        stop = started + seconds
        if cpu:
            cpu.start()
        await asyncio.gather(*(_caller(url, http, phones[(i * 7919) % len(phones)], phones, stop, tally,
                                       random.Random(1000 + i), bare, mix, think_s) for i in range(concurrency)))
        if cpu:
            cpu.stop()
    return tally


# -- CPU time: a steadier figure than hops/s on a shared machine -------------------------------------


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return times.user + times.system


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _postgres() -> list[psutil.Process]:
    """PostgreSQL's processes on this machine (the server, its backends and workers), when it runs here."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            found.append(proc)
    return found


def _machine_busy_s() -> float:
    """CPU seconds every core of this machine spent running something since boot: user and system
    time and interrupts (not idle, not waiting on I/O, not stolen by the hypervisor; a guest's time
    is already in user time)."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


@dataclass
class CpuMeter:
    """CPU seconds spent between `start` and `stop` by the gateway process, PostgreSQL's processes
    (backends that came and went meanwhile are missed: the gateway's pool keeps its own), this
    process (the load generator), and the whole machine (the rest: Redis, the sandboxes, anything
    else running)."""

    gateway: psutil.Process | None
    spent_gateway: float = 0.0
    spent_postgres: float = 0.0
    spent_load: float = 0.0
    spent_machine: float = 0.0
    _at_start: dict[int, float] = field(default_factory=dict)
    _load_at_start: float = 0.0
    _machine_at_start: float = 0.0

    def _read(self) -> tuple[set[int], dict[int, float]]:
        """The gateway's pids (with --workers the gateway is a supervisor whose processes do the
        work), and CPU seconds of those and of PostgreSQL's, by pid."""
        gateway = [self.gateway, *_children(self.gateway)] if self.gateway else []
        return {p.pid for p in gateway}, {p.pid: _cpu_s(p) for p in gateway + _postgres()}

    def start(self) -> None:
        _, self._at_start = self._read()
        self._load_at_start, self._machine_at_start = _cpu_s(psutil.Process()), _machine_busy_s()

    def stop(self) -> None:
        self.spent_load += _cpu_s(psutil.Process()) - self._load_at_start
        self.spent_machine += _machine_busy_s() - self._machine_at_start
        gateway, now = self._read()
        for pid, spent in now.items():
            delta = spent - self._at_start.get(pid, spent)
            if pid in gateway:
                self.spent_gateway += delta
            else:
                self.spent_postgres += delta


# -- set-up ------------------------------------------------------------------------------------------


async def admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _bench_phones(users: int) -> list[str]:
    """The callers' numbers, none ending in a suffix the sandboxes act on (`SUFFIXES`: a slow or
    failing answer would time receipts and retries, not USSD hops)."""
    candidates = (f"+2547{10_000_000 + k * 37:08d}" for k in itertools.count())
    return list(itertools.islice((phone for phone in candidates if phone[-3:] not in SUFFIXES), users))


async def seed(url: str, users: int, pins: PinService) -> list[str]:
    """``users`` Kenyan customers with the same PIN (hashed once; with its check value when ``pins``
    has a check key, as a user's first right PIN would have derived it) and KES 1,000,000 each."""
    engine = create_engine(url, pool_size=4)
    digest = await pins.hash(PIN)
    phones: list[str] = []
    try:
        ledger = Ledger(engine, LedgerLimits.from_major(10**9))
        async with engine.begin() as conn:
            source = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, Currency.KES, "mpesa")).id
            wallets, ids = [], []
            for n, phone in enumerate(_bench_phones(users)):
                user = await register_user(conn, phone, display_name=f"Bench Caller {n}")
                wallets.append((await open_account(conn, AccountKind.CUSTOMER_WALLET, Currency.KES, user.id)).id)
                phones.append(phone)
                ids.append(user.id)
            await conn.execute(text("UPDATE users SET pin_hash = :h"), {"h": digest})
            if pins.policy.check_key:
                await conn.execute(text("UPDATE users SET pin_check = :c WHERE id = :u"),
                                   [{"c": pins.check_value(u, PIN), "u": u} for u in ids])
            for wallet in wallets:
                await ledger.transfer(TransferRequest(f"seed-{wallet}", payment_legs(
                    source, wallet, Money.of(1_000_000, Currency.KES)), kind="deposit"), conn=conn)
    finally:
        await engine.dispose()
    return phones


async def wait_until_up(url: str, process: asyncio.subprocess.Process, within_s: float = 90) -> None:
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise SystemExit(f"the server under test exited with {process.returncode}")
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit(f"{url} did not become ready")


async def start_gateway(database: str, store: str, redis_url: str, pin_check_key: str,
                        pool_size: int, sandbox_base: int | None,
                        workers: int = 1) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database, "SAUTI__LOGGING__ACCESS_LOG": "false",
           "SAUTI__LOGGING__LEVEL": "WARNING", "SAUTI__PROVIDERS__MODE": "sandbox",
           "SAUTI__PAYMENTS__CALLBACK_SECRET": "bench-callback-secret-0123456789",
           "SAUTI__PAYMENTS__RECOVERY_INTERVAL_S": "3600", "SAUTI__DATABASE__POOL_SIZE": str(pool_size),
           # The callers send hundreds of payments each: on the default plan's monthly allowance (50)
           # every send after the fiftieth would be refused, and the figures would measure refusals.
           "SAUTI__PAYMENTS__DEFAULT_PLAN": "pro",
           "SAUTI__USSD__REDIS_KEY_PREFIX": f"sauti-bench-{uuid.uuid4().hex[:8]}-"}
    env.pop("REDIS_URL", None)
    env.pop("SAUTI_PIN_CHECK_KEY", None)
    if pin_check_key:
        env["SAUTI_PIN_CHECK_KEY"] = pin_check_key
    else:
        env["SAUTI__SECURITY__PIN_CHECK_KEY_FILE"] = "null"  # argon2 for every check
    if store == "redis":
        env["REDIS_URL"] = redis_url
    if sandbox_base is not None:
        env["SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE"] = "false"
        env["SAUTI__PROVIDERS__SANDBOX__PORT_BASE"] = str(sandbox_base)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
        str(workers), cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    await wait_until_up(url, process)
    return process, url


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()


@dataclass(frozen=True)
class Row:
    name: str
    concurrency: int
    hops_per_s: float
    p50_ms: float
    p99_ms: float
    plain_p99_ms: float
    errors: int
    #: CPU milliseconds per hop of the server's process and of PostgreSQL (nan when not measured).
    cpu_ms: float = float("nan")
    pg_cpu_ms: float = float("nan")
    #: CPU milliseconds per hop of the load generator (this process) and of the whole machine.
    load_cpu_ms: float = float("nan")
    machine_cpu_ms: float = float("nan")
    #: Outbox jobs (SMS receipts) still waiting when the row ended: 0 when the worker kept up.
    queued: int = 0
    #: For a paced row, the share of the saturated rate its callers offered (0: back to back).
    paced: float = 0.0


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")


def row(name: str, concurrency: int, tally: Tally, seconds: float, cpu: CpuMeter | None = None) -> Row:
    lat = tally.latencies

    def per_hop(spent: float) -> float:
        return spent * 1000 / len(lat) if cpu and lat else float("nan")

    return Row(name, concurrency, len(lat) / seconds, statistics.median(lat) * 1000 if lat else float("nan"),
               _p99(lat), _p99(tally.plain), tally.errors,
               per_hop(cpu.spent_gateway if cpu else 0.0), per_hop(cpu.spent_postgres if cpu else 0.0),
               per_hop(cpu.spent_load if cpu else 0.0), per_hop(cpu.spent_machine if cpu else 0.0))


def argon2_verify_ms(pins: PinService) -> float:
    digest = pins._hasher.hash(PIN)
    started = time.perf_counter()
    for _ in range(10):
        pins._hasher.verify(digest, PIN)
    return (time.perf_counter() - started) / 10 * 1000


async def queued_jobs(engine: AsyncEngine) -> int:
    """Outbox jobs not yet done (the receipts of sends the worker has not caught up with)."""
    async with engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT count(*) FROM outbox_jobs WHERE status IN ('pending', 'running')"))).scalar_one()


async def drain(engine: AsyncEngine, within_s: float = 120.0) -> None:
    """Wait for the worker to send what a row left queued, so the next row does not pay for it."""
    deadline = time.monotonic() + within_s
    while (left := await queued_jobs(engine)) and time.monotonic() < deadline:
        log(f"  {left} outbox jobs still queued …")
        await asyncio.sleep(2)


async def measure_paced(url: str, jobs: AsyncEngine, concurrency: int, saturated: float, store: str,
                       args: argparse.Namespace, phones: list[str], process: asyncio.subprocess.Process) -> list[Row]:
    """The realistic mix below saturation: the same callers, each pausing before every hop so that
    together they offer a share of the saturated rate (``--paced``). What operators size for: the
    latency at the load a gateway is run at, not at the most it can take."""
    rows: list[Row] = []
    for share in (float(p) for p in args.paced.split(",") if p):
        think_s = concurrency / (share * saturated)
        log(f"gateway ({store} sessions, realistic mix), {concurrency} callers offering {share:.0%} "
            f"of {saturated:,.0f} hops/s …")
        cpu = CpuMeter(psutil.Process(process.pid))
        tally = await measure(url + "/ussd", concurrency, args.seconds, phones, bare=False, cpu=cpu, think_s=think_s)
        rows.append(replace(row(f"sauti {store}, paced {share:.0%}", concurrency, tally, args.seconds, cpu),
                            queued=await queued_jobs(jobs), paced=share))
        await drain(jobs)
    return rows


async def measure_gateway(database: str, store: str, args: argparse.Namespace, check_key: str, phones: list[str],
                          concurrencies: list[int], pool_size: int, sandbox_base: int | None) -> list[Row]:
    """One gateway process with ``store`` sessions, every mix at every concurrency."""
    rows: list[Row] = []
    process, url = await start_gateway(database, store, args.redis_url, check_key, pool_size, sandbox_base,
                                       args.workers)
    jobs = create_async_engine(database, pool_size=1)  # to count the receipts still queued
    try:
        for mix in args.mixes.split(","):
            for c in concurrencies:
                log(f"gateway ({store} sessions, {mix} mix), {c} sessions …")
                cpu = CpuMeter(psutil.Process(process.pid))
                tally = await measure(url + "/ussd", c, args.seconds, phones, bare=False, mix=mix, cpu=cpu)
                rows.append(replace(row(f"sauti {store}, {mix}", c, tally, args.seconds, cpu),
                                    queued=await queued_jobs(jobs)))
                await drain(jobs)
                if mix == "realistic" and c == min(concurrencies):
                    rows += await measure_paced(url, jobs, c, rows[-1].hops_per_s, store, args, phones, process)
    finally:
        await jobs.dispose()
        await stop(process)
    return rows


async def main(args: argparse.Namespace) -> None:
    check_key = secrets.token_urlsafe(32) if args.pin_check == "keyed" else ""
    settings = load_settings(ROOT / "config.yml", env={})
    settings = settings.model_copy(update={"security": settings.security.model_copy(
        update={"pin_check_key": SecretStr(check_key) if check_key else None, "pin_check_key_file": None})})
    s = settings.security
    configured = os.environ.get("DATABASE_URL")
    server = configured or await asyncio.to_thread(start_embedded, ROOT / "var" / "bench-pg", "postgres")
    name = f"sauti_bench_ussd_{uuid.uuid4().hex[:8]}"
    await admin(server, f'CREATE DATABASE "{name}"')
    database = make_url(async_url(server)).set(database=name).render_as_string(hide_password=False)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    rows: list[Row] = []
    try:
        engine = create_engine(database, pool_size=1)
        await upgrade(engine)
        await engine.dispose()
        log(f"seeding {args.users} callers …")
        pins = PinService(pin_policy(settings))
        phones = await seed(database, args.users, pins)
        verify_ms = argon2_verify_ms(pins)

        # The bare handler runs as the gateway does, in a process of its own (in this one it would
        # share a CPU with the load generator).
        bare_port = free_port()
        bare = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.ussd", "--bare-server",
                                                    str(bare_port), cwd=ROOT)
        try:
            # Not a fixed pause: on a slow machine the process took longer than one to listen, and
            # the first row counted refused connections as failed hops.
            await wait_until_up(f"http://127.0.0.1:{bare_port}", bare)
            for c in concurrencies:
                log(f"bare handler, {c} sessions …")
                cpu = CpuMeter(psutil.Process(bare.pid))
                rows.append(row("bare aiohttp (fixed CON)", c, await measure(
                    f"http://127.0.0.1:{bare_port}/ussd", c, args.seconds, phones, bare=True, cpu=cpu),
                    args.seconds, cpu))
        finally:
            await stop(bare)
        sandboxes, sandbox_base = (await start_sandboxes(settings.providers.sandbox.callback_delay_s)
                                   if args.sandboxes == "own-process" else (None, None))
        try:
            for store in args.stores.split(","):
                if store == "memory" and args.workers > 1:
                    log("in-process sessions skipped: several gateway processes need Redis sessions")
                    continue
                rows += await measure_gateway(database, store, args, check_key, phones, concurrencies,
                                              args.pool_size or settings.database.pool_size, sandbox_base)
        finally:
            if sandboxes is not None:
                await stop_sandboxes(sandboxes)
    finally:
        await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"\nUSSD hops: {args.seconds:g} s per row after 1 s of warm-up; mix 40 % browsing, 35 % balance "
          f"(PIN), 25 % p2p send (PIN); PostgreSQL: {'DATABASE_URL' if configured else 'embedded'}, "
          f"{args.pool_size or settings.database.pool_size} pooled connections "
          f"(+{settings.database.max_overflow} overflow) in each of {args.workers} gateway process(es); "
          f"provider sandboxes "
          f"{'in a process of their own' if args.sandboxes == 'own-process' else 'inside the gateway'}")
    per_hop = 0.60 / (0.40 * 6 + 0.35 * 4 + 0.25 * 5)  # PIN checks per hop in the realistic mix
    argon2 = (f"argon2id time_cost={s.argon2_time_cost}, memory={s.argon2_memory_kib} KiB, "
              f"parallelism={s.argon2_parallelism}: {verify_ms:.1f} ms of CPU per verify here")
    if check_key:
        print(f"PIN check: keyed check values (HMAC-SHA256; the realistic mix checks a PIN every "
              f"{1 / per_hop:.1f} hops); the PIN's record is an {argon2}, paid when a PIN is set or a check "
              f"value first derived")
    else:
        print(f"PIN check: an {argon2}; the realistic mix checks a PIN every {1 / per_hop:.1f} hops, so "
              f"argon2 alone caps it at {1000 / (verify_ms * per_hop):.0f} hops/s per CPU core "
              f"({os.cpu_count()} cores, shared with the load generator and PostgreSQL)")
    print("CPU ms/hop: CPU time of the server's process, and of PostgreSQL's (when it runs on this machine), "
          "per hop served: steadier than hops/s on a shared machine")
    print("queued: outbox jobs (SMS receipts) still waiting when the row ended; 0 when the worker kept up "
          "(they are sent before the next row starts)")
    print(f"{'server':<28} {'sessions':>8} {'hops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99 no-PIN':>11} "
          f"{'errors':>7} {'vs bare':>8} {'CPU ms/hop':>11} {'PG ms/hop':>10} {'queued':>7}")
    anchors = {r.concurrency: r.hops_per_s for r in rows if r.name.startswith("bare")}
    for r in rows:
        ratio = r.hops_per_s / anchors[r.concurrency] if anchors.get(r.concurrency) else float("nan")
        # A paced row's rate is what its callers offered, not what the gateway could do: no ratio.
        versus = "paced" if r.paced else f"{ratio:.0%}"
        print(f"{r.name:<28} {r.concurrency:>8} {r.hops_per_s:>9.0f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
              f"{r.plain_p99_ms:>11.1f} {r.errors:>7} {versus:>8} {r.cpu_ms:>11.2f} {r.pg_cpu_ms:>10.2f} "
              f"{r.queued:>7}")
    print("paced: the realistic mix's callers pausing before each hop (a person reading and typing) so that "
          "together they offer that share of the row above's rate; their p99 is the latency at that load")
    print("target: >= 40 % of the bare handler's hops/s; p99 < 50 ms at 64 sessions")
    print_budget(rows, anchors)


#: Issue 4's target: this share of the bare handler's hops/s.
TARGET_SHARE = 0.40


def print_budget(rows: list[Row], anchors: dict[int, float]) -> None:
    """Where the machine's CPU went per hop, and what the target leaves the gateway: at 40 % of the
    bare rate, the CPU that PostgreSQL, the load generator and the rest of the machine (Redis, the
    sandboxes) spend per hop, times that rate, must fit in this machine's cores beside the gateway's."""
    cores = psutil.cpu_count() or 1
    print(f"\nCPU per hop (ms; 'rest': Redis, the sandboxes and anything else on this machine) and what "
          f"{TARGET_SHARE:.0%} of the bare rate would leave the server on {cores} cores:")
    print(f"{'server':<28} {'sessions':>8} {'server':>7} {'PG':>6} {'load':>6} {'rest':>6} {'machine':>8} "
          f"{'target hops/s':>14} {'others need':>12} {'server may spend':>17}")
    for r in rows:
        if r.paced or r.machine_cpu_ms != r.machine_cpu_ms or not anchors.get(r.concurrency):
            continue
        pg = 0.0 if r.pg_cpu_ms != r.pg_cpu_ms else r.pg_cpu_ms
        rest = max(0.0, r.machine_cpu_ms - r.cpu_ms - pg - r.load_cpu_ms)
        target = TARGET_SHARE * anchors[r.concurrency]
        others = (pg + r.load_cpu_ms + rest) * target / 1000  # cores
        left = (cores - others) * 1000 / target  # ms of server CPU per hop the target leaves
        print(f"{r.name:<28} {r.concurrency:>8} {r.cpu_ms:>7.2f} {pg:>6.2f} {r.load_cpu_ms:>6.2f} {rest:>6.2f} "
              f"{r.machine_cpu_ms:>8.2f} {target:>14,.0f} {others:>8.2f} cores {left:>11.2f} ms/hop")


def serve_bare(port: int) -> None:
    web.run_app(bare_app(), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--concurrency", default="64,256", help="concurrent sessions, comma-separated")
    parser.add_argument("--stores", default="redis,memory", help="session stores to measure: redis, memory")
    parser.add_argument("--mixes", default="realistic,browse",
                        help="realistic (browsing, balance, p2p with PIN), browse (menus only: no PIN), and "
                             "for a closer look, balance or send (only balance checks, only p2p sends)")
    parser.add_argument("--paced", default="0.5",
                        help="after the realistic mix at the lowest concurrency, the same callers offering these "
                             "shares of its rate (comma-separated; '' for none)")
    parser.add_argument("--users", type=int, default=1000, help="registered callers")
    parser.add_argument("--pin-check", choices=("keyed", "argon2"), default="keyed",
                        help="PINs checked against keyed check values (the default) or by argon2 each time")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="the gateway's pooled PostgreSQL connections (default: database.pool_size in config.yml)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gateway processes sharing the port (sauti serve --workers; above 1: Redis sessions only)")
    parser.add_argument("--sandboxes", choices=("own-process", "in-gateway"), default="own-process",
                        help="the provider sandboxes (SMS receipts) in a process of their own, as real providers "
                             "are, or inside the gateway on its event loop (`sauti serve`'s default)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.bare_server:
        serve_bare(arguments.bare_server)
    else:
        asyncio.run(main(arguments))
