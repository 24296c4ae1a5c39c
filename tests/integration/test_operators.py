"""Operators through the operator API (``/v1/ops``) and the dashboard (``/ops``), over real HTTP
against real payments: keys and their roles, finding payments, a payment's whole record (ledger,
callbacks, jobs, audit), verdicts on flagged payments, refunds, parked jobs run again; and the
dashboard's sign-in, sessions, CSRF checks, escaping and forms doing the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gateway.ops_dashboard import COOKIE, SIGN_IN_COOKIE
from payments import outbox
from payments.accounts import AccountKind
from payments.api_keys import (
    OPERATOR,
    SUPPORT,
    ApiKeyHasher,
    create_api_key,
    get_api_key,
    revoke_api_key,
    split_key,
)
from payments.commands import Channel, SendToWallet, Withdraw
from payments.errors import InvalidRequest
from payments.money import Currency, Money
from payments.payment_records import PaymentFilter, payment_record, search_payments
from payments.payment_store import Payment
from payments.states import PaymentStatus
from payments.webhook_endpoints import add_endpoint
from tests.integration.ops_helpers import (
    PEPPER,
    call,
    csrf_of,
    new_key,
    ops_client,
    plans_without_seq_scans,
    sign_in,
    sign_in_token,
    sign_out,
    statements_run,
)
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES = Currency.KES
S = PaymentStatus
world, ledger_stays_consistent = module_world()
client, ops_key = ops_client()


async def p2p(world: PaymentsWorld, amount: int = 100, *, key: str) -> tuple[Payment, Any, Any]:
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1_000, KES))
    paid = await world.payments.handle(SendToWallet(key, payer.id, Money.of(amount, KES), Channel.USSD,
                                                    recipient_phone=payee.phone))
    await world.worker.drain()
    return paid, payer, payee


async def flagged_withdrawal(world: PaymentsWorld, key: str) -> Payment:
    """A withdrawal whose B2C timed out in Daraja's queue: flagged for a person."""
    user = await world.user(suffix="905")
    await world.fund(user, Money.of(1_000, KES))
    payment = await world.payments.handle(Withdraw(key, user.id, Money.of(100, KES), Channel.USSD))
    for _ in range(300):
        await world.worker.drain()
        if (found := await world.payment(payment.public_id)).provider_refs.get("needs_review"):
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("the queue time-out never came")


async def park_again(world: PaymentsWorld, job_id: int, reason: str) -> None:
    """Park a job that ran (as if its tries had run out): what an operator then finds parked."""
    async with world.engine.begin() as conn:
        await conn.execute(text("UPDATE outbox_jobs SET status = 'pending', finished_at = NULL WHERE id = :i"),
                           {"i": job_id})
    assert await outbox.park(world.engine, job_id, reason)


# -- keys and roles --------------------------------------------------------------------------------


async def test_each_key_serves_its_own_api_only(world, client, ops_key):
    caller = await new_key(world)
    assert (await call(client, "GET", "/v1/ops/payments", caller))[0] == 403
    status, refused = await call(client, "GET", "/v1/ops/payments", caller)
    assert refused["error"]["code"] == "operator_key_required"
    status, refused = await call(client, "POST", "/v1/quotes", ops_key, {"amount": "10", "currency": "KES"})
    assert (status, refused["error"]["code"]) == (403, "operator_key")
    status, refused = await call(client, "POST", "/v1/webhook_endpoints", ops_key, {"url": "http://127.0.0.1/x"})
    assert status == 403
    async with client.get("/v1/ops/payments") as answer:
        assert answer.status == 401
    assert (await call(client, "GET", "/v1/ops/payments", "sk_nothing_here"))[0] == 401


async def test_an_operator_key_belongs_to_no_wallet_and_gets_no_webhooks(world):
    user = await world.user()
    async with world.engine.begin() as conn:
        with pytest.raises(InvalidRequest, match="operator or support key"):
            await create_api_key(conn, ApiKeyHasher(PEPPER), "bad", user_id=user.id, role=OPERATOR)
    made = await new_key(world, role=OPERATOR, name="N" * 200)
    prefix = split_key(made)[0]
    async with world.engine.connect() as conn:
        actor = (await get_api_key(conn, prefix)).actor
    assert actor.endswith(f"({prefix})") and len(actor) <= 60  # what a verdict's history keeps
    async with world.engine.begin() as conn:
        key_id = await conn.scalar(text(f"SELECT id FROM api_keys WHERE prefix = '{prefix}'"))
        with pytest.raises(InvalidRequest, match="not an operator's"):
            await add_endpoint(conn, key_id, "http://127.0.0.1:9/hook", allow_local=True, max_per_key=5, actor="t")
    with pytest.raises(IntegrityError):  # and the database says so too
        async with world.engine.begin() as conn:
            await conn.execute(text(
                "UPDATE api_keys SET user_id = :u WHERE prefix = :p"), {"u": user.id, "p": prefix})


