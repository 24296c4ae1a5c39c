"""``POST /ussd`` and ``POST /ussd/events`` as Africa's Talking uses them, edge by edge: retried hops
that must not pay twice, extended dial codes, malformed and hostile requests, unknown sessions, the
PIN lock-out, a dropped session resumed, concurrent sessions of one number, provider refusals and
failures as clear screens, and how sessions ended recorded for operators. Both session stores."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp

from dialogs.session_outcomes import drop_offs
from gateway.keys import USSD_SESSIONS
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import wait_for
from tests.ussd.ussd_world import (
    CATALOGS,
    PIN,
    Continues,
    Dial,
    Ends,
    See,
    Shows,
    Type,
    customer,
    phone_number,
    run,
    sms_saying,
)

KES = Currency.KES


def en(key: str, **values) -> str:
    return CATALOGS.text("en", key, values)


async def post_form(gw, path: str, form: dict | None = None, **kwargs) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.post(gw.url + path, data=form, **kwargs) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_a_retried_payment_hop_shows_the_same_screen_and_pays_once(gw, phone_for):
    payer = await customer(gw, funds=1000)
    payee = await customer(gw, name="Otieno Were")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type("1"), Type(payee.phone), Type("200"), Type(PIN), See("send.done")])
    first = phone.screen
    assert await phone.retry() == first and await phone.retry() == first
    # A twin of the paying hop racing a fresh copy of it: still one payment.
    again = phone_for(payer.phone)
    await run(again, [Dial(), Type("1"), Type(payee.phone), Type("100")])
    results = await asyncio.gather(again.type(PIN), again.retry(), again.retry())
    assert len(set(results)) == 1
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 2
    assert await gw.wallet(payee) == Money.of(300, KES)


async def test_an_extended_dial_code_opens_the_chosen_screen(gw, phone_for):
    payer = await customer(gw, funds=50)
    account = phone_for(payer.phone)
    await run(account, [Dial("6"), See("acct.menu")])
    send = phone_for(payer.phone)
    await run(send, [Dial("1*0712345678"), See("send.amount"), Type("20"), See("send.confirm")])
    typed_pin = phone_for(payer.phone)  # a PIN is never taken from the dial string
    await run(typed_pin, [Dial(f"6*1*{PIN}"), See("acct.pin"), Continues()])
    nonsense = phone_for(payer.phone)
    await run(nonsense, [Dial("9*9*9"), See("note.invalid_choice"), See("home")])


async def test_empty_segments_and_hostile_input_get_sensible_screens(gw, phone_for):
    payer = await customer(gw, funds=50)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(""), See("home"), Type("*"), See("home"), Type("1"), See("send.to"),
                      Type("'; DROP TABLE users; --"), See("err.phone"), Type("x" * 300), See("note.invalid_choice"),
                      Type("+1 202 555 0100"), See("err.phone"), Type("0712345678"), Type("99999999999999"),
                      See("err.amount"), Type("-5"), See("err.amount"), Type("999999999"), See("err.amount_max"),
                      Type("60"), See("err.no_funds"), Continues()])


async def test_malformed_callbacks_still_get_a_screen(gw):
    unknown = {"sessionId": "ATUid_x1", "serviceCode": "*384*1#", "phoneNumber": "+12025550100", "text": ""}
    cases = [
        ({}, en("sys.error")),
        ({"sessionId": "ATUid_x0", "text": ""}, en("sys.unsupported")),
        (unknown, en("sys.unsupported")),
        ({**unknown, "phoneNumber": "+254712345678", "sessionId": "x" * 500}, en("sys.error")),
        ({**unknown, "phoneNumber": "+254712345678", "text": "1*" * 5000}, en("sys.error")),
    ]
    for form, expected in cases:
        status, content_type, body = await post_form(gw, "/ussd", form)
        assert (status, body) == (200, f"END {expected}"), form
        assert content_type.startswith("text/plain")
    status, _, body = await post_form(gw, "/ussd", json={"sessionId": "ATUid_json"})
    assert status == 200 and body.startswith("END ")


async def test_an_unknown_session_with_history_starts_sensibly(gw, phone_for):
    payer = await customer(gw)
    # The store lost this session (an in-process store restarted): its history reads as a dial path
    # that stops before any PIN.
    status, _, body = await post_form(gw, "/ussd", {"sessionId": f"ATUid_{uuid.uuid4().hex}", "serviceCode": "*384*1#",
                                                    "phoneNumber": payer.phone, "text": f"6*1*{PIN}"})
    assert status == 200 and body.startswith("CON " + en("acct.pin"))


async def test_wrong_pins_show_the_tries_left_then_lock_the_account(gw, phone_for):
    payer = await customer(gw, funds=500)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type("4"), Type("1"), Type("100"), See("wd.confirm"), Type("0000"),
                      Shows(en("err.wrong_pin", tries="2")), See("wd.confirm"), Type("1111"),
                      Shows(en("err.wrong_pin_last")), Type("9999"), See("pay.locked"), Ends()])
    later = phone_for(payer.phone)
    await run(later, [Dial(), Shows("locked until"), Ends()])
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 0
    assert await gw.wallet(payer) == Money.of(500, KES)


async def test_a_wrong_pin_in_a_hop_the_network_sent_three_times_counts_once(gw, phone_for):
    payer = await customer(gw, funds=1000)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type("4"), Type("1"), Type("100"), See("wd.confirm")])

    screens = await asyncio.gather(phone.type("0000"), phone.retry(), phone.retry())

    assert all(en("err.wrong_pin", tries="2") in screen for screen in screens), screens
    assert await gw.scalar("SELECT failed_pin_attempts || ' ' || status FROM users WHERE id = :u",
                           u=payer.id) == "1 active"
    await run(phone, [Type(PIN), See("wd.pending")])


async def test_a_dropped_session_is_resumed_and_its_drop_recorded(gw, phone_for):
    payer = await customer(gw, funds=900)
    payee = await customer(gw, name="Mary Wambui")
    dropped = phone_for(payer.phone)
    await run(dropped, [Dial(), Type("1"), Type(payee.phone), See("send.amount")])
    # Africa's Talking says the session ended without our END (the caller timed out).
    status, _, body = await post_form(gw, "/ussd/events", {
        "sessionId": dropped.session.session_id, "status": "Incomplete", "phoneNumber": payer.phone,
        "serviceCode": "*384*1#", "networkCode": "63902", "hopsCount": "3", "durationInMillis": "61000",
        "input": f"1*{payee.phone}", "lastAppResponse": "CON Enter amount", "errorMessage": "", "cost": "KES 0.0"})
    assert (status, body) == (200, "OK")
    resumed = phone_for(payer.phone)
    await run(resumed, [Dial(), See("sys.resume"), Type("1"), See("send.amount"), Type("250"), See("send.confirm"),
                        Shows("Mary Wambui"), Type(PIN), See("send.done"), Ends()])
    assert await gw.wallet(payee) == Money.of(250, KES)
    rows = await drop_offs(gw.engine, datetime.now(UTC) - timedelta(minutes=5))
    by_screen = {row.screen: row for row in rows}
    assert by_screen["send.amount"].dropped >= 1 and by_screen["send.done"].completed >= 1
    assert await gw.scalar("SELECT outcome || ' ' || last_screen || ' ' || hops FROM ussd_sessions "
                           "WHERE session_id = :s", s=dropped.session.session_id) == "dropped send.amount 3"
    # The PIN-bearing input history is never stored.
    assert await gw.scalar("SELECT count(*) FROM ussd_sessions WHERE session_id = :s AND "
                           "(coalesce(error_message, '') LIKE '%' || :p || '%')", s=dropped.session.session_id,
                           p=payee.phone) == 0


async def test_session_events_are_checked_and_idempotent(gw, phone_for):
    payer = await customer(gw, funds=10)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type("6"), Type("1"), Type(PIN), See("acct.bal.show"), Ends()])
    event = {"sessionId": phone.session.session_id, "status": "Success", "phoneNumber": payer.phone,
             "hopsCount": "4", "durationInMillis": "9000"}
    for _ in range(2):
        assert (await post_form(gw, "/ussd/events", event))[::2] == (200, "OK")
    assert await gw.scalar("SELECT outcome || ' ' || at_status || ' ' || last_screen FROM ussd_sessions "
                           "WHERE session_id = :s", s=phone.session.session_id) == "completed Success acct.bal.show"
    for bad in ({}, {"sessionId": "x"}, {"sessionId": "x", "status": "Exploded"}, {"status": "Success"}):
        status, _, _ = await post_form(gw, "/ussd/events", bad)
        assert status == 400
    assert await gw.scalar("SELECT count(*) FROM ussd_sessions WHERE session_id = 'x'") == 0
    # Counts no number reads ("²" is a digit to Python, not to int) or no column holds are left out.
    for hops in ("²", "99999999999"):
        odd = {**event, "sessionId": f"ATUid_odd_{uuid.uuid4().hex}", "hopsCount": hops}
        assert (await post_form(gw, "/ussd/events", odd))[::2] == (200, "OK"), hops
        assert await gw.scalar("SELECT hops FROM ussd_sessions WHERE session_id = :s", s=odd["sessionId"]) is None


async def test_a_confirmation_resumed_after_its_pin_hop_paid_pays_no_second_time(gw, phone_for):
    """The PIN hop's payment committed, then its session could not be saved (the store failed): the
    caller sees an error, dials again and resumes at the confirmation. Its PIN replays that payment."""
    payer = await customer(gw, funds=1000)
    payee = await customer(gw, name="Otieno Were")
    first = phone_for(payer.phone)
    await run(first, [Dial(), Type("1"), Type(payee.phone), Type("200"), See("send.confirm")])
    store = gw.app[USSD_SESSIONS]
    save, failed = store.save, []

    async def fails_once(state, **kwargs):
        if not failed:
            failed.append(state.session_id)
            raise ConnectionError("the session store timed out")
        return await save(state, **kwargs)

    store.save = fails_once
    try:
        await first.type(PIN)
    finally:
        store.save = save
    assert failed and "Sorry" in first.screen

    again = phone_for(payer.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("send.confirm"), Type(PIN), See("send.done"), Ends()])

    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 1
    assert await gw.wallet(payee) == Money.of(200, KES)


async def test_a_session_past_a_pin_check_is_not_resumed_by_the_next_dial(gw, phone_for):
    """The owner typed the current PIN on the way to a new one, and walked away: whoever dials next
    starts afresh, and must know the PIN to change it."""
    payer = await customer(gw, funds=100)
    owner = phone_for(payer.phone)
    await run(owner, [Dial(), Type("6"), Type("3"), See("acct.pin.old"), Type(PIN), See("acct.pin.new")])
    other = phone_for(payer.phone)
    await run(other, [Dial(), See("home"), Continues()])


async def test_control_characters_in_callbacks_are_dropped_and_sessions_recorded(gw, phone_for):
    """Africa's Talking sends none, but a NUL in any field (which PostgreSQL cannot store) must not
    turn a session's end into an error: every field is taken without its control characters."""
    payer = await customer(gw, funds=10)
    phone = phone_for(payer.phone)
    phone.service_code = "*384*1#\x00"
    await run(phone, [Dial(), Type("6\x1b"), See("acct.menu"), Type("1"), Type(PIN), See("acct.bal.show"), Ends()])
    session_id = phone.session.session_id
    assert await gw.scalar("SELECT service_code || ' ' || outcome FROM ussd_sessions WHERE session_id = :s",
                           s=session_id) == "*384*1# completed"
    event = {"sessionId": session_id + "\x00", "status": "Success", "phoneNumber": payer.phone + "\x00",
             "networkCode": "639\x0002", "errorMessage": "\x00", "durationInMillis": "9000"}
    assert (await post_form(gw, "/ussd/events", event))[::2] == (200, "OK")
    assert await gw.scalar("SELECT network_code FROM ussd_sessions WHERE session_id = :s", s=session_id) == "63902"


