"""`/readyz` with Redis in use (``redis.url``): ready while Redis answers, not ready (503, naming
Redis) once it stops, while `/healthz` still answers. It said ready with Redis gone, and every USSD
hop then failed.

Redis going away mid-run needs a Redis this test can stop: a stand-in that speaks just enough RESP
(each command answered with +PONG) on a port of its own, so the test needs no live Redis; with one at
REDIS_URL, the real one is checked too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.settings import load_settings
from tests.ussd.ussd_world import REDIS_URL, redis_available, redis_skip_reason

ROOT = Path(__file__).resolve().parents[2]


class StandInRedis:
    """A TCP server answering each RESP command (an array of bulk strings) with ``+PONG``."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.clients: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        try:
            while header := await reader.readline():
                for _ in range(int(header[1:])):  # "*<n>": n arguments, each "$<len>" then the bytes
                    length = int((await reader.readline())[1:])
                    await reader.readexactly(length + 2)
                writer.write(b"+PONG\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def stop(self) -> None:
        """Redis is gone: nothing listens on its port, and the connections made to it are closed."""
        assert self.server is not None
        self.server.close()
        for writer in self.clients:
            writer.close()
        await self.server.wait_closed()


async def _ready(client: TestClient) -> tuple[int, dict]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def test_not_ready_once_redis_stops_answering(database_url):
    redis = StandInRedis()
    await redis.start()
    settings = load_settings(ROOT / "config.yml", env={
        "DATABASE_URL": database_url, "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "SAUTI__DATABASE__READY_TIMEOUT_S": "1"})
    async with TestClient(TestServer(create_app(settings))) as client:
        assert await _ready(client) == (200, {"ready": True, "checks": {"database": "ok", "redis": "ok"}})
        await redis.stop()
        status, body = await _ready(client)
        assert status == 503, body
        assert body["ready"] is False and body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("unavailable")
        assert (await client.get("/healthz")).status == 200


@pytest.mark.skipif(not redis_available(), reason=redis_skip_reason())
async def test_ready_with_a_real_redis(database_url):
    settings = load_settings(ROOT / "config.yml", env={"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL})
    async with TestClient(TestServer(create_app(settings))) as client:
        assert await _ready(client) == (200, {"ready": True, "checks": {"database": "ok", "redis": "ok"}})


async def test_without_redis_only_the_database_is_checked(database_url):
    settings = load_settings(ROOT / "config.yml", env={"DATABASE_URL": database_url})
    async with TestClient(TestServer(create_app(settings))) as client:
        assert await _ready(client) == (200, {"ready": True, "checks": {"database": "ok"}})