# -- finding payments and reading their records ----------------------------------------------------


async def test_payments_are_found_by_what_an_operator_knows(world, client, ops_key):
    paid, payer, payee = await p2p(world, 120, key="ops-find-1")
    other, _, _ = await p2p(world, 130, key="ops-find-2")

    status, found = await call(client, "GET", f"/v1/ops/payments?phone={payer.phone}", ops_key)
    assert status == 200 and [p["public_id"] for p in found["payments"]] == [paid.public_id]
    # The recipient's number finds it too, written as people write it.
    local = "0" + payee.phone.removeprefix("+254")
    assert [p["public_id"] for p in (await call(client, "GET", f"/v1/ops/payments?phone={local}", ops_key))[1]
            ["payments"]] == [paid.public_id]
    newest = (await call(client, "GET", "/v1/ops/payments?kind=p2p&status=succeeded&limit=1", ops_key))[1]
    assert [p["public_id"] for p in newest["payments"]] == [other.public_id]
    assert newest["payments"][0]["needs_review"] is None and newest["payments"][0]["payer"]
    older = (await call(client, "GET", f"/v1/ops/payments?kind=p2p&limit=1&before={newest['next_before']}",
                        ops_key))[1]
    assert [p["public_id"] for p in older["payments"]] == [paid.public_id]
    assert (await call(client, "GET", "/v1/ops/payments?provider=wave&channel=voice", ops_key))[1]["payments"] == []

    for bad, code in (("status=lost", "invalid_request"), ("phone=12", "invalid_request"),
                      ("limit=0", "invalid_limit"), ("review=maybe", "invalid_review"),
                      ("review=false", "invalid_review"), ("colour=red", "unknown_query_parameter")):
        status, refused = await call(client, "GET", f"/v1/ops/payments?{bad}", ops_key)
        assert (status, refused["error"]["code"]) == (400, code), bad


async def test_a_payment_s_record_shows_its_money_jobs_and_history(world, client, ops_key):
    paid, payer, payee = await p2p(world, 200, key="ops-record")
    for name in (paid.public_id, paid.reference.lower()):
        status, record = await call(client, "GET", f"/v1/ops/payments/{name}", ops_key)
        assert status == 200 and record["public_id"] == paid.public_id
    assert record["status"] == "succeeded" and record["payer"] == payer.phone
    assert record["idempotency_key"] == "ops-record" and record["needs_review"] is None
    assert [e["to"] for e in record["events"]] == ["created", "succeeded"]
    [transfer] = record["transfers"]
    assert transfer["kind"] == "p2p.pay" and sum(p["amount_minor"] for p in transfer["postings"]) == 0
    wallets = {f"customer_wallet:{payer.id}:KES", f"customer_wallet:{payee.id}:KES"}
    assert {p["account"] for p in transfer["postings"]} >= wallets
    # Its SMS receipts, one to each side, as outbox jobs.
    assert [(j["kind"], j["status"]) for j in record["jobs"]] == [("sms.receipt", "done")] * 2
    assert record["callbacks"] == [] and record["audit"] == [] and record["refunds"] == []

    for missing_id in ("pay_nothing", "pay_%00", "K7Q2%00M9BX"):  # a NUL never reaches PostgreSQL
        status, missing = await call(client, "GET", f"/v1/ops/payments/{missing_id}", ops_key)
        assert (status, missing["error"]["code"]) == (404, "unknown_payment")


