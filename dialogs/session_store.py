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

from dialogs.session import SessionState


class SessionStore(Protocol):
    async def load(self, session_id: str) -> SessionState | None: ...

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
_SAVE = """
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
"""
_CLEAR_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisSessionStore:
    """Sessions in Redis (redis-py asyncio), under ``key_prefix``: ``<prefix>s:<sessionId>`` and
    ``<prefix>r:<phone>``, each with its TTL, so Redis itself forgets abandoned sessions."""

    def __init__(self, url: str, *, session_ttl_s: float, resume_window_s: float, key_prefix: str = "sauti:ussd:",
                 max_connections: int = 64) -> None:
        import redis.asyncio as redis  # imported here: the in-process store needs no Redis client

        self.session_ttl_ms = int(session_ttl_s * 1000)
        self.resume_window_ms = int(resume_window_s * 1000)
        self.prefix = key_prefix
        # A blocking pool: under a burst of hops a command waits (up to 5 s) for a free connection
        # instead of failing with "Too many connections" (which would end the caller's session).
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5,
                                                     socket_timeout=2, socket_connect_timeout=2,
                                                     health_check_interval=30)
        self.redis = redis.Redis(connection_pool=pool)
        self._save = self.redis.register_script(_SAVE)
        self._clear_if = self.redis.register_script(_CLEAR_IF)

    def _session_key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    def _resume_key(self, phone: str) -> str:
        return f"{self.prefix}r:{phone}"

    async def ping(self) -> None:
        await self.redis.ping()

    async def load(self, session_id: str) -> SessionState | None:
        raw = await self.redis.get(self._session_key(session_id))
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        return SessionState.loads(text.split(":", 1)[1])

    async def save(self, state: SessionState, *, expected_version: int, resume: str | None = None) -> bool:
        state.version = expected_version + 1
        saved = await self._save(keys=[self._session_key(state.session_id), self._resume_key(state.phone)],
                                 args=[expected_version, f"{state.version}:{state.dumps()}", self.session_ttl_ms,
                                       resume or "", state.session_id, self.resume_window_ms])
        if not saved:
            state.version = expected_version
        return bool(saved)

    async def delete(self, session_id: str) -> None:
        await self.redis.delete(self._session_key(session_id))

    async def set_resume(self, phone: str, session_id: str) -> None:
        await self.redis.set(self._resume_key(phone), session_id, px=self.resume_window_ms)

    async def resume_candidate(self, phone: str) -> str | None:
        raw = await self.redis.get(self._resume_key(phone))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def clear_resume(self, phone: str, session_id: str) -> None:
        await self._clear_if(keys=[self._resume_key(phone)], args=[session_id])

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)
