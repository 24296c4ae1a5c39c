"""Failed sign-ins counted per client, so PINs cannot be guessed across many wallets from one place.

The PIN lock-out (`payments.identities.PinService`) stops guessing at one wallet: 3 wrong PINs lock
it for 15 minutes. It does not stop one client from trying the commonest PINs on thousands of
wallets, 2 guesses each. So ``POST /v1/devices`` counts each client's failures (a wrong PIN, an
unknown phone, a locked wallet) in a fixed window; a client at the limit is refused with 429 and
``Retry-After`` before any PIN is looked at, until its window ends.

IMPORTANT: a try is counted before its PIN is checked (`attempt`, one atomic step) and taken back
when it succeeds (`succeeded`). Counted after the check, tries sent at the same moment all passed
the limit before any was counted: 20 concurrent guesses went through a limit of 4.

The client is the connecting address, or, when that address is one of ``security.trusted_proxies``,
the last address in ``X-Forwarded-For`` that those proxies appended (the ones before it are the
client's own say, and anyone can write them).

Counts live in-process, or in Redis when ``redis.url`` is set, so every gateway process shares them.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Collection
from typing import Protocol

from aiohttp import web

from dialogs.redis_pipe import RedisPipe, Script


class SignInLimiter(Protocol):
    async def attempt(self, client: str) -> float | None:
        """Count a try by ``client``; seconds until it may try again when this one is past the
        limit (refused), else None."""

    async def succeeded(self, client: str) -> None:
        """Take back the try `attempt` counted: it signed in."""

    async def close(self) -> None: ...


class MemorySignInLimiter:
    """Counts in this process (a fixed window per client, from its first failure)."""

    def __init__(self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_clients = max_clients
        self._windows: dict[str, tuple[int, float]] = {}  # client -> (failures, window end)

    async def attempt(self, client: str) -> float | None:
        now = self._clock()
        tries, ends = self._windows.get(client, (0, 0.0))
        if ends <= now:
            tries, ends = 0, now + self.window_s
            if len(self._windows) >= self._max_clients:
                self._forget_ended(now)
        self._windows[client] = (tries + 1, ends)
        return ends - now if tries + 1 > self.limit else None

    async def succeeded(self, client: str) -> None:
        tries, ends = self._windows.get(client, (0, 0.0))
        if tries > 0:
            self._windows[client] = (tries - 1, ends)

    def __len__(self) -> int:
        """How many clients are being counted."""
        return len(self._windows)

    def _forget_ended(self, now: float) -> None:
        """Drop windows that have ended (a flood of clients must not grow memory for ever)."""
        for client in [c for c, (_, ends) in self._windows.items() if ends <= now]:
            del self._windows[client]

    async def close(self) -> None:
        self._windows.clear()


# One round trip each, atomic: the first try starts the window (its expiry), later ones count in it;
# a try past the limit gets the window's time left.
_ATTEMPT = Script("local n = redis.call('INCR', KEYS[1]) "
                  "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
                  "if n > tonumber(ARGV[2]) then return redis.call('PTTL', KEYS[1]) end return -1")
_TAKE_BACK = Script("if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end "
                    "return 0")


class RedisSignInLimiter:
    """Counts in Redis, shared by every gateway process; each client's count expires with its window."""

    def __init__(self, redis: RedisPipe, limit: int, window_s: float, *, key_prefix: str = "sauti:signin:") -> None:
        self.redis = redis
        self.limit = limit
        self.window_s = window_s
        self.prefix = key_prefix

    async def attempt(self, client: str) -> float | None:
        wait_ms = await self.redis.run_script(_ATTEMPT, [self.prefix + client],
                                              [math.ceil(self.window_s * 1000), self.limit])
        return wait_ms / 1000 if isinstance(wait_ms, int) and wait_ms > 0 else None

    async def succeeded(self, client: str) -> None:
        await self.redis.run_script(_TAKE_BACK, [self.prefix + client], [])

    async def close(self) -> None:
        await self.redis.close()


def _address(text: str) -> str:
    """An IP address in its one canonical spelling ("0:0:0:0:0:0:0:1" is "::1"), so that a proxy is
    known however it was written; anything else as it came."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip()


def client_address(request: web.Request, trusted_proxies: Collection[str]) -> str:
    """Who is signing in: the connecting address, or the address a trusted proxy says it served."""
    remote = _address(request.remote or "unknown")
    proxies = {_address(proxy) for proxy in trusted_proxies}
    if remote not in proxies:
        return remote
    # Every X-Forwarded-For line, as one list (RFC 9110: repeated lines are one, comma-joined): a proxy
    # that adds a line of its own rather than appending to the client's comes last, and is believed.
    lines = request.headers.getall("X-Forwarded-For", [])
    hops = [_address(hop) for hop in ",".join(lines).split(",") if hop.strip()]
    # From the right: skip our own proxies; the first other address is the one they connected from.
    for hop in reversed(hops):
        if hop not in proxies:
            return hop
    return remote