async def test_a_provider_payment_s_record_holds_the_provider_s_callbacks(world, client, ops_key):
    user = await world.user()
    await world.fund(user, Money.of(1_000, KES))
    payment = await world.payments.handle(Withdraw("ops-withdraw", user.id, Money.of(300, KES), Channel.USSD))
    await world.settle(payment.public_id)
    record = (await call(client, "GET", f"/v1/ops/payments/{payment.public_id}", ops_key))[1]
    assert record["status"] == "succeeded" and record["provider"]["name"] == "mpesa"
    assert [c["kind"] for c in record["callbacks"]] == ["b2c_result"]
    assert record["callbacks"][0]["payload"]["result_code"] == 0
    assert record["callbacks"][0]["payload"]["receipt"] == record["provider"]["receipt"]
    assert [t["kind"] for t in record["transfers"]] == ["withdraw.debit", "withdraw.settle"]
    assert {j["kind"] for j in record["jobs"]} >= {"mpesa.b2c", "sms.receipt"}


# -- verdicts, refunds, parked jobs ----------------------------------------------------------------


async def test_an_operator_decides_a_flagged_payment_once_through_the_api(world, client, ops_key):
    payment = await flagged_withdrawal(world, "ops-review")
    queue = (await call(client, "GET", "/v1/ops/review", ops_key))[1]["payments"]
    assert payment.public_id in {item["public_id"] for item in queue}
    listed = (await call(client, "GET", "/v1/ops/payments?review=true", ops_key))[1]["payments"]
    assert payment.public_id in {p["public_id"] for p in listed}
    assert {p["needs_review"] for p in listed} == {"B2C queue timeout"}

    path = f"/v1/ops/payments/{payment.reference}/decide"
    for body, code in (({"outcome": "failed"}, "invalid_request"),
                       ({"outcome": "succeeded", "reason": "on the statement"}, "invalid_request"),
                       ({"outcome": "maybe", "reason": "x"}, "invalid_request"),
                       ({"outcome": "failed", "reason": "a NUL \x00"}, "invalid_request"),
                       ({"outcome": "failed", "reason": "half a pair \ud800"}, "invalid_request"),
                       ({"outcome": "failed", "reason": "x", "extra": 1}, "unknown_field")):
        status, refused = await call(client, "POST", path, ops_key, body)
        assert (status, refused["error"]["code"]) == (400, code), body
    status, decided = await call(client, "POST", path, ops_key,
                                 {"outcome": "failed", "reason": "not on the statement of the day"})
    assert status == 200 and decided["status"] == "failed" and decided["needs_review"] is None
    assert decided["events"][-1]["cause"].startswith("operator:Alice (")
    assert [(a["action"], a["actor"].split(" ")[0]) for a in decided["audit"]] == [("payment.decide", "Alice")]
    status, again = await call(client, "POST", path, ops_key, {"outcome": "failed", "reason": "again"})
    assert (status, again["error"]["code"]) == (409, "not_decidable")


async def test_an_operator_refunds_once_and_a_retry_gets_the_same_refund(world, client, ops_key):
    paid, payer, _ = await p2p(world, 250, key="ops-refund")
    path = f"/v1/ops/payments/{paid.public_id}/refund"
    for body in ({}, {"reason": "nul \x00 in it"}, {"reason": "half a pair \ud800"}, {"reason": "x" * 501},
                 {"reason": "x", "receipt": 7}, {"reason": "x", "provider_reversed": "yes"}):
        status, refused = await call(client, "POST", path, ops_key, body)
        assert status == 400, (body, refused)  # nothing written: PostgreSQL cannot even hold a NUL
    status, refund = await call(client, "POST", path, ops_key, {"reason": "sent to the wrong number"})
    assert status == 201 and refund["kind"] == "refund" and refund["status"] == "succeeded"
    assert refund["refund_of"] == paid.public_id
    status, again = await call(client, "POST", path, ops_key, {"reason": "sent to the wrong number"})
    assert status == 200 and again["public_id"] == refund["public_id"]
    original = (await call(client, "GET", f"/v1/ops/payments/{paid.public_id}", ops_key))[1]
    assert original["status"] == "reversed"  # a wallet payment is undone in the ledger
    assert [r["public_id"] for r in original["refunds"]] == [refund["public_id"]]
    assert [a["action"] for a in original["audit"]] == ["refund"]
    assert await world.balance(AccountKind.CUSTOMER_WALLET, KES, payer.id) == Money.of(1_000, KES)

    # A key given is kept apart from the default ones: naming another payment's id as the key
    # does not take that payment's own refund.
    first, payer2, _ = await p2p(world, 60, key="ops-refund-a")
    second = await world.payments.handle(SendToWallet("ops-refund-b", payer2.id, Money.of(70, KES), Channel.USSD,
                                                      recipient_phone=(await world.user()).phone))
    status, _ = await call(client, "POST", f"/v1/ops/payments/{first.public_id}/refund", ops_key,
                           {"reason": "asked"}, headers={"Idempotency-Key": second.public_id})
    assert status == 201
    status, _ = await call(client, "POST", f"/v1/ops/payments/{second.public_id}/refund", ops_key, {"reason": "asked"})
    assert status == 201

    failed, _, _ = await p2p(world, 5_000, key="ops-refund-failed")  # more than the wallet holds
    assert failed.status is S.FAILED
    status, refused = await call(client, "POST", f"/v1/ops/payments/{failed.public_id}/refund", ops_key,
                                 {"reason": "x"})
    assert (status, refused["error"]["code"]) == (409, "not_refundable")


