"""Pipelined connections to Redis for the USSD session store, the hot path of every hop.

Why not redis-py's pool: each hop reads and writes its session, and redis-py spends 60 to 100 µs of
CPU per command (a connection checkout, a timer per command, a ``send`` system call per command);
with 64 hops in flight that was about half of a hop's cost in the gateway process. Here every
command issued during one turn of the event loop goes out in a single write on one connection
(Redis answers a connection's commands in order, so replies are matched to callers by position),
and one timer watches the oldest command in flight: about 10 µs per command, and fewer system
calls for Redis too.

Kept small on purpose: RESP2 replies, ``redis://``, ``rediss://`` (TLS, verified) and ``unix://``
URLs with their user, password and database, scripts by SHA with a fallback to ``EVAL`` when Redis
forgot them, a fresh connection on the next command after a failure, and a timeout that fails
every command in flight when Redis stops answering. A command in flight when its connection is
lost is sent once more on a new connection (`RedisPipe.execute`): callers only send commands that
are safe to repeat (reads, SETs, and compare-and-set scripts).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from itertools import count
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: A reply as Redis sends it: bytes, an int, None, or a list of them.
Reply = Any


class RedisError(Exception):
    """Redis refused a command (its ``-ERR …`` reply)."""


class NoScript(RedisError):
    """``EVALSHA`` of a script Redis does not hold (restarted, or ``SCRIPT FLUSH``)."""


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached, or stopped answering; a command in flight may or may not have run."""


class ConnectionLost(RedisUnavailable):
    """The connection closed under commands in flight (Redis restarted, an idle timeout)."""


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is and how to log in, from a URL (the forms redis-py accepts)."""

    host: str = "127.0.0.1"
    port: int = 6379
    #: A Unix socket instead of host and port.
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else query.get("password")
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// Redis URL needs the socket's path")
            return cls(path=unquote(parts.path), db=int(query.get("db", 0)), username=username, password=password)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"Redis URLs start with redis://, rediss:// or unix://, not {parts.scheme}://")
        db = parts.path.strip("/") or query.get("db", "0")
        if not db.isdigit():
            raise ValueError(f"the Redis database is a number, not {db!r}")
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=int(db), username=username,
                   password=password, tls=parts.scheme == "rediss")

    def handshake(self) -> list[tuple[str, ...]]:
        """The commands a new connection sends before any other."""
        commands: list[tuple[str, ...]] = []
        if self.password is not None:
            commands.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", str(self.db)))
        return commands

    def __str__(self) -> str:  # never the password
        where = f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"
        return f"{where}/{self.db}"


@dataclass(frozen=True)
class Script:
    """A Lua script, sent by its SHA-1 (``EVALSHA``) once Redis holds it."""

    source: str

    @cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 (Redis names scripts so)


def pack(args: tuple[str | bytes | int, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"a Redis argument is str, bytes or int, not {type(arg).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def parse(buf: bytes | bytearray, pos: int) -> tuple[Reply | RedisError, int]:
    """The reply starting at ``pos`` and where the next one starts; raises `_Incomplete` when the
    buffer ends inside it, ValueError on bytes that are not RESP2."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, after = buf[pos], buf[pos + 1:end], end + 2
    if kind == 0x24:  # $: a bulk string, or nil
        size = int(line)
        if size < 0:
            return None, after
        stop = after + size
        if stop + 2 > len(buf):
            raise _Incomplete
        return bytes(buf[after:stop]), stop + 2
    if kind == 0x3A:  # :
        return int(line), after
    if kind == 0x2B:  # +
        return bytes(line), after
    if kind == 0x2D:  # -
        message = bytes(line).decode(errors="replace")
        return (NoScript if message.startswith("NOSCRIPT") else RedisError)(message), after
    if kind == 0x2A:  # *
        size = int(line)
        if size < 0:
            return None, after
        items = []
        for _ in range(size):
            item, after = parse(buf, after)
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP2 reply: {bytes(buf[pos:pos + 16])!r}")


