"""`sauti serve --workers N` (`gateway.serve_processes`): N gateway processes on one port, run as the
installed command on a real PostgreSQL and Redis, the provider sandboxes started once by the
supervisor. A caller's hops land on either process (a new connection each) and the journey goes on;
a deposit's M-Pesa callback reaches whichever process it reaches; a signal stops them all; a process
that dies takes the others down with it, so a service manager restarts the whole."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest

from payments.sandbox.outcomes import SUFFIXES
from tests.e2e.gateway_payments_world import free_port, until_serving
from tests.ussd.ussd_world import REDIS_URL, redis_available

ROOT = Path(__file__).resolve().parents[2]
PIN = "4826"
needs_redis = pytest.mark.skipif(not redis_available(),
                                 reason=f"sauti serve --workers not tested: no Redis at {REDIS_URL}; set REDIS_URL")


async def start(database_url: str, port: int, *, by_setting: bool = False, **extra: str) -> asyncio.subprocess.Process:
    """``sauti serve`` with two processes, asked for by ``--workers 2`` or by ``server.workers``
    (which the processes inherit: each must still run one gateway, not a supervisor of its own)."""
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1",
           "SAUTI__USSD__REDIS_KEY_PREFIX": f"sauti-test-{uuid.uuid4().hex[:8]}-",
           "SAUTI__PROVIDERS__SANDBOX__CALLBACK_DELAY_S": "0.05", **extra}
    asked = []
    if by_setting:
        env["SAUTI__SERVER__WORKERS"] = "2"
    else:
        asked = ["--workers", "2"]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), *asked, cwd=ROOT,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def until_all_listening(proc: asyncio.subprocess.Process, seen: list[str]) -> None:
    """Read the supervisor's output (kept in ``seen``) until it says every process listens."""
    async def lines() -> None:
        async for line in proc.stdout:
            seen.append(line.decode())
            if " processes on http://" in seen[-1]:
                return
        pytest.fail(f"the supervisor ended before its processes listened: {''.join(seen)[-3000:]}")
    await asyncio.wait_for(lines(), timeout=90)


def gateway_processes(proc: asyncio.subprocess.Process) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children() if "--reuse-port" in p.cmdline()]


def new_number() -> str:
    """A Kenyan number not registered yet, none the sandboxes answer specially (`SUFFIXES`)."""
    while (number := f"+2547{random.randrange(10_000_000, 99_999_999)}")[-3:] in SUFFIXES:
        pass
    return number


class Phone:
    """A caller whose every hop opens a new connection, as Africa's Talking's may: any process can get it."""

    def __init__(self, port: int, msisdn: str) -> None:
        self.url, self.msisdn, self.session, self.typed = f"http://127.0.0.1:{port}/ussd", msisdn, "", []

    async def dial(self) -> str:
        self.session, self.typed = f"ATUid_{uuid.uuid4().hex}", []
        return await self._hop()

    async def type(self, text: str) -> str:
        self.typed.append(text)
        return await self._hop()

    async def _hop(self) -> str:
        form = {"sessionId": self.session, "serviceCode": "*384*1#", "phoneNumber": self.msisdn,
                "networkCode": "63902", "text": "*".join(self.typed)}
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http, http.post(self.url, data=form) as resp:
            assert resp.status == 200
            return await resp.text()


async def stop(proc: asyncio.subprocess.Process, seen: list[str],
               how: signal.Signals | None = signal.SIGTERM) -> tuple[int, str]:
    """Signal the supervisor (``how``; None: wait for it to end on its own), then its status and output."""
    if proc.returncode is None and how is not None:
        proc.send_signal(how)
    try:
        rest, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, "".join(seen) + rest.decode()


async def test_more_than_one_process_is_refused_without_redis(database_url):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "SAUTI__REDIS__URL")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", str(free_port()), "--workers", "2", cwd=ROOT,
        env={**env, "DATABASE_URL": database_url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), timeout=60))[0].decode()
    assert proc.returncode == 1 and "server.workers 2 needs redis.url" in out and "Traceback" not in out, out


@needs_redis
@pytest.mark.parametrize(("how", "by_setting"), [(signal.SIGTERM, False), (signal.SIGINT, True)])
async def test_two_processes_share_one_port_and_every_journey(database_url, how, by_setting):
    port = free_port()
    proc = await start(database_url, port, by_setting=by_setting)
    seen: list[str] = []
    try:
        await until_all_listening(proc, seen)
        await until_serving(port, proc)
        children = gateway_processes(proc)
        assert len(children) == 2, children
        phone = Phone(port, new_number())
        # Registration, hop by hop over new connections: the session is Redis's, not a process's.
        assert "Choose your language" in await phone.dial()
        for typed in ("1", "Wanjiru Kamau", PIN):
            await phone.type(typed)
        assert "Welcome to Sauti, Wanjiru Kamau" in await phone.type(PIN)
        # A deposit: the supervisor's M-Pesa sandbox calls back whichever process it reaches.
        await phone.dial()
        for typed in ("5", "1", "1000"):
            await phone.type(typed)
        assert "M-Pesa PIN" in await phone.type(PIN)
        for _ in range(100):
            await phone.dial()
            for typed in ("6", "1"):
                await phone.type(typed)
            if "Ksh 1,000" in (screen := await phone.type(PIN)):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"the deposit never reached the wallet: {screen}")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(40):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
    finally:
        code, out = await stop(proc, seen, how)  # SIGINT: as Ctrl-C sends it to the supervisor
    assert code == 0 and "Traceback" not in out, out[-3000:]
    assert f"Sauti gateway: 2 processes on http://127.0.0.1:{port}" in out
    assert all(f"gateway process {c.pid} listening on http://127.0.0.1:{port}" in out for c in children)
    # Both processes served (each log line names its process), and both are gone.
    served = set(re.findall(r"\[(\d+)\] sauti\.access: (?:GET|POST) ", out))
    assert served == {str(c.pid) for c in children}, served
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


@needs_redis
async def test_a_process_that_dies_stops_the_others_and_the_supervisor_fails(database_url):
    port = free_port()
    proc = await start(database_url, port, SAUTI__PROVIDERS__MODE="sandbox")
    seen: list[str] = []
    try:
        await until_all_listening(proc, seen)
        first, second = gateway_processes(proc)
        first.kill()
    finally:
        code, out = await stop(proc, seen, how=None)  # it ends on its own
    assert code == 1, out[-3000:]
    assert f"gateway process {first.pid} exited" in out and "stopping the others" in out
    assert not (second.is_running() and second.status() != psutil.STATUS_ZOMBIE)


@needs_redis
async def test_a_signal_while_the_processes_start_stops_them_once_they_listen(database_url):
    proc = await start(database_url, free_port())
    seen: list[str] = []
    # Ctrl-C at once: the processes are still starting (a signal in aiohttp's start-up does not
    # unwind cleanly), so each is stopped once it listens.
    for _ in range(100):
        if len(gateway_processes(proc)) == 2:
            break
        await asyncio.sleep(0.05)
    code, out = await stop(proc, seen, signal.SIGINT)
    assert code == 0 and "Traceback" not in out and "ERROR" not in out, out[-3000:]
    assert out.count(" listening on http://") == 2, out[-3000:]