async def test_a_parked_job_is_run_again_from_the_operator_api(world, client, ops_key):
    paid, _, _ = await p2p(world, 90, key="ops-parked")
    job_id = await world.scalar("SELECT id FROM outbox_jobs WHERE payload->>'payment' = :p ORDER BY id LIMIT 1",
                                p=paid.public_id)
    await park_again(world, job_id, "parked by an operator: the SMS gateway is down")
    status, box = await call(client, "GET", "/v1/ops/outbox", ops_key)
    assert status == 200 and box["counts"]["parked"] >= 1 and set(box["counts"]) == {"pending", "running", "parked"}
    [shown] = [j for j in box["parked"] if j["id"] == job_id]
    assert shown["kind"] == "sms.receipt" and "SMS gateway is down" in shown["last_error"]
    assert shown["payload"]["payment"] == paid.public_id

    status, retried = await call(client, "POST", f"/v1/ops/outbox/{job_id}/retry", ops_key)
    assert (status, retried) == (200, {"id": job_id, "status": "pending"})
    assert (await call(client, "POST", f"/v1/ops/outbox/{job_id}/retry", ops_key))[0] == 409
    assert (await call(client, "POST", "/v1/ops/outbox/999999999/retry", ops_key))[0] == 404
    assert (await call(client, "POST", "/v1/ops/outbox/abc/retry", ops_key))[0] == 404
    await world.worker.drain()
    assert (await outbox.get_job(world.engine, job_id)).status == "done"
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE subject = :s AND action = 'outbox.retry'",
                              s=f"outbox_job:{job_id}") == 1


# -- the dashboard ---------------------------------------------------------------------------------


async def test_the_dashboard_needs_an_operator_s_sign_in(world, client):
    async with client.get("/ops", allow_redirects=False) as answer:
        assert answer.status == 303 and answer.headers["Location"] == "/ops/sign-in"
    async with client.get("/ops/sign-in") as answer:
        assert answer.status == 200
        assert "script-src" not in answer.headers["Content-Security-Policy"]  # default-src 'none': no script
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"
    for wrong in (await new_key(world), "sk_0000000000000_wrong", ""):
        async with client.post("/ops/sign-in", data={"key": wrong,
                                                     "sign_in_token": await sign_in_token(client)}) as answer:
            assert answer.status == 401 and "not an active operator or support key" in await answer.text()
    # A sign-in posted without the form's own token (from another site, say) opens nothing, even
    # with a good key: it gets a fresh form.
    good = await new_key(world, role=OPERATOR)
    client.session.cookie_jar.clear()
    async with client.post("/ops/sign-in", data={"key": good}, allow_redirects=False) as answer:
        assert answer.status == 403 and COOKIE not in answer.cookies and "fresh one" in await answer.text()
    async with client.post("/ops/sign-in", data={"key": good, "sign_in_token": await sign_in_token(client) + "x"},
                           allow_redirects=False) as answer:
        assert answer.status == 403 and COOKIE not in answer.cookies
    # Anything else under /ops that goes wrong is a page, not JSON.
    async with client.get("/ops/nowhere") as answer:
        assert answer.status == 404 and answer.content_type == "text/html"
    client.session.cookie_jar.clear()
    # An action without a session is refused, not redirected into.
    async with client.post("/ops/outbox/1/retry", data={"csrf": "x"}) as answer:
        assert answer.status == 403


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"--x\r\n"),  # no boundary
    ("multipart/form-data; boundary=x", b"garbage"),  # no part
    ("multipart/form-data; boundary=x", b"--x\r\nnot a header\r\n\r\nkey\r\n--x--\r\n"),
])
async def test_a_sign_in_form_that_cannot_be_read_gets_a_fresh_form(world, client, content_type, body):
    # Posted with no key at all: a stranger's malformed body is refused, not our failure (a 500).
    client.session.cookie_jar.clear()
    async with client.post("/ops/sign-in", data=body, headers={"Content-Type": content_type},
                           allow_redirects=False) as answer:
        page = await answer.text()
        assert answer.status == 400 and answer.content_type == "text/html", page
        assert "could not be read" in page and 'name="sign_in_token"' in page
        assert COOKIE not in answer.cookies and SIGN_IN_COOKIE in answer.cookies