async def test_concurrent_sessions_of_one_number_each_pay_once(gw, phone_for):
    payer = await customer(gw, funds=1000)
    payees = [await customer(gw, name=f"Payee {n}") for n in range(3)]
    phones = [phone_for(payer.phone) for _ in payees]
    await asyncio.gather(*(p.dial() for p in phones))
    await asyncio.gather(*(p.type("1") for p in phones))
    await asyncio.gather(*(p.type(payee.phone) for p, payee in zip(phones, payees, strict=True)))
    await asyncio.gather(*(p.type(str(100 * (n + 1))) for n, p in enumerate(phones)))
    screens = await asyncio.gather(*(p.type(PIN) for p in phones))
    assert all(s.startswith("Sent") for s in screens), screens
    for n, payee in enumerate(payees):
        assert await gw.wallet(payee) == Money.of(100 * (n + 1), KES)
    assert await gw.wallet(payer) == Money.of(1000 - 600 - 6, KES)


async def test_provider_refusals_and_failures_are_clear(gw, phone_for):
    payer = await customer(gw, funds=2000)
    refused = phone_for(payer.phone)  # a Senegalese number cannot get M-Pesa shillings
    await run(refused, [Dial(), Type("1"), Type("+221771234567"), Type("100"), See("err.recipient"), See("send.to"),
                        Type(payer.phone), See("send.amount"), Type("100"), See("err.self"), See("send.to"),
                        Continues()])
    # M-Pesa refuses the payout (the sandbox's "001": insufficient funds at the provider): the screen
    # said what happens next, the money comes back, the SMS says it failed.
    failing = phone_for(payer.phone)
    recipient = phone_number(suffix="001")
    await run(failing, [Dial(), Type("1"), Type(recipient), Type("400"), Type(PIN), See("send.pending"), Ends()])
    reference = failing.reference()
    done = await wait_for(gw, reference)
    assert done.status is PaymentStatus.FAILED
    assert await gw.wallet(payer) == Money.of(2000, KES)
    failed = en("sms.failed", ref=reference, what=en("sms.what.payment"), amount="Ksh 400")
    assert await sms_saying(gw, payer.phone, reference) == failed


async def test_no_pin_in_logs_or_in_the_session_store(gw, phone_for, caplog):
    payer = await customer(gw, funds=300, pin="8642")
    phone = phone_for(payer.phone)
    with caplog.at_level(logging.DEBUG):
        await run(phone, [Dial(), Type("4"), Type("1"), Type("100"), Type("8642"), See("wd.pending")])
        state = await gw.app[USSD_SESSIONS].load(phone.session.session_id)
    assert "8642" not in caplog.text
    assert "8642" not in state.dumps()
