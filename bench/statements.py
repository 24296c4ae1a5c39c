"""What one PostgreSQL statement costs the gateway's process: CPU and wall time per statement, as
Sauti runs its statements, beside the same statement through asyncpg alone (the anchor), measured in
the same run on the same server.

On the USSD bench a hop's cost follows the statements it asks (a send's PIN hop asks about twenty,
a menu hop none), so this is the unit the gateway's CPU per hop is made of. Cases, each a trivial
statement (``SELECT $1::int``: the cost of asking, not of the answer), each at 1 and 32 tasks:
  - asyncpg: a prepared statement on a connection held throughout (the anchor);
  - held: SQLAlchemy's ``text()`` on a connection held throughout (statements of one transaction);
  - lone: one connection checkout per statement, in autocommit (`db.engine.autocommit`: how the
    USSD hot paths run who-is-calling, a PIN check, a balance);
  - transaction: one checkout per statement, inside ``BEGIN`` … ``COMMIT`` (`engine.begin()`).

    python -m bench.statements [--rounds 3] [--statements 3000] [--concurrency 1,32]

Uses $DATABASE_URL's server when set, else the embedded PostgreSQL under var/bench-pg. Creates nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.local_servers import ROOT, log
from db.embedded import start_embedded
from db.engine import async_url, autocommit, create_engine

STATEMENT = text("SELECT CAST(:x AS int)")
Ask = Callable[[int], Awaitable[object]]
#: Makes one task's way of asking; what it holds (a connection) is released with the stack.
Case = Callable[[AsyncExitStack], Awaitable[Ask]]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(case: Case, statements: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per statement: ``statements`` asked by ``concurrency`` tasks at once."""
    each = statements // concurrency
    async with AsyncExitStack() as stack:
        asks = [await case(stack) for _ in range(concurrency)]

        async def everyone() -> None:
            async def task(ask: Ask, offset: int) -> None:
                for i in range(each):
                    await ask(offset + i)
            await asyncio.gather(*(task(ask, n * each) for n, ask in enumerate(asks)))

        await everyone()  # warm-up: connections opened, statements prepared and cached
        started, spent = time.perf_counter(), cpu_s()
        await everyone()
        cpu, wall = cpu_s() - spent, time.perf_counter() - started
    return cpu / (each * concurrency) * 1e6, wall / (each * concurrency) * 1e6


def cases(engine: AsyncEngine, pool: asyncpg.Pool) -> dict[str, Case]:
    lone_engine = autocommit(engine)

    async def driver(stack: AsyncExitStack) -> Ask:
        conn = await stack.enter_async_context(pool.acquire())
        return (await conn.prepare("SELECT $1::int")).fetchval

    async def held(stack: AsyncExitStack) -> Ask:
        conn = await stack.enter_async_context(engine.connect())

        async def ask(x: int) -> object:
            return (await conn.execute(STATEMENT, {"x": x})).scalar()
        return ask

    async def lone(stack: AsyncExitStack) -> Ask:
        async def ask(x: int) -> object:
            async with lone_engine.connect() as conn:
                return (await conn.execute(STATEMENT, {"x": x})).scalar()
        return ask

    async def transaction(stack: AsyncExitStack) -> Ask:
        async def ask(x: int) -> object:
            async with engine.begin() as conn:
                return (await conn.execute(STATEMENT, {"x": x})).scalar()
        return ask

    return {"asyncpg (anchor)": driver, "held": held, "lone": lone, "transaction": transaction}


async def main(args: argparse.Namespace) -> None:
    configured = os.environ.get("DATABASE_URL")
    url = async_url(configured) if configured else await asyncio.to_thread(
        start_embedded, ROOT / "var" / "bench-pg", "postgres")
    levels = [int(c) for c in args.concurrency.split(",")]
    engine = create_engine(url, pool_size=max(levels), max_overflow=0)
    driver_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(driver_url, min_size=1, max_size=max(levels))
    figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        for round_ in range(1, args.rounds + 1):
            for name, case in cases(engine, pool).items():
                for concurrency in levels:
                    cpu, wall = await measure(case, args.statements, concurrency)
                    figures.setdefault((name, concurrency), []).append((cpu, wall))
                    log(f"round {round_}: {name:<17} {concurrency:>3} tasks: {cpu:5.0f} µs CPU, {wall:5.0f} µs wall")
    finally:
        await pool.close()
        await engine.dispose()
    print(f"\nOne statement (SELECT $1::int) as the gateway asks it; server: "
          f"{'DATABASE_URL' if configured else 'embedded PostgreSQL'}; CPU of this process per statement; "
          f"medians of {args.rounds} round(s) of {args.statements:,} statements")
    print(f"{'case':<18} {'tasks':>5} {'CPU µs':>7} {'x asyncpg':>10} {'wall µs':>8}")
    for concurrency in levels:
        anchor = statistics.median(cpu for cpu, _ in figures[("asyncpg (anchor)", concurrency)])
        for name in cases(engine, pool):
            runs = figures[(name, concurrency)]
            cpu, wall = statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs)
            print(f"{name:<18} {concurrency:>5} {cpu:>7.0f} {cpu / anchor:>9.2f}x {wall:>8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each figure is the median over them")
    parser.add_argument("--statements", type=int, default=3000, help="statements measured per case and round")
    parser.add_argument("--concurrency", default="1,32", help="concurrent tasks, comma-separated")
    asyncio.run(main(parser.parse_args()))