async def test_the_dashboard_shows_payments_and_escapes_what_it_shows(world, client):
    key = await new_key(world, role=OPERATOR, name="<b>Eve</b>")
    paid, payer, _ = await p2p(world, 140, key="ops-dash-list")
    page = await sign_in(client, key)
    try:
        assert paid.reference in page and "KES 140" in page
        assert "&lt;b&gt;Eve&lt;/b&gt;" in page and "<b>Eve</b>" not in page
        async with client.get(f"/ops?phone={payer.phone}&status=succeeded") as answer:
            listed = await answer.text()
        assert paid.reference in listed and listed.count("/ops/payments/pay_") == 1
        async with client.get("/ops?status=<script>") as answer:
            assert answer.status == 200 and "&lt;script&gt;" not in await answer.text()  # refused, not echoed
        async with client.get(f"/ops/find?q={paid.reference.lower()}", allow_redirects=False) as answer:
            assert answer.headers["Location"] == f"/ops/payments/{paid.reference.lower()}"
        async with client.get(f"/ops/payments/{paid.reference}") as answer:
            record = await answer.text()
        assert answer.status == 200 and "p2p.pay" in record and "sms.receipt" in record
        assert f"customer_wallet:{payer.id}:KES" in record and f"Refund {paid.total.format()}" in record
        async with client.get("/ops/payments/NOPE") as answer:
            assert answer.status == 404 and "no payment has the reference" in await answer.text()
        async with client.get("/ops/static/ops.css") as answer:
            assert answer.status == 200 and answer.content_type == "text/css"
    finally:
        await sign_out(client)


async def test_dashboard_actions_need_the_session_s_csrf_token(world, client):
    key = await new_key(world, role=OPERATOR, name="Bob")
    paid, _, _ = await p2p(world, 160, key="ops-dash-refund")
    await sign_in(client, key)
    try:
        async with client.get(f"/ops/payments/{paid.public_id}") as answer:
            page = await answer.text()
        path = f"/ops/payments/{paid.public_id}/refund"
        for forged in ({}, {"csrf": "not-it", "reason": "x"}):
            async with client.post(path, data=forged) as answer:
                assert answer.status == 403
        assert (await world.payment(paid.public_id)).status is S.SUCCEEDED
        async with client.post(path, data={"csrf": csrf_of(page), "reason": ""}) as answer:
            assert answer.status == 400 and "reason" in await answer.text()  # shown on the page, nothing done
        async with client.post(path, data={"csrf": csrf_of(page), "reason": "customer asked"},
                               allow_redirects=False) as answer:
            assert answer.status == 303
            refund_page = answer.headers["Location"]
        assert refund_page.endswith("?done=refunded")
        async with client.get(refund_page) as answer:
            shown = await answer.text()
        assert "Refunded: the money is back with the payer." in shown and "Bob (" in shown
        assert (await world.payment(paid.public_id)).status is S.REVERSED
        async with client.get(f"/ops/payments/{paid.public_id}?done=<i>hi</i>") as answer:
            assert "hi" not in (await answer.text()).split("<main>")[1].split("<h1>")[0]  # no text from the link
    finally:
        await sign_out(client)


