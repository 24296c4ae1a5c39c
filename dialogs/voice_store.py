"""Where spoken commands wait for their confirmation: a `PendingCommand` per command id, kept until it
expires (a few minutes), in-process by default or in Redis when `redis.url` is set (so any gateway
process can take the confirmation of a command another one heard).

A lost or expired record never loses money: nothing moves before the PIN confirms, and the payment's
idempotency key is the command id, so a confirmation sent twice pays once.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from dialogs.redis_pipe import RedisPipe

#: What a command is waiting for, or how it ended.
ASKING, CONFIRMING, ANSWERED, EXECUTED, CANCELLED, FAILED = (
    "asking", "confirming", "answered", "executed", "cancelled", "failed")
OPEN_STATUSES = frozenset({ASKING, CONFIRMING})


@dataclass
class PendingCommand:
    """One spoken (or typed) command of one user, from the first words to its end.

    `values` holds the slots heard so far in the names the customer actions use (``typed_amount``,
    ``to_phone``, ``paybill``, ``account``, ``till``, ``pochi_phone``, ``currency``) and what a
    read-back shows; `missing` the slots still to ask for, in order. `transcripts` are the words
    heard (several turns when a question was asked) and `confidence` the lowest recogniser
    confidence among them (None for typed text)."""

    id: str
    user_id: int
    phone: str
    language: str
    channel: str
    created_at: float
    expires_at: float
    status: str = ASKING
    intent: str | None = None
    kind: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    confidence: float | None = None
    text: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> PendingCommand:
        return cls(**json.loads(raw))


class VoiceCommandStore(Protocol):
    async def load(self, command_id: str) -> PendingCommand | None: ...

    async def save(self, command: PendingCommand) -> None:
        """Keep `command` until a little after it expires (an expired command still answers
        "expired" rather than "unknown")."""
        ...

    async def load_call(self, session_id: str) -> dict[str, Any] | None:
        """A phone call's own state (its current command, the last recording taken)."""
        ...

    async def save_call(self, session_id: str, state: dict[str, Any], *, ttl_s: float) -> None: ...

    async def drop_call(self, session_id: str) -> None: ...

    async def close(self) -> None: ...


#: How long a record outlives its expiry, so a late confirmation hears "expired", not "unknown".
GRACE_S = 600.0


class MemoryVoiceCommandStore:
    """Commands in this process's memory: the default, for one gateway process."""

    def __init__(self) -> None:
        self._commands: dict[str, PendingCommand] = {}
        self._calls: dict[str, tuple[float, str]] = {}

    async def load(self, command_id: str) -> PendingCommand | None:
        found = self._commands.get(command_id)
        # A copy: the caller changes it and saves it, as with Redis.
        return PendingCommand.loads(found.dumps()) if found is not None else None

    async def save(self, command: PendingCommand) -> None:
        now = time.time()
        for stale in [k for k, c in self._commands.items() if c.expires_at + GRACE_S < now]:
            del self._commands[stale]
        self._commands[command.id] = PendingCommand.loads(command.dumps())

    async def load_call(self, session_id: str) -> dict[str, Any] | None:
        found = self._calls.get(session_id)
        return json.loads(found[1]) if found is not None and found[0] > time.time() else None

    async def save_call(self, session_id: str, state: dict[str, Any], *, ttl_s: float) -> None:
        now = time.time()
        for stale in [k for k, (until, _) in self._calls.items() if until < now]:
            del self._calls[stale]
        self._calls[session_id] = (now + ttl_s, json.dumps(state))

    async def drop_call(self, session_id: str) -> None:
        self._calls.pop(session_id, None)

    async def close(self) -> None:
        self._commands.clear()
        self._calls.clear()


class RedisVoiceCommandStore:
    """Commands in Redis under ``<prefix>v:<id>``, each with a TTL, so Redis forgets them itself."""

    def __init__(self, redis: RedisPipe, *, key_prefix: str) -> None:
        self.redis = redis
        self.prefix = key_prefix

    def _key(self, command_id: str) -> str:
        return f"{self.prefix}v:{command_id}"

    async def load(self, command_id: str) -> PendingCommand | None:
        raw = await self.redis.execute("GET", self._key(command_id))
        return PendingCommand.loads(raw) if raw else None

    async def save(self, command: PendingCommand) -> None:
        ttl_ms = max(1000, int((command.expires_at + GRACE_S - time.time()) * 1000))
        await self.redis.execute("SET", self._key(command.id), command.dumps(), "PX", ttl_ms)

    async def load_call(self, session_id: str) -> dict[str, Any] | None:
        raw = await self.redis.execute("GET", f"{self.prefix}c:{session_id}")
        return json.loads(raw) if raw else None

    async def save_call(self, session_id: str, state: dict[str, Any], *, ttl_s: float) -> None:
        await self.redis.execute("SET", f"{self.prefix}c:{session_id}", json.dumps(state), "PX", int(ttl_s * 1000))

    async def drop_call(self, session_id: str) -> None:
        await self.redis.execute("DEL", f"{self.prefix}c:{session_id}")

    async def close(self) -> None:
        await self.redis.close()
