"""The tools for people: `sauti phone` (an interactive phone speaking Africa's Talking's protocol to a
running gateway), `sauti ussd graph|check|drop-offs`, each run as the installed command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from gateway.commands.phone import DialError, split_dial
from gateway.keys import DATABASE_URL
from tests.ussd.ussd_world import PIN, Dial, See, Type, customer, run

SAUTI = [sys.executable, "-m", "gateway.cli"]
ROOT = Path(__file__).resolve().parents[2]


async def sauti(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *SAUTI, *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})})
    out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    return process.returncode, out.decode()


def test_dial_strings_split_into_service_code_and_preselected_input():
    assert split_dial("*384*1#", "*384*1#") == ("*384*1#", "")
    assert split_dial("*384*1*6*1#", "*384*1#") == ("*384*1#", "6*1")
    for bad in ("*384*2#", "*384*1*#", "384*1*2", "*384*12#"):
        with pytest.raises(DialError):
            split_dial(bad, "*384*1#")


async def test_the_terminal_phone_checks_a_balance(gw):
    user = await customer(gw, funds=1234)
    code, out = await sauti("phone", "--msisdn", user.phone, "--url", gw.url, "--dial", "*384*1*6#",
                            stdin=f"1\n{PIN}\nn\n")
    assert code == 0, out
    assert "My account" in out and "Your Sauti balance is Ksh 1,234." in out and "(session ended)" in out
    assert PIN not in out  # typed, never shown


async def test_the_terminal_phone_hangs_up_quietly_when_its_input_runs_out(gw):
    user = await customer(gw, funds=50)
    # Input ends at the "Dial again?" question, then in the middle of a session: both hang up.
    for script in (f"1\n{PIN}\n", "1\n"):
        code, out = await sauti("phone", "--msisdn", user.phone, "--url", gw.url, "--dial", "*384*1*6#", stdin=script)
        assert code == 0 and "Aborted" not in out and "Traceback" not in out, out


async def test_the_terminal_phone_refuses_a_foreign_dial_code(gw):
    code, out = await sauti("phone", "--msisdn", "+254712345678", "--url", gw.url, "--dial", "*123#")
    assert code == 2 and "is not *384*1# or an extension" in out


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
async def test_graph_and_check_commands(fmt):
    code, out = await sauti("ussd", "graph", "--format", fmt)
    assert code == 0 and ("flowchart TD" in out if fmt == "mermaid" else "digraph journeys" in out)
    code, out = await sauti("ussd", "check")
    assert code == 0 and "valid" in out


async def test_drop_offs_lists_where_sessions_ended(gw, phone_for):
    user = await customer(gw, funds=10)
    phone = phone_for(user.phone)
    await run(phone, [Dial(), Type("6"), Type("1"), Type(PIN), See("acct.bal.show")])
    code, out = await sauti("ussd", "drop-offs", "--hours", "1", env={"DATABASE_URL": gw.app[DATABASE_URL]})
    assert code == 0, out
    assert "acct.bal.show" in out and "sessions" in out


async def test_support_finds_a_payment_by_the_reference_the_customer_reads_out(gw, phone_for):
    payer, payee = await customer(gw, funds=500), await customer(gw, name="Juma Mwangi")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type("1"), Type(payee.phone), Type("120"), Type(PIN), See("send.done")])
    reference = phone.reference()
    paid = await gw.payment(reference)
    database = {"DATABASE_URL": gw.app[DATABASE_URL]}

    # Read out over the phone and typed as heard: lower case, with a dash.
    code, out = await sauti("payment", "show", f"{reference[:4].lower()}-{reference[4:]}", env=database)
    assert code == 0, out
    assert out.startswith(f"{reference}  {paid.public_id}") and "succeeded" in out, out
    assert "amount KES 120, fee KES 2" in out, out
    assert "created -> succeeded  (ledger)" in out and payee.phone in out, out
    # --json is what GET /v1/payments/{id} answers.
    code, out = await sauti("payment", "show", paid.public_id, "--json", env=database)
    assert code == 0, out
    answer = json.loads(out)
    assert (answer["reference"], answer["status"], answer["amount_minor"]) == (reference, "succeeded", 12000)
    assert [e["to"] for e in answer["events"]] == ["created", "succeeded"]

    code, out = await sauti("payment", "show", "NOSUCHREF1", env=database)
    assert code == 1 and "no payment has the reference or id 'NOSUCHREF1'" in out and "Traceback" not in out
