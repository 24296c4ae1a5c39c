"""Processes the benchmarks start on this machine: free ports, and the provider sandboxes in a
process of their own (`sauti sandbox`), as the real providers would be: off the gateway's event
loop, so what a benchmark counts as the gateway's work is the gateway's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from payments.sandbox.runner import free_port_base

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A port free now, outside those the kernel gives outgoing connections (`free_port_base`)."""
    return free_port_base(length=1)


async def until_listening(port: int, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return
    raise SystemExit(f"nothing started listening on :{port}")


async def start_sandboxes(callback_delay_s: float) -> tuple[asyncio.subprocess.Process, int]:
    """`sauti sandbox` on three free consecutive ports, once it listens; returns it and its port
    base (``providers.sandbox.port_base`` for a gateway with ``run_in_serve: false``)."""
    base = free_port_base()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sandbox", "--port-base", str(base),
        "--callback-delay", str(callback_delay_s), "--cert-out", str(ROOT / "var" / "bench-sandbox.pem"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await until_listening(base + 2)
    return process, base


async def stop_sandboxes(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
