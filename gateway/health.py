"""Liveness and readiness: `/healthz` answers while the process runs; `/readyz` also proves that the
database answers and, when ``redis.url`` is set, that Redis does (USSD sessions, spoken commands
awaiting their PIN and sign-in counts live there), each within ``database.ready_timeout_s``; it
says not-ready (503), naming what does not answer, when one of them does not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiohttp import web
from sqlalchemy import text

from dialogs.session_store import RedisSessionStore
from gateway.keys import DB_ENGINE, SETTINGS, USSD_SESSIONS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    timeout = app[SETTINGS].database.ready_timeout_s
    checks: dict[str, Awaitable[None]] = {"database": _database(app)}
    sessions = app.get(USSD_SESSIONS)
    if isinstance(sessions, RedisSessionStore):  # redis.url is set: the app does not start otherwise
        # Through the sessions' own connections: the ones USSD hops use, and a PING costs them nothing.
        checks["redis"] = sessions.ping()
    outcomes = await asyncio.gather(*(_within(check, timeout) for check in checks.values()))
    answers = dict(zip(checks, outcomes, strict=True))
    ready = all(answer == "ok" for answer in answers.values())
    return web.json_response({"ready": ready, "checks": answers}, status=200 if ready else 503)


async def _database(app: web.Application) -> None:
    async with app[DB_ENGINE].connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _within(check: Awaitable[None], limit_s: float) -> str:
    try:
        async with asyncio.timeout(limit_s):
            await check
    except Exception as exc:  # any failure to reach it means: not ready
        return f"unavailable: {type(exc).__name__}"
    return "ok"
