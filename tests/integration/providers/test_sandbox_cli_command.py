"""``sauti sandbox`` as a process: it prints working URLs, serves them, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp

LAUNCH = "from gateway.commands.sandbox import sandbox; sandbox()"


async def test_the_command_serves_all_three_and_stops_on_sigint(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCH,
        "--port-base",
        "0",
        "--cert-out",
        str(tmp_path / "cert.pem"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        printed = ""
        while "Ctrl-C to stop." not in printed:
            line = await asyncio.wait_for(process.stdout.readline(), 20)
            assert line, f"the command ended early:\n{printed}"
            printed += line.decode()
        urls = dict(re.findall(r"^(Daraja|Wave|Africa's Talking)\s+(http://\S+)$", printed, re.MULTILINE))
        assert set(urls) == {"Daraja", "Wave", "Africa's Talking"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{urls['Daraja']}/_sandbox/certificate") as resp:
                assert (await resp.read()) == (tmp_path / "cert.pem").read_bytes()
            async with http.get(f"{urls['Wave']}/v1/balance") as resp:
                assert resp.status == 401  # the real API's answer without a key
            at_url = urls["Africa's Talking"]
            async with http.get(f"{at_url}/_sandbox/messages") as resp:
                assert (await resp.json()) == {"messages": []}
        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(process.stdout.read(), 20)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert "sandboxes stopped" in rest.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
