"""`sauti agent` against a real database, as an operator runs it: register an agent, top up its float
(once per receipt), show it; bad input answers with a message, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from db.engine import create_engine
from payments.identities import register_user
from payments.ledger_check import check_ledger
from tests.integration.ledger_helpers import random_kenyan_number

ROOT = Path(__file__).resolve().parents[2]


def sauti(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


async def test_an_operator_registers_an_agent_and_tops_up_its_float(new_database):
    url = await new_database()
    engine = create_engine(url, pool_size=1)
    phone = random_kenyan_number()
    async with engine.begin() as conn:
        await register_user(conn, phone, display_name="Njeri Wambui")

    made = sauti("agent", "register", "0" + phone[4:], "--number", "402113", "--name", "Duka la Njeri",
                 "--store", "77001", url=url)
    assert made.returncode == 0, made.stderr
    assert "agent 402113: Duka la Njeri" in made.stdout and "stores 77001" in made.stdout

    for _ in range(2):  # the same receipt twice: credited once
        topped = sauti("agent", "topup", phone, "15,000", "--reference", "QK7H2ABC9", "--operator", "alice", url=url)
        assert topped.returncode == 0, topped.stderr
    assert "float of" in topped.stdout and "KES 15,000" in topped.stdout and "already recorded" in topped.stdout

    # The receipt is spent: another agent's top-up with it (the same default key) is refused.
    other = random_kenyan_number()
    async with engine.begin() as conn:
        await register_user(conn, other, display_name="Otieno")
    assert sauti("agent", "register", other, "--number", "402115", url=url).returncode == 0
    reused = sauti("agent", "topup", other, "15,000", "--reference", "QK7H2ABC9", "--operator", "alice", url=url)
    assert reused.returncode != 0 and "Traceback" not in reused.stderr, reused.stderr
    assert "receipt 'QK7H2ABC9' already topped up the float" in reused.stderr
    assert "float KES 0" in sauti("agent", "show", other, url=url).stdout

    shown = sauti("agent", "show", phone, url=url)
    assert shown.returncode == 0 and "float KES 15,000" in shown.stdout and "all time KES 0" in shown.stdout
    expired = sauti("agent", "expire", url=url)
    assert expired.returncode == 0 and "0 expired request(s) closed" in expired.stdout

    refusals = [("register", phone, "--number", "402114"),  # an agent already
                ("topup", phone, "1.234", "--reference", "R", "--operator", "a"),  # more decimals than KES has
                ("show", random_kenyan_number()),  # nobody
                ("topup", "not-a-phone", "1", "--reference", "R", "--operator", "a")]
    for args in refusals:
        refused = sauti("agent", *args, url=url)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, (args, refused.stderr)
        assert "Error:" in refused.stderr
    report = await check_ledger(engine)
    assert report.ok, report.render()
    await engine.dispose()
