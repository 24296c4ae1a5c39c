"""`bench.statements` runs every case against a real server and prints its table (a smoke test: the
figures themselves are the benchmark's to report, never asserted here)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_the_statement_benchmark_prints_every_case_beside_its_anchor(database_url):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.statements", "--rounds", "1", "--statements", "64", "--concurrency", "1,4",
        cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    table = out.decode()
    assert process.returncode == 0, err.decode()[-2000:]
    rows = [line.split() for line in table.splitlines() if line.split()[:1] in (["asyncpg"], ["held"], ["lone"],
                                                                                 ["transaction"])]
    assert len(rows) == 8, table  # four cases at two concurrencies
    assert all(row[-2].endswith("x") and float(row[-3]) > 0 for row in rows), table  # CPU µs, ratio, wall
