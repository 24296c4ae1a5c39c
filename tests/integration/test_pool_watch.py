"""`db.pool_watch.OverflowWatch` on a real PostgreSQL pool: connections opened past the pool's size
are counted, and a load that keeps opening them is reported once a window, naming the setting."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from sqlalchemy import text

from db.engine import create_engine
from db.pool_watch import OverflowWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _busy(engine, connections: int) -> None:
    """Hold ``connections`` connections at once (each runs a statement), then give them all back."""
    async with AsyncExitStack() as stack:
        for _ in range(connections):
            conn = await stack.enter_async_context(engine.connect())
            await conn.execute(text("SELECT 1"))


async def test_only_connections_past_the_pool_size_count_and_each_use_opens_another(database_url):
    engine = create_engine(database_url, pool_size=2, max_overflow=3)
    watch = OverflowWatch(engine)
    try:
        await _busy(engine, 2)
        await _busy(engine, 2)
        assert watch.opened == 0  # the pool's own two, opened once and kept
        await _busy(engine, 4)
        assert watch.opened == 2
        await _busy(engine, 4)  # the two overflow connections were closed on their way back
        assert watch.opened == 4
        assert engine.sync_engine.pool.checkedin() == 2
    finally:
        watch.close()
        await engine.dispose()


async def test_a_routine_overflow_is_reported_once_a_window_and_a_lone_burst_is_not(database_url, caplog):
    clock = Clock()
    engine = create_engine(database_url, pool_size=1, max_overflow=4)
    watch = OverflowWatch(engine, every_s=60, threshold=6, clock=clock)
    caplog.set_level(logging.WARNING, logger="db.pool_watch")
    try:
        await _busy(engine, 4)  # a burst: 3 overflow connections
        clock.now += 61
        await _busy(engine, 2)  # the window ends with 4 of them, under the threshold
        assert watch.opened == 4 and not caplog.records

        for _ in range(4):  # 2 a round, 8 in the next window
            await _busy(engine, 3)
        clock.now += 61
        await _busy(engine, 2)
        assert len(caplog.records) == 1
        message = caplog.records[0].getMessage()
        assert "9 connections opened beyond database.pool_size (1) in the last 61 s" in message
        assert "raise database.pool_size" in message

        for _ in range(4):  # within the new window: counted, not yet reported
            await _busy(engine, 3)
        assert len(caplog.records) == 1
    finally:
        watch.close()
        await engine.dispose()


async def test_closing_the_watch_stops_counting(database_url):
    engine = create_engine(database_url, pool_size=1, max_overflow=2)
    watch = OverflowWatch(engine)
    watch.close()
    try:
        await asyncio.gather(_busy(engine, 2), _busy(engine, 1))
        assert watch.opened == 0
    finally:
        await engine.dispose()
