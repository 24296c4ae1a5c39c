"""The event loop `sauti serve` runs on: uvloop (libuv, from the authors of asyncpg) by default,
or the standard library's (``server.event_loop: asyncio``).

Why uvloop: the gateway is one process whose event loop does all of a hop's work, and in
`bench.ussd` at 64 sessions it spent about a tenth less CPU per hop on it than on asyncio's (socket
writes and reads, timers and callbacks in C). The test suite runs on the same loop
(`tests/conftest.py`; ``SAUTI_TEST_EVENT_LOOP=asyncio`` runs it on the standard one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

EventLoopKind = Literal["uvloop", "asyncio"]


def loop_factory(kind: EventLoopKind) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new loop of ``kind``."""
    if kind == "uvloop":
        import uvloop  # imported only when chosen

        return uvloop.new_event_loop
    return asyncio.new_event_loop
