"""The `sauti` command against a real database: `db upgrade`, `db current`, and `ledger check`
exiting non-zero, with a readable report, when an invariant is broken."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db.engine import create_engine
from db.migrate import head_revision
from gateway.cli import main

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
                         # A Unix socket's directory with no server in it (as the embedded server's URLs name one).
                         ("postgresql://postgres@/sauti?host=/nonexistent/sauti-sockets", "cannot reach the database"),
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


def _no_traceback(done: subprocess.CompletedProcess, code: int, words: str, args) -> None:
    assert done.returncode == code and words in done.stderr, (args, done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, (args, done.stderr)


def test_every_command_says_when_the_database_is_out_of_reach(tmp_path):
    """`serve`, `worker`, `reconcile`, `ussd drop-offs` and `mpesa` ended in a traceback where `db
    current` said "cannot reach the database"."""
    statement = tmp_path / "statement.csv"
    statement.write_text("Receipt No.,Completion Time,Paid In,Withdrawn\n")
    down = "postgresql://postgres@127.0.0.1:1/sauti"
    for args, code in ((("serve", "--port", "1"), 1), (("worker", "--once"), 1), (("ussd", "drop-offs"), 1),
                       (("reconcile", "--from", "2026-01-01", "--provider", "mpesa", "--mpesa-statement",
                         str(statement)), 2),  # 2: the reconciliation could not run
                       (("mpesa", "book-c2b", "QAB1CD2EF3", "--amount", "190", "--account", "0712345678",
                         "--phone", "254712345678", "--by", "test"), 1),
                       (("db", "upgrade"), 1)):
        _no_traceback(sauti(*args, url=down), code, "cannot reach the database at postgresql://postgres@127.0.0.1:1",
                      args)


async def test_migrations_this_code_cannot_run_are_said_plainly(new_database):
    url = await new_database()
    assert sauti("db", "upgrade", url=url).returncode == 0
    _no_traceback(sauti("db", "upgrade", "--revision", "9999", url=url), 1, "cannot migrate to '9999'", "9999")
    # A later release migrated the database, then the code was rolled back.
    engine = create_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    await engine.dispose()
    newer = f"the database is at revision 0999, newer than this code's {head_revision()}"
    for args in (("db", "upgrade"), ("worker", "--once"), ("serve", "--port", "1")):
        _no_traceback(sauti(*args, url=url), 1, newer, args)


async def test_serve_on_a_port_already_taken_says_so(new_database):
    url = await new_database()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = sauti("serve", "--port", str(port), url=url)
    _no_traceback(done, 1, f"cannot listen on 127.0.0.1:{port}", "serve")


async def test_drop_offs_over_hours_no_clock_can_hold_is_a_usage_error(new_database):
    url = await new_database()

    def drop_offs(hours: str) -> Result:
        return CliRunner().invoke(main, ["ussd", "drop-offs", "--hours", hours], env={"DATABASE_URL": url})

    for hours in ("nan", "inf", "-inf", "1e9", "0"):
        done = await asyncio.to_thread(drop_offs, hours)
        # A usage error (exit 2); a traceback was a ValueError or an OverflowError (exit 1).
        assert done.exit_code == 2 and "--hours" in done.output, (hours, done.output, done.exception)
    done = await asyncio.to_thread(drop_offs, "8784")
    assert done.exit_code == 0 and "no USSD session ended in the last 8784 h" in done.output, done.output


def with_query(url: str, **params: str) -> str:
    """``url`` with these query parameters added to those it has (the embedded server's ``?host=…``)."""
    return make_url(url).update_query_dict(params).render_as_string(hide_password=False)


async def test_a_password_in_the_urls_query_is_never_shown(new_database):
    url = await new_database()
    secret = "TopSecret123"
    # The embedded server's URL names its socket in the query already (?host=…): the password joins it.
    upgraded = sauti("db", "upgrade", url=with_query(url, password=secret))
    assert upgraded.returncode == 0 and "password=***" in upgraded.stdout, upgraded.stderr
    missing = with_query(make_url(url).set(database="sauti_no_such_database").render_as_string(hide_password=False),
                         password=secret)
    for done in (upgraded, sauti("payment", "review", url=missing),
                 sauti("serve", "--port", "1", url=f"postgresql://postgres@127.0.0.1:1/x?password={secret}"),
                 sauti("db", "current", url=f"postgresql://postgres:{secret}@h1:1,h2:1/x?sslpassword={secret}")):
        assert done.returncode in (0, 1) and secret not in done.stdout + done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