async def test_a_flagged_payment_is_decided_and_a_parked_job_retried_from_the_dashboard(world, client):
    key = await new_key(world, role=OPERATOR, name="Carol")
    payment = await flagged_withdrawal(world, "ops-dash-review")
    overview = await sign_in(client, key)
    try:
        assert "waiting for review" in overview
        async with client.get(f"/ops/payments/{payment.public_id}") as answer:
            page = await answer.text()
        assert "B2C queue timeout" in page and "Record the verdict" in page
        async with client.post(f"/ops/payments/{payment.public_id}/decide", allow_redirects=False, data={
                "csrf": csrf_of(page), "outcome": "failed", "reason": "not on the statement"}) as answer:
            assert answer.status == 303 and answer.headers["Location"].endswith("?done=decided")
        assert (await world.payment(payment.public_id)).status is S.FAILED

        job_id = await world.scalar("SELECT id FROM outbox_jobs WHERE payload->>'payment' = :p AND kind = "
                                    "'sms.receipt' ORDER BY id LIMIT 1", p=payment.public_id)
        await world.worker.drain()
        await park_again(world, job_id, "parked by an operator: testing")
        async with client.get("/ops/outbox") as answer:
            box = await answer.text()
        assert f"/ops/outbox/{job_id}/retry" in box and payment.public_id in box
        async with client.post(f"/ops/outbox/{job_id}/retry", data={"csrf": csrf_of(box)},
                               allow_redirects=False) as answer:
            assert answer.status == 303
        async with client.post(f"/ops/outbox/{job_id}/retry", data={"csrf": csrf_of(box)}) as answer:
            assert answer.status == 409 and "is not parked" in await answer.text()
        assert (await outbox.get_job(world.engine, job_id)).status == "pending"
    finally:
        await sign_out(client)


async def test_a_session_ends_at_sign_out_and_with_its_key(world, client):
    key = await new_key(world, role=OPERATOR, name="Dan")
    await sign_in(client, key)
    async with client.get("/ops") as answer:
        page = await answer.text()
    token = client.session.cookie_jar.filter_cookies(client.make_url("/ops"))[COOKIE].value
    async with world.engine.begin() as conn:
        await revoke_api_key(conn, split_key(key)[0], actor="test")
    async with client.get("/ops", allow_redirects=False) as answer:
        assert answer.status == 303  # the revoked key's session is gone
    async with client.post("/ops/sign-out", data={"csrf": csrf_of(page)}) as answer:
        assert answer.status == 403
    client.session.cookie_jar.clear()

    other = await new_key(world, role=OPERATOR, name="Erin")
    await sign_in(client, other)
    first = client.session.cookie_jar.filter_cookies(client.make_url("/ops"))[COOKIE].value
    # A sign-in form left open from before, posted while signed in: the new session replaces the old.
    client.session.cookie_jar.update_cookies({SIGN_IN_COOKIE: "an-old-form-s-token"})
    async with client.post("/ops/sign-in", data={"key": other, "sign_in_token": "an-old-form-s-token"},
                           allow_redirects=False) as answer:
        assert answer.status == 303
    assert await world.scalar("SELECT count(*) FROM operator_sessions WHERE token_hash = encode(sha256(:t), 'hex')",
                              t=first.encode()) == 0
    await sign_out(client)
    client.session.cookie_jar.update_cookies({COOKIE: token})  # an old token, replayed
    async with client.get("/ops", allow_redirects=False) as answer:
        assert answer.status == 303
    client.session.cookie_jar.clear()
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE action = 'dashboard.signed_in' "
                              "AND actor LIKE 'Dan (%'") == 1


async def test_a_record_and_a_phone_search_read_through_indexes(world):
    """Every statement behind a payment's record and a number's payments can be served by an index
    (PostgreSQL told not to scan tables picks one when there is one): on a year of payments, a
    record reads its own rows only."""
    paid, _, payee = await p2p(world, 70, key="ops-explain")
    with statements_run(world.engine) as statements:
        async with world.engine.connect() as conn:
            record = await payment_record(conn, paid)
            found = await search_payments(conn, PaymentFilter(phone=payee.phone), limit=50)
    assert record.transfers and record.jobs and [item.payment.id for item in found] == [paid.id]
    assert len(statements) >= 8
    for statement, plan in await plans_without_seq_scans(world.engine, statements):
        if "recipient_phone = " in statement:
            assert "payments_recipient_phone" in plan and "payments_payer_newest" in plan, plan


async def test_an_m_pesa_payout_is_refunded_only_once_m_pesa_reversed_it(world, client, ops_key):
    user = await world.user()
    await world.fund(user, Money.of(1_000, KES))
    payout = await world.payments.handle(Withdraw("ops-payout", user.id, Money.of(300, KES), Channel.USSD))
    await world.settle(payout.public_id)
    path = f"/v1/ops/payments/{payout.public_id}/refund"
    status, refused = await call(client, "POST", path, ops_key, {"reason": "M-Pesa reversed it"})
    assert (status, refused["error"]["code"]) == (400, "payout_not_reversed")
    assert await world.wallet(user) == Money.of(1_000 - 303, KES)
    status, refund = await call(client, "POST", path, ops_key, {"reason": "M-Pesa reversed it on 1 Dec",
                                                                "provider_reversed": True})
    assert status == 201 and refund["status"] == "succeeded"
    assert await world.wallet(user) == Money.of(1_000, KES)


