"""Reconciliation as operators run it over HTTP (``POST /v1/ops/reconciliations``, ``/ops/reconcile``):
against the Daraja sandbox's books and Wave's transactions API over real HTTP, or an M-Pesa statement
uploaded as CSV; the report as JSON and as a page; every bad request refused with a clear answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import aiohttp

from payments.api_keys import CALLER, SUPPORT
from payments.commands import Channel, Deposit
from payments.money import Currency, Money
from payments.providers.daraja_credentials import NAIROBI
from tests.integration.ops_helpers import call, csrf_of, new_key, ops_client, sign_in, sign_out
from tests.integration.payments_helpers import module_world
from tests.integration.test_suspense import park

KES = Currency.KES

world, ledger_stays_consistent = module_world()
client, ops_key = ops_client()


def statement_csv(*lines: tuple[str, int]) -> str:
    """An M-Pesa organisation statement, as the portal exports it, with ``(receipt, paid in)`` lines now."""
    now = f"{datetime.now(UTC).astimezone(NAIROBI):%Y-%m-%d %H:%M:%S}"
    rows = ["Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
            "Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No."]
    rows += [f"{receipt},{now},{now},Pay Bill Online,Completed,{amount}.00,,1,true,Pay Bill Online,"
             f"254712000111 - Jane,," for receipt, amount in lines]
    return "Organisation Name:,Sauti\nTime Period:,today\n\n" + "\n".join(rows) + "\n"


async def test_a_period_is_reconciled_against_the_providers_statements(world, client, ops_key):
    start = datetime.now(UTC) - timedelta(seconds=1)
    user = await world.user()
    deposit = await world.settle((await world.payments.handle(Deposit(
        f"d-{uuid.uuid4()}", user.id, Money.of(250, KES), Channel.USSD))).public_id)
    receipt, _ = await park(world, 70, account="recon-nobody")

    status, answer = await call(client, "POST", "/v1/ops/reconciliations", ops_key,
                                {"from": start.isoformat(), "grace_minutes": 5})
    assert status == 200, answer
    report = answer["report"]
    assert answer["skipped"] == [] and not answer["ok"]  # money in suspense waits for a person
    assert deposit.public_id in {f["public_id"] for f in report["matched"]}
    assert [f["transaction_ids"] for f in report["parked_in_suspense"]] == [[receipt]]
    assert len(report["sources"]) == 2  # the sandbox's M-Pesa books and Wave's API
    # Reconciling only reads: a support key runs it too.
    support = await new_key(world, role=SUPPORT, name="Help")
    status, answer = await call(client, "POST", "/v1/ops/reconciliations", support,
                                {"from": start.isoformat(), "provider": "wave"})
    assert status == 200 and answer["report"]["sources"] == ["wave: Wave GET /v1/transactions"]


async def test_an_uploaded_m_pesa_statement_is_reconciled(world, client, ops_key):
    start = datetime.now(UTC) - timedelta(seconds=1)
    user = await world.user()
    deposit = await world.settle((await world.payments.handle(Deposit(
        f"d-{uuid.uuid4()}", user.id, Money.of(300, KES), Channel.USSD))).public_id)
    stranger = f"UNK{uuid.uuid4().hex[:7].upper()}"
    csv = statement_csv((deposit.provider_refs["receipt"], 300), (stranger, 45))
    end = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    status, answer = await call(client, "POST", "/v1/ops/reconciliations", ops_key,
                                {"from": start.isoformat(), "to": end, "provider": "mpesa", "mpesa_statement_csv": csv,
                                 "grace_minutes": 0})
    assert status == 200, answer
    report = answer["report"]
    assert report["sources"] == ["mpesa: M-Pesa statement uploaded"]
    assert [f["public_id"] for f in report["matched"]] == [deposit.public_id]
    assert [f["transaction_ids"] for f in report["missing_on_ours"]] == [[stranger]]


async def test_a_reconciliation_that_cannot_run_is_refused_clearly(world, client, ops_key):
    now = datetime.now(UTC)
    bad = [
        ({"from": "yesterday"}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"from": now.isoformat(), "to": (now - timedelta(hours=1)).isoformat()}, 400, "invalid_request"),
        ({"from": (now - timedelta(days=40)).isoformat()}, 400, "invalid_request"),
        ({"from": now.isoformat(), "provider": "airtel"}, 400, "invalid_request"),
        ({"from": now.isoformat(), "provider": "wave", "mpesa_statement_csv": statement_csv()}, 400,
         "invalid_request"),
        ({"from": now.isoformat(), "mpesa_statement_csv": "not,a,statement\n1,2,3\n"}, 400, "statement_file_error"),
        ({"from": now.isoformat(), "mpesa_statement_csv": statement_csv() + "\u0000"}, 400, "invalid_request"),
        ({"from": now.isoformat(), "mpesa_statement_csv": "\ud800"}, 400, "invalid_request"),
        ({"from": now.isoformat(), "grace_minutes": "5"}, 400, "invalid_grace_minutes"),
        ({"from": now.isoformat(), "grace_minutes": -1}, 400, "invalid_request"),
        ({"from": now.isoformat(), "grace_minutes": True}, 400, "invalid_grace_minutes"),
        ({"from": now.isoformat(), "extra": 1}, 400, "unknown_field"),
        ({"from": 20261201}, 400, "invalid_from"),
        ({"from": "9999-12-30", "to": "9999-12-31"}, 400, "invalid_request"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, 400, "invalid_request"),
    ]
    for body, status, code in bad:
        got, answer = await call(client, "POST", "/v1/ops/reconciliations", ops_key, body)
        assert (got, answer["error"]["code"]) == (status, code), (body, answer)
    caller = await new_key(world, role=CALLER)
    assert (await call(client, "POST", "/v1/ops/reconciliations", caller, {"from": now.isoformat()}))[0] == 403


async def test_the_dashboard_reconciles_an_uploaded_statement(world, client, ops_key):
    start = datetime.now(UTC) - timedelta(seconds=1)
    receipt, _ = await park(world, 55, account="recon-page")
    page = await sign_in(client, ops_key)
    async with client.get("/ops/reconcile") as answer:
        page = await answer.text()
    assert answer.status == 200 and 'enctype="multipart/form-data"' in page

    def form(csrf: str, statement: bytes | None, **fields: str) -> aiohttp.FormData:
        data = aiohttp.FormData()
        for name, value in {"csrf": csrf, "from": start.isoformat(), "provider": "mpesa", **fields}.items():
            data.add_field(name, value)
        if statement is not None:
            data.add_field("mpesa_statement", statement, filename="statement.csv", content_type="text/csv")
        return data

    async with client.post("/ops/reconcile", data=form("stale", None)) as answer:
        assert answer.status == 403
    # In sandbox mode with no file, the sandbox's books: the parked payment is listed, linked to suspense.
    async with client.post("/ops/reconcile", data=form(csrf_of(page), None)) as answer:
        shown = await answer.text()
    assert answer.status == 200, shown
    assert "Received for no wallet, parked in suspense" in shown and receipt in shown and "/ops/suspense" in shown
    stranger = f"UNK{uuid.uuid4().hex[:7].upper()}"
    async with client.post("/ops/reconcile", data=form(csrf_of(page), statement_csv((stranger, 45)).encode())) \
            as answer:
        shown = await answer.text()
    assert answer.status == 200 and "On the provider&#39;s statement, not in Sauti" in shown and stranger in shown
    async with client.post("/ops/reconcile", data=form(csrf_of(page), b"\xff\xfe\x00bad")) as answer:
        shown = await answer.text()
    assert answer.status == 400 and "not a CSV file in UTF-8" in shown
    async with client.post("/ops/reconcile", data=form(csrf_of(page), None, grace_minutes="soon")) as answer:
        assert answer.status == 400 and "whole number of minutes" in await answer.text()
    huge = statement_csv() + '"' + "x" * 140_000 + '",1\n'  # past the csv module's field limit
    async with client.post("/ops/reconcile", data=form(csrf_of(page), huge.encode())) as answer:
        assert answer.status == 400 and "not a CSV statement" in await answer.text()
    # A text field that is not UTF-8 (no browser sends one; anyone else can).
    raw = (f'--b0undary\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf_of(page)}\r\n'
           '--b0undary\r\nContent-Disposition: form-data; name="from"\r\n\r\n').encode() \
        + b"\xff\xfe\r\n--b0undary--\r\n"
    async with client.post("/ops/reconcile", data=raw,
                           headers={"Content-Type": "multipart/form-data; boundary=b0undary"}) as answer:
        assert answer.status == 400 and "could not be read" in await answer.text()
    await sign_out(client)
