"""How the sandbox calls us back: POSTs to callback URLs, logged, and the background tasks doing it.

One `Dispatcher` per sandbox app, opened and closed with the app (``cleanup_ctx``): it owns the HTTP
session for callbacks and every pending delayed delivery, which it cancels on shutdown so stopping
a sandbox never leaves a task behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    kind: str
    url: str
    reference: str
    attempt: int
    status: int | None
    error: str | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "reference": self.reference,
            "attempt": self.attempt,
            "status": self.status,
            "error": self.error,
            "at": self.at.isoformat(),
        }


class Dispatcher:
    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.attempts: list[DeliveryAttempt] = []

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        """Run `job` in the background; it is cancelled if the sandbox stops first."""
        task = asyncio.get_running_loop().create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox background job failed", exc_info=task.exception())

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        kind: str,
        reference: str,
        attempt: int = 1,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int | None, bytes]:
        """POST `body` as JSON; returns the status (None when no answer came) and the answer body.
        ``timeout_s`` replaces the dispatcher's timeout for this POST (a provider that waits longer
        for one kind of callback, as Daraja does for C2B validation)."""
        if self._session is None:
            raise RuntimeError("the dispatcher is not open")
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        status: int | None = None
        error: str | None = None
        answer = b""
        try:
            timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
            async with self._session.post(url, data=body, headers=all_headers, timeout=timeout) as resp:
                status = resp.status
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
        self.attempts.append(DeliveryAttempt(kind, url, reference, attempt, status, error, datetime.now(UTC)))
        return status, answer
