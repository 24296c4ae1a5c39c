"""The gateway as a real HTTP server: health and readiness, JSON errors, the redacted access log,
and `sauti serve` as a process that starts, answers and shuts down cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.errors import error_middleware
from gateway.settings import load_settings
from tests.e2e.gateway_payments_world import free_port, until_serving

ROOT = Path(__file__).resolve().parents[2]


def settings_for(url: str, **env: str):
    return load_settings(ROOT / "config.yml", env={"DATABASE_URL": url, **env})


@pytest.fixture
async def client(database_url):
    app = create_app(settings_for(database_url))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_health_and_ready(client):
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["database"] == "ok"


async def test_not_ready_when_the_database_is_down():
    with socket.socket() as s:  # a port nobody listens on: the database is "down"
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings_for(f"postgresql://nobody@127.0.0.1:{port}/sauti",
                                  SAUTI__DATABASE__MIGRATE_ON_START="false",
                                  SAUTI__DATABASE__READY_TIMEOUT_S="1"))
    async with TestClient(TestServer(app)) as client:
        ready = await client.get("/readyz")
        assert ready.status == 503
        body = await ready.json()
        assert body["ready"] is False and body["checks"]["database"].startswith("unavailable")
        assert (await client.get("/healthz")).status == 200


async def test_unknown_paths_get_json_errors(client):
    response = await client.get("/nope")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    response = await client.post("/healthz")
    assert response.status == 405


async def test_errors_under_the_apis_have_the_apis_shape(client):
    """An API client reads one error shape, whoever refused: a handler, the router or a crash."""
    response = await client.get("/v1/nope")
    assert response.status == 404
    assert await response.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    response = await client.delete("/v1/payments")
    assert response.status == 405 and "POST" in response.headers["Allow"]
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    response = await client.post("/v1/payments", json={})
    assert response.status == 401 and (await response.json())["error"]["code"] == "unauthorized"


async def test_unexpected_errors_are_json_without_traceback(caplog):
    async def boom(request):
        raise RuntimeError("secret internals")

    # A tiny app with the gateway's own error middleware and a handler that fails.
    bare = web.Application(middlewares=[error_middleware])
    bare.router.add_get("/boom", boom)
    bare.router.add_get("/v1/boom", boom)
    async with TestClient(TestServer(bare)) as c:
        with caplog.at_level(logging.ERROR):
            response = await c.get("/boom")
            body = await response.json()
            api_response = await c.get("/v1/boom")
            api_body = await api_response.json()
    assert response.status == 500 and body["error"] == "internal_error" and body["reference"]
    assert "secret internals" not in str(body) and "Traceback" not in str(body)
    assert body["reference"] in caplog.text
    # Under the APIs, the APIs' shape.
    assert api_response.status == 500 and api_body["error"]["code"] == "internal_error"
    assert api_body["error"]["reference"] in caplog.text and "secret internals" not in str(api_body)


async def test_access_log_line_per_request_with_secrets_redacted(client, caplog):
    with caplog.at_level(logging.INFO, logger="sauti.access"):
        await client.get("/healthz?token=abc123&page=1")
        await client.get("/callbacks/daraja/s3cr3t/stk")
    lines = [r.getMessage() for r in caplog.records if r.name == "sauti.access"]
    assert any(line.startswith("GET /healthz?token=***&page=1 200 ") and line.endswith("ms") for line in lines)
    assert any(line.startswith("GET /callbacks/daraja/***/stk 404") for line in lines)
    assert "abc123" not in caplog.text and "s3cr3t" not in caplog.text


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_sauti_serve_starts_and_stops_cleanly(database_url, stop_signal):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await until_serving(port, proc, within_s=15)
        proc.send_signal(stop_signal)
        code = await asyncio.wait_for(proc.wait(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    output = (await proc.stdout.read()).decode()
    assert code == 0, output
    assert f"listening on http://127.0.0.1:{port}" in output
    assert "GET /readyz 200" in output
    assert "Traceback" not in output
