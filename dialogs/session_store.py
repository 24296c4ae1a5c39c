"""Where USSD sessions live between hops: in this process (the default), or in Redis (required
when more than one gateway process serves, since Africa's Talking may send each hop to any of them).

Both stores keep a session under its ``sessionId`` for ``session_ttl_s`` after its last hop, and a
resume pointer per phone number (the session a caller may continue) for ``resume_window_s``.
Saving is compare-and-set on the session's version: of two copies of one hop racing (a network
retry arriving while the first is still being answered), one saves and the other learns it lost and
answers with the winner's screen.
"""

from __future__ import annotations

import time
from typing import Protocol

from dialogs.redis_pipe import RedisPipe, Script
from dialogs.session import SessionState


class SessionStore(Protocol):
    async def load(self, session_id: str) -> SessionState | None: ...

    async def load_for_hop(self, session_id: str, phone: str) -> tuple[SessionState | None, str | None]:
        """The session (None if there is none) and the session ``phone``'s resume pointer names, read
        in one step: a hop needs the first, a session's first hop the second too."""

    async def save(self, state: SessionState, *, expected_version: int, resume: str | None = None) -> bool:
        """Store ``state`` (with its version bumped) if the stored copy is still at
        ``expected_version`` (0: none stored); False when another hop saved first. With it, in the
        same step: ``resume="point"`` points the caller's number at this session, ``"clear"``
        forgets the pointer if it names this session."""

    async def delete(self, session_id: str) -> None: ...

    async def set_resume(self, phone: str, session_id: str) -> None: ...

    async def resume_candidate(self, phone: str) -> str | None: ...

    async def clear_resume(self, phone: str, session_id: str) -> None:
        """Forget the pointer if it still names ``session_id`` (a newer session keeps its own)."""

    async def close(self) -> None: ...


class MemorySessionStore:
    """Sessions in a dict of this process, expired lazily (and swept when it grows)."""

    def __init__(self, *, session_ttl_s: float, resume_window_s: float, clock=time.monotonic) -> None:
        self.session_ttl_s = session_ttl_s
        self.resume_window_s = resume_window_s
        self._clock = clock
        self._sessions: dict[str, tuple[float, int, str]] = {}
        self._resume: dict[str, tuple[float, str]] = {}
        self._next_sweep = 0

    def _sweep(self) -> None:
        # Amortised: a full pass only once the dict doubled since the last one.
        if len(self._sessions) + len(self._resume) < self._next_sweep:
            return
        now = self._clock()
        self._sessions = {k: v for k, v in self._sessions.items() if v[0] > now}
        self._resume = {k: v for k, v in self._resume.items() if v[0] > now}
        self._next_sweep = max(1024, 2 * (len(self._sessions) + len(self._resume)))

    async def load(self, session_id: str) -> SessionState | None:
        found = self._sessions.get(session_id)
        if found is None or found[0] <= self._clock():
            return None
        return SessionState.loads(found[2])

    async def load_for_hop(self, session_id: str, phone: str) -> tuple[SessionState | None, str | None]:
        return await self.load(session_id), await self.resume_candidate(phone)

    async def save(self, state: SessionState, *, expected_version: int, resume: str | None = None) -> bool:
        found = self._sessions.get(state.session_id)
        current = found[1] if found is not None and found[0] > self._clock() else 0
        if current != expected_version:
            return False
        state.version = expected_version + 1
        self._sessions[state.session_id] = (self._clock() + self.session_ttl_s, state.version, state.dumps())
        if resume == "point":
            await self.set_resume(state.phone, state.session_id)
        elif resume == "clear":
            await self.clear_resume(state.phone, state.session_id)
        self._sweep()
        return True

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def set_resume(self, phone: str, session_id: str) -> None:
        self._resume[phone] = (self._clock() + self.resume_window_s, session_id)

    async def resume_candidate(self, phone: str) -> str | None:
        found = self._resume.get(phone)
        return found[1] if found is not None and found[0] > self._clock() else None

    async def clear_resume(self, phone: str, session_id: str) -> None:
        found = self._resume.get(phone)
        if found is not None and found[1] == session_id:
            del self._resume[phone]

    async def close(self) -> None:
        self._sessions.clear()
        self._resume.clear()


# The stored value is "<version>:<json>"; the version is compared and bumped atomically in Redis,
# and the resume pointer (KEYS[2]) set or cleared in the same round trip.
_SAVE = Script("""
local current = redis.call('GET', KEYS[1])
local version = 0
if current then version = tonumber(string.match(current, '^(%d+):')) end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[4] == 'point' then
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
elseif ARGV[4] == 'clear' and redis.call('GET', KEYS[2]) == ARGV[5] then
  redis.call('DEL', KEYS[2])
end
return 1
""")
_CLEAR_IF = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


class RedisSessionStore:
    """Sessions in Redis, under ``key_prefix``: ``<prefix>s:<sessionId>`` and ``<prefix>r:<phone>``,
    each with its TTL, so Redis itself forgets abandoned sessions. Commands go through
    `dialogs.redis_pipe` (pipelined: a hop costs two commands, a load and a compare-and-set save,
    and many hops share each write); every one of them is safe to send twice."""

    def __init__(self, url: str, *, session_ttl_s: float, resume_window_s: float, key_prefix: str = "sauti:ussd:",
                 connections: int = 1, timeout_s: float = 2.0) -> None:
        self.session_ttl_ms = int(session_ttl_s * 1000)
        self.resume_window_ms = int(resume_window_s * 1000)
        self.prefix = key_prefix
        self.redis = RedisPipe(url, connections=connections, timeout_s=timeout_s, connect_timeout_s=timeout_s)

    def _session_key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    def _resume_key(self, phone: str) -> str:
        return f"{self.prefix}r:{phone}"

    async def ping(self) -> None:
        await self.redis.execute("PING")

    async def load(self, session_id: str) -> SessionState | None:
        return _state(await self.redis.execute("GET", self._session_key(session_id)))

    async def load_for_hop(self, session_id: str, phone: str) -> tuple[SessionState | None, str | None]:
        # One MGET: the pointer costs Redis nothing more, and a dial saves a round trip.
        raw, pointer = await self.redis.execute("MGET", self._session_key(session_id), self._resume_key(phone))
        return _state(raw), _text(pointer)

    async def save(self, state: SessionState, *, expected_version: int, resume: str | None = None) -> bool:
        state.version = expected_version + 1
        try:
            saved = await self.redis.run_script(
                _SAVE, [self._session_key(state.session_id), self._resume_key(state.phone)],
                [expected_version, f"{state.version}:{state.dumps()}", self.session_ttl_ms, resume or "",
                 state.session_id, self.resume_window_ms])
        except BaseException:
            state.version = expected_version
            raise
        if not saved:
            state.version = expected_version
        return bool(saved)

    async def delete(self, session_id: str) -> None:
        await self.redis.execute("DEL", self._session_key(session_id))

    async def set_resume(self, phone: str, session_id: str) -> None:
        await self.redis.execute("SET", self._resume_key(phone), session_id, "PX", self.resume_window_ms)

    async def resume_candidate(self, phone: str) -> str | None:
        return _text(await self.redis.execute("GET", self._resume_key(phone)))

    async def clear_resume(self, phone: str, session_id: str) -> None:
        await self.redis.run_script(_CLEAR_IF, [self._resume_key(phone)], [session_id])

    async def close(self) -> None:
        await self.redis.close()


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def _state(raw: bytes | str | None) -> SessionState | None:
    """A session as `RedisSessionStore` keeps it (``<version>:<json>``), or None."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    return SessionState.loads(text.split(":", 1)[1])
