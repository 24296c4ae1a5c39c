"""The `sauti` command against a real database: `db upgrade`, `db current`, and `ledger check`
exiting non-zero, with a readable report, when an invariant is broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from db.engine import create_engine
from db.migrate import head_revision

ROOT = Path(__file__).resolve().parents[2]


def sauti(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_db_upgrade_and_current(new_database):
    url = await new_database()
    upgraded = sauti("db", "upgrade", url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    head = head_revision()
    assert f"Database at revision {head}" in upgraded.stdout
    current = sauti("db", "current", url=url)
    assert f"database: {head}; code: {head}" in current.stdout


async def test_ledger_check_reports_a_broken_invariant_and_exits_1(new_database):
    url = await new_database()
    clean = sauti("ledger", "check", url=url)
    assert clean.returncode == 0 and "All invariants hold." in clean.stdout

    # Corrupt the ledger behind its back: a balance that no posting explains.
    engine = create_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO accounts (code, kind, currency, may_go_negative, balance) "
            "VALUES ('suspense:sauti:KES', 'suspense', 'KES', true, 500)"))
    await engine.dispose()
    broken = sauti("ledger", "check", url=url)
    assert broken.returncode == 1
    assert "FAIL  every account's balance is the sum of its postings  (1 violations)" in broken.stdout
    assert "FAIL  across all accounts of a currency, balances sum to zero" in broken.stdout
    assert "violation(s) found" in broken.stdout


def test_invalid_config_stops_with_the_key_named(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("server:\n  port: -1\n")
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(bad), "ledger", "check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "server.port" in result.stderr and "Traceback" not in result.stderr


async def test_a_database_out_of_reach_or_missing_is_an_error_message_not_a_traceback(new_database):
    url = await new_database()
    missing = url.rsplit("/", 1)[0] + "/sauti_no_such_database"
    for where, words in (("postgresql://postgres@127.0.0.1:1/sauti", "cannot reach the database"),
                         (missing, "refused")):
        for args in (("db", "current"), ("payment", "show", "K7Q2M9BXA4"), ("outbox", "status")):
            done = sauti(*args, url=where)
            assert done.returncode == 1 and words in done.stderr, (args, done.stderr)
            assert "Traceback" not in done.stderr, (args, done.stderr)


async def test_a_job_id_no_job_can_have_is_a_usage_error(new_database):
    url = await new_database()
    for args in (("outbox", "retry", "99999999999999999999"), ("outbox", "park", "0", "--reason", "x")):
        done = sauti(*args, url=url)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
