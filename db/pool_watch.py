"""Warns when the connection pool is too small for the load: connections opened beyond
``database.pool_size`` (the pool's overflow) are closed again as soon as they come back.

Why it matters: under a load that keeps more connections busy than the pool holds, every use of an
overflow connection pays a PostgreSQL backend start (fork, authentication, ``SET``s), an empty
statement cache on our side (each statement prepared again) and a close. In `bench.ussd` at 64
concurrent sessions with a pool of 20, that churn was a sixth of the gateway's CPU on balance
checks, and nothing said so. SQLAlchemy's pool fires ``connect`` for each new connection; one
opened while the pool is already at its size is overflow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


class OverflowWatch:
    """Counts overflow connections as they open; at the first one after ``every_s`` seconds, warns
    (naming the setting to raise) when at least ``threshold`` opened in that time: at most one
    warning a window, and none for a lone burst."""

    def __init__(self, engine: AsyncEngine, *, setting: str = "database.pool_size", every_s: float = 60.0,
                 threshold: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = engine.sync_engine.pool
        self.setting = setting
        self.every_s = every_s
        self.threshold = threshold
        self._clock = clock
        #: Overflow connections opened since the watch started.
        self.opened = 0
        self._since = clock()
        self._in_window = 0
        event.listen(self._pool, "connect", self._connected)

    def _connected(self, dbapi_connection: object, record: object) -> None:
        # The pool counts a connection as overflow before it opens it; past its size, overflow() > 0.
        if self._pool.overflow() <= 0:
            return
        self.opened += 1
        self._in_window += 1
        now = self._clock()
        if now - self._since < self.every_s:
            return
        if self._in_window >= self.threshold:
            log.warning(
                "database: %d connections opened beyond %s (%d) in the last %.0f s; each is opened and closed "
                "for one use, costing a PostgreSQL backend start and statements prepared again: raise %s "
                "towards the connections busy at peak (PostgreSQL's max_connections permitting)",
                self._in_window, self.setting, self._pool.size(), now - self._since, self.setting)
        self._since, self._in_window = now, 0

    def close(self) -> None:
        event.remove(self._pool, "connect", self._connected)
