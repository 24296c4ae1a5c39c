"""Liveness and readiness: `/healthz` answers while the process runs; `/readyz` also proves the
database answers, and says not-ready (503) when it does not."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from gateway.keys import DB_ENGINE, SETTINGS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    engine = request.app[DB_ENGINE]
    timeout = request.app[SETTINGS].database.ready_timeout_s
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means: not ready
        return web.json_response(
            {"ready": False, "checks": {"database": f"unavailable: {type(exc).__name__}"}}, status=503)
    return web.json_response({"ready": True, "checks": {"database": "ok"}})
