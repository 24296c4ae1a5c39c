"""`sauti serve --workers N`: N gateway processes sharing one port, for machines with more cores
than one event loop can use.

One event loop keeps one core busy at most: under a saturating USSD load on the 2-core bench
machine the gateway's loop was 91 % busy while a fifth of the machine stood idle. With N above 1,
`sauti serve` becomes a small supervisor. It starts (or joins) the embedded PostgreSQL and, in
sandbox mode, the provider sandboxes, once; then it runs N copies of the gateway on the same host
and port (``SO_REUSEPORT``: the kernel spreads incoming connections among them). Each copy is the
whole app, as a gateway on another machine would be: its own pool, in-process outbox worker (jobs
are claimed with ``SKIP LOCKED``) and periodic tasks (each safe beside another gateway's).

What a caller's next request needs from this one must then live outside the process: USSD
sessions, spoken commands awaiting their PIN and sign-in counts are in Redis, so ``redis.url`` is
required. The supervisor passes SIGINT and SIGTERM on, once (the processes run in a session of
their own; under systemd, ``KillMode=mixed`` keeps it so); should one copy exit, it stops the others
and exits with an error (a service manager then restarts the whole), rather than serve on short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field

from sqlalchemy import text

from db.engine import create_engine
from gateway.payments_resources import ProvidersUnavailable, start_local_sandboxes
from gateway.resources import database_url
from gateway.settings import ConfigError, Settings
from payments.sandbox.runner import RunningSandboxes, free_port_base

log = logging.getLogger(__name__)

#: How long a process may take to start before it is signalled anyway (loading the speech model
#: on a busy machine takes seconds).
_STARTING_S = 60.0
#: Connections left to other clients (psql, `sauti worker`, migrations) when the processes' pools
#: are compared with the server's ``max_connections``.
_SPARE_CONNECTIONS = 10


def check_workers(settings: Settings, workers: int) -> None:
    """Raise `ConfigError` when ``workers`` processes cannot serve with these settings."""
    if workers <= 1:
        return
    if not settings.redis.url:
        raise ConfigError(f"server.workers {workers} needs redis.url (REDIS_URL): a caller's next USSD hop, "
                          "a spoken command's confirmation and sign-in counts may reach any of the processes, "
                          "so sessions must live in Redis, not in one process")
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(f"server.workers {workers} needs SO_REUSEPORT, which this platform lacks: "
                          "run one process per port behind a load balancer instead")


_LISTENING = " listening on "


def listening_line(who: str, host: str, port: int) -> str:
    """What a gateway process prints once it listens; the supervisor waits for it (`_relay`)."""
    return f"{who}{_LISTENING}http://{host}:{port} (Ctrl-C to stop)"


def child_command(host: str, port: int) -> list[str]:
    """How the supervisor starts one gateway process (the same settings: file and environment)."""
    return [sys.executable, "-m", "gateway.cli", "serve", "--host", host, "--port", str(port), "--workers", "1",
            "--reuse-port"]


@dataclass
class _Child:
    """One gateway process. Its standard output is relayed line by line, and ``listening`` is set
    when it says it listens: a signal before then would land in its start-up, which aiohttp does
    not unwind cleanly, so none is sent before (`_stop`)."""

    process: asyncio.subprocess.Process
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    relay: asyncio.Task[None] | None = None


async def supervise(settings: Settings, host: str, port: int, workers: int, config_path: str | None) -> int:
    """Run ``workers`` gateway processes on ``host``:``port`` until a signal or until one exits;
    returns the exit status (0 after a signal, 1 when a process failed)."""
    url = await database_url(settings)
    await _check_connection_budget(url, settings, workers)
    env = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}  # their lines arrive as written
    if config_path:
        env["SAUTI_CONFIG"] = str(config_path)
    sandboxes = await _start_sandboxes(settings, env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    children: list[_Child] = []
    try:
        for _ in range(workers):
            children.append(await _spawn(child_command(host, port), env))
        log.info("gateway processes %s on %s:%d", ", ".join(str(c.process.pid) for c in children), host, port)
        exits = {asyncio.ensure_future(c.process.wait()): c for c in children}
        stopping = asyncio.ensure_future(stop.wait())
        listening = asyncio.ensure_future(_all_listening(children))
        done, _ = await asyncio.wait([*exits, stopping, listening], return_when=asyncio.FIRST_COMPLETED)
        if listening in done:
            print(f"Sauti gateway: {workers} processes on http://{host}:{port} (Ctrl-C to stop)", flush=True)
            done, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        stopping.cancel()
        failed = [exits[d] for d in done if d in exits]
        for child in failed:
            log.error("gateway process %d exited with %s: stopping the others", child.process.pid,
                      child.process.returncode)
        return 1 if failed else 0
    finally:
        within_s = settings.server.shutdown_timeout_s + 5
        await asyncio.gather(*(_stop(child, within_s) for child in children))
        if sandboxes is not None:
            await sandboxes.stop()


async def _all_listening(children: list[_Child]) -> None:
    for child in children:
        await child.listening.wait()


async def _spawn(command: list[str], env: dict[str, str]) -> _Child:
    # A session of its own: Ctrl-C in a terminal reaches the supervisor only, which passes it on
    # once (a second signal would cut a gateway's graceful shutdown short).
    process = await asyncio.create_subprocess_exec(*command, env=env, start_new_session=True,
                                                   stdout=asyncio.subprocess.PIPE)
    child = _Child(process)
    child.relay = asyncio.create_task(_relay(child))
    return child


async def _relay(child: _Child) -> None:
    assert child.process.stdout is not None
    async for line in child.process.stdout:
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()
        if _LISTENING.encode() in line:
            child.listening.set()


async def _stop(child: _Child, within_s: float) -> None:
    """SIGTERM once it listens (or after ``_STARTING_S``: stuck), then SIGKILL if it outlives
    ``within_s``; its last lines relayed."""
    process = child.process
    if process.returncode is None:
        started = asyncio.ensure_future(child.listening.wait())
        ended = asyncio.ensure_future(process.wait())
        await asyncio.wait([started, ended], timeout=_STARTING_S, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        ended.cancel()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=within_s)
    except TimeoutError:
        log.error("gateway process %d did not stop within %.0f s: killed", process.pid, within_s)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    if child.relay is not None:
        await child.relay


async def _start_sandboxes(settings: Settings, env: dict[str, str]) -> RunningSandboxes | None:
    """In sandbox mode with ``run_in_serve``, the sandboxes once, here, on consecutive ports the
    processes are told (each process reaches them as `sauti worker` would)."""
    box = settings.providers.sandbox
    if settings.providers.effective_mode != "sandbox" or not box.run_in_serve:
        return None
    try:
        base = box.port_base or free_port_base(box.host)
    except OSError as exc:
        raise ProvidersUnavailable(f"cannot start the provider sandboxes on {box.host}: {exc}") from None
    running = await start_local_sandboxes(box, port_base=base)
    env["SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE"] = "false"
    env["SAUTI__PROVIDERS__SANDBOX__PORT_BASE"] = str(base)
    log.info("provider sandboxes for every gateway process: %s", running.urls)
    return running


async def _check_connection_budget(url: str, settings: Settings, workers: int) -> None:
    """Warn when the processes' pools together could ask PostgreSQL for more connections than it
    takes: the last ones would then fail under load, not at start."""
    wanted = workers * (settings.database.pool_size + settings.database.max_overflow)
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            allowed = int((await conn.execute(text("SELECT current_setting('max_connections')"))).scalar_one())
    finally:
        await engine.dispose()
    if wanted + _SPARE_CONNECTIONS > allowed:
        log.warning("%d processes may open %d connections (database.pool_size %d + max_overflow %d each) and "
                    "PostgreSQL takes %d: lower database.pool_size or raise max_connections", workers, wanted,
                    settings.database.pool_size, settings.database.max_overflow, allowed)
