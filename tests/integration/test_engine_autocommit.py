"""`db.engine.autocommit` on a real PostgreSQL: lone statements outside any transaction, on the
engine's own pool, and connections that go back to the pool as they came."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from db.engine import autocommit


async def _two_clocks(engine) -> tuple:
    async with engine.connect() as conn:
        first = (await conn.execute(text("SELECT now()"))).scalar_one()
        await asyncio.sleep(0.01)
        second = (await conn.execute(text("SELECT now()"))).scalar_one()
    return first, second


async def test_each_statement_is_a_transaction_of_its_own(engine):
    first, second = await _two_clocks(autocommit(engine))
    assert first != second  # now() is the transaction's start: each statement had its own


async def test_it_shares_the_pool_and_gives_connections_back_as_they_came(engine):
    reads = autocommit(engine)
    assert autocommit(engine) is reads  # made once per engine
    assert reads.sync_engine.pool is engine.sync_engine.pool
    for _ in range(3):  # enough to come back to a connection the autocommit engine used
        await _two_clocks(reads)
        first, second = await _two_clocks(engine)
        assert first == second  # the plain engine still wraps its statements in one transaction


async def test_a_write_through_it_commits_as_it_ends(engine):
    async with autocommit(engine).connect() as conn:
        await conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS t_autocommit (n int)"))
        await conn.execute(text("INSERT INTO t_autocommit VALUES (1)"))
        # No commit asked for: still there after a ROLLBACK, which has nothing to undo.
        await conn.execute(text("ROLLBACK"))
        assert (await conn.execute(text("SELECT count(*) FROM t_autocommit"))).scalar_one() == 1