class _Connection(asyncio.Protocol):
    """One connection: commands written in batches, replies handed back in order."""

    def __init__(self, timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.closed = False
        #: Callers waiting for a reply, oldest first, with when each command was issued.
        self._waiting: deque[tuple[asyncio.Future, float]] = deque()
        self._outgoing: list[bytes] = []
        self._flush_due = False
        self._watch: asyncio.TimerHandle | None = None
        self._buffer = bytearray()

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, command: bytes) -> asyncio.Future:
        if self.closed:
            raise ConnectionLost("the connection to Redis is closed")
        future = self._loop.create_future()
        now = self._loop.time()
        self._waiting.append((future, now))
        self._outgoing.append(command)
        if not self._flush_due:
            # Written after the other callbacks of this turn: hops woken together (their replies
            # came in one read) send their next commands in one write.
            self._flush_due = True
            self._loop.call_soon(self._flush)
        if self._watch is None:
            self._watch = self._loop.call_at(now + self._timeout_s, self._check_timeout)
        return future

    def _flush(self) -> None:
        self._flush_due = False
        if self._outgoing and not self.closed and self.transport is not None:
            data = b"".join(self._outgoing)
            self._outgoing.clear()
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        try:
            while pos < len(buf):
                reply, pos = parse(buf, pos)
                future, _ = self._waiting.popleft()
                if future.done():  # its caller was cancelled; the reply still takes its place
                    continue
                if isinstance(reply, RedisError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except _Incomplete:
            pass
        except (ValueError, IndexError):  # garbage, or a reply nobody asked for: nothing can be matched now
            self._fail(RedisUnavailable("Redis sent a reply that cannot be read; reconnecting"))
            return
        del buf[:pos]

    def _check_timeout(self) -> None:
        self._watch = None
        if not self._waiting:
            return
        due = self._waiting[0][1] + self._timeout_s
        if self._loop.time() < due:
            self._watch = self._loop.call_at(due, self._check_timeout)
            return
        self._fail(RedisUnavailable(f"Redis did not answer within {self._timeout_s:g} s"))

    def _fail(self, error: Exception) -> None:
        """Fail every command in flight and drop the connection (the next command opens another)."""
        self.closed = True
        waiting, self._waiting = self._waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed or self._waiting:
            self._fail(ConnectionLost(f"the connection to Redis closed ({type(exc).__name__ if exc else 'EOF'})"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RedisPipe:
    """Commands to one Redis over ``connections`` pipelined connections (opened on first use)."""

    def __init__(self, url: str, *, connections: int = 1, timeout_s: float = 2.0,
                 connect_timeout_s: float = 2.0) -> None:
        self.address = RedisAddress.from_url(url)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._slots: list[_Connection | None] = [None] * max(1, connections)
        self._opening: list[asyncio.Task | None] = [None] * len(self._slots)
        self._turn = count()
        self._closed = False

    async def execute(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply; raises `RedisError` when Redis refuses it,
        `RedisUnavailable` when it cannot be reached or does not answer in time."""
        command = pack(args)
        try:
            return await (await self._connection()).send(command)
        except ConnectionLost:
            # Redis restarted, or closed an idle connection as we wrote: once more, on a new one.
            return await (await self._connection()).send(command)

    async def run_script(self, script: Script, keys: list[str], args: list[str | bytes | int]) -> Reply:
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScript:
            return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def _connection(self) -> _Connection:
        if self._closed:
            raise RedisUnavailable("this Redis client is closed")
        slot = next(self._turn) % len(self._slots) if len(self._slots) > 1 else 0
        conn = self._slots[slot]
        if conn is not None and not conn.closed:
            return conn
        # Every caller that finds the slot closed waits for the same attempt (and shares its failure).
        opening = self._opening[slot]
        if opening is None or opening.done():
            opening = self._opening[slot] = asyncio.get_running_loop().create_task(self._open(slot))
        return await asyncio.shield(opening)

    async def _open(self, slot: int) -> _Connection:
        loop = asyncio.get_running_loop()
        a = self.address
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if a.path:
                    _, conn = await loop.create_unix_connection(lambda: _Connection(self.timeout_s), a.path)
                else:
                    context = ssl.create_default_context() if a.tls else None
                    _, conn = await loop.create_connection(lambda: _Connection(self.timeout_s), a.host, a.port,
                                                           ssl=context)
                for command in a.handshake():
                    await conn.send(pack(command))
        except (OSError, TimeoutError) as exc:
            if conn is not None:
                conn.close()
            raise RedisUnavailable(f"cannot reach Redis at {a} ({type(exc).__name__})") from None
        except RedisError:
            if conn is not None:
                conn.close()
            raise
        self._slots[slot] = conn
        return conn

    async def close(self) -> None:
        self._closed = True
        for slot, opening in enumerate(self._opening):
            if opening is not None and not opening.done():
                opening.cancel()
            conn = self._slots[slot]
            if conn is not None:
                conn.close()
            self._slots[slot] = None