async def test_a_support_key_reads_everything_and_changes_nothing(world, client):
    support = await new_key(world, role=SUPPORT, name="Sam (support)")
    payment = await flagged_withdrawal(world, "ops-support")
    paid, _, _ = await p2p(world, 80, key="ops-support-p2p")
    for path in ("/v1/ops/payments", f"/v1/ops/payments/{paid.public_id}", "/v1/ops/review", "/v1/ops/outbox"):
        assert (await call(client, "GET", path, support))[0] == 200, path
    for path, body in ((f"/v1/ops/payments/{paid.public_id}/refund", {"reason": "asked"}),
                       (f"/v1/ops/payments/{payment.public_id}/decide", {"outcome": "failed", "reason": "x"}),
                       ("/v1/ops/outbox/1/retry", None)):
        status, refused = await call(client, "POST", path, support, body)
        assert (status, refused["error"]["code"]) == (403, "read_only_key"), path
    assert (await call(client, "POST", "/v1/quotes", support, {"amount": "10", "currency": "KES"}))[0] == 403

    await sign_in(client, support)
    try:
        async with client.get(f"/ops/payments/{payment.public_id}") as answer:
            page = await answer.text()
        assert "B2C queue timeout" in page and "Record the verdict" not in page and "reads only" in page
        async with client.post(f"/ops/payments/{payment.public_id}/decide", data={
                "csrf": csrf_of(page), "outcome": "failed", "reason": "x"}) as answer:
            assert answer.status == 403 and "reads only" in await answer.text()
        async with client.get(f"/ops/payments/{paid.public_id}") as answer:
            assert "Refund " not in await answer.text()
    finally:
        await sign_out(client)
    assert (await world.payment(payment.public_id)).status is S.PROCESSING
    assert (await world.payment(paid.public_id)).status is S.SUCCEEDED


async def test_a_customer_s_wallet_and_statement_for_support(world, client, ops_key):
    paid, payer, payee = await p2p(world, 110, key="ops-wallet")
    support = await new_key(world, role=SUPPORT, name="Wanjiru (support)")
    local = "0" + payer.phone.removeprefix("+254")
    status, shown = await call(client, "GET", f"/v1/ops/wallets/{local}?limit=1", support)
    assert status == 200 and shown["user"]["phone"] == payer.phone and shown["user"]["status"] == "active"
    wallet = shown["wallet"]
    assert wallet["currency"] == "KES" and wallet["balance_minor"] == (1_000 - 110 - paid.fee.major) * 100
    [line] = wallet["lines"]
    assert line["payment"] == paid.public_id and line["payment_reference"] == paid.reference
    assert line["counterparty"]["phone"] == payee.phone and wallet["next_before"] == line["id"]
    older = (await call(client, "GET", f"/v1/ops/wallets/{payer.phone}?before={line['id']}", ops_key))[1]
    assert [ln["kind"] for ln in older["wallet"]["lines"]] == ["deposit"]  # the funding before it
    for path, expected in (("/v1/ops/wallets/+254700000999", (404, "wallet_not_found")),
                           ("/v1/ops/wallets/12", (400, "invalid_phone")),
                           (f"/v1/ops/wallets/{payer.phone}?colour=red", (400, "unknown_query_parameter"))):
        status, refused = await call(client, "GET", path, ops_key)
        assert (status, refused["error"]["code"]) == expected, path
    assert (await call(client, "GET", f"/v1/ops/wallets/{payer.phone}", await new_key(world)))[0] == 403

    await sign_in(client, support)
    try:
        async with client.get(f"/ops/payments/{paid.public_id}") as answer:
            assert f'/ops/wallets/%2B{payer.phone[1:]}' in await answer.text()
        async with client.get(f"/ops/wallets/%2B{payer.phone[1:]}") as answer:
            page = await answer.text()
        assert answer.status == 200 and paid.reference in page and f"/ops/payments/{paid.public_id}" in page
        async with client.get("/ops/wallets/%2B254700000999") as answer:
            assert answer.status == 404 and "No Sauti wallet" in await answer.text()
    finally:
        await sign_out(client)
