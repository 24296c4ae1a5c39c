"""The app API as a phone app meets it, on the gateway `sauti serve` builds (real TCP port, its own
orchestrator, worker and sandbox providers): a device signs in with the wallet's PIN and gets a key
of its own, wrong PINs count towards the lock-out as on USSD, the key manages the user's contacts
(and nobody else's), signs out, and pays through the payments API, which adds the recipient to the
contacts by itself."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from gateway.keys import API_KEY_HASHER, PINS
from payments.api_keys import create_api_key
from payments.identities import User
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import Gateway, free_port, gateway_settings, running_gateway, wait_for

KES = Currency.KES
PIN = "2580"
PEPPER = "e2e-app-pepper"
CAP = 3
#: Failed sign-ins one client may make (kept small so a test reaches it); every request comes from a
#: client address of its own (`call`'s X-Forwarded-For, believed from 127.0.0.1) unless it names one.
SIGN_IN_LIMIT = 4


@pytest.fixture(scope="module")
async def gw(new_database) -> AsyncIterator[Gateway]:
    settings = gateway_settings(await new_database(), free_port(), api={"key_pepper": PEPPER},
                                payments={"max_contacts_per_user": CAP},
                                security={"sign_in_failures_per_client": SIGN_IN_LIMIT,
                                          "trusted_proxies": ["127.0.0.1"]})
    async with running_gateway(settings) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(gw: Gateway) -> AsyncIterator[None]:
    yield
    await gw.assert_ledger_ok()


async def call(gw: Gateway, method: str, path: str, body: Any = None, *, key: str | None = None,
               raw: bytes | None = None, client: str | None = None) -> tuple[int, Any, dict[str, str]]:
    """One request from ``client`` (a new address when None): ``body`` sent as JSON (``raw`` as it
    is); the status, the JSON answer (None when empty) and the headers."""
    headers = {"Content-Type": "application/json", "X-Forwarded-For": client or new_client(),
               **({"Authorization": f"Bearer {key}"} if key else {})}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with aiohttp.ClientSession() as http, http.request(method, gw.url + path, data=data,
                                                             headers=headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None, dict(resp.headers)


async def customer(gw: Gateway, *, name: str = "Amina Njoroge", funds: int = 0) -> User:
    user = await gw.user(name=name)
    async with gw.engine.begin() as conn:
        await gw.app[PINS].set_pin(conn, user.id, PIN)
    if funds:
        await gw.fund(user, Money.of(funds, KES))
    return user


async def sign_in(gw: Gateway, user: User, device: str = "Tecno Spark") -> str:
    status, answer, _ = await call(gw, "POST", "/v1/devices", {"phone": user.phone, "pin": PIN,
                                                               "device_name": device})
    assert status == 201, answer
    return answer["api_key"]


def new_client() -> str:
    """An address no other request comes from (TEST-NET-3 and friends are too small to be sure)."""
    n = uuid.uuid4().int
    return f"10.{n % 256}.{(n >> 8) % 256}.{(n >> 16) % 256}"


def kenyan(suffix: str = "123") -> str:
    return f"+2547{uuid.uuid4().int % 10**5:05d}{suffix}"


async def test_a_device_signs_in_with_the_pin_and_its_key_manages_the_users_contacts(gw: Gateway):
    user = await customer(gw)
    local = "0" + kenyan().removeprefix("+254")

    status, signed, _ = await call(gw, "POST", "/v1/devices", {"phone": user.phone.removeprefix("+"), "pin": PIN,
                                                               "device_name": "Tecno Spark 10"})

    assert status == 201, signed
    key = signed["api_key"]
    assert key.startswith("sk_") and signed["key"]["name"] == "device: Tecno Spark 10"
    assert signed["user"] == {"phone": user.phone, "name": "Amina Njoroge", "language": "en"}
    assert await gw.scalar("SELECT count(*) FROM api_keys WHERE user_id = :u AND name = 'device: Tecno Spark 10'",
                           u=user.id) == 1
    assert (await call(gw, "GET", "/v1/contacts", key=key))[:2] == (200, {"contacts": [], "limit": CAP})

    status, mama, _ = await call(gw, "POST", "/v1/contacts", {"name": "Mama", "phone": local, "nickname": "Mum"},
                                 key=key)
    assert status == 201, mama
    assert (mama["name"], mama["nickname"], mama["phone"], mama["favourite"]) == (
        "Mama", "Mum", "+254" + local[1:], False)
    assert (mama["times_paid"], mama["total_sent"], mama["last_paid_at"]) == (0, [], None)
    status, baba, _ = await call(gw, "POST", "/v1/contacts", {"name": "Baba", "phone": kenyan(),
                                                              "favourite": True}, key=key)
    assert status == 201, baba

    status, changed, _ = await call(gw, "PATCH", f"/v1/contacts/{mama['id']}",
                                    {"nickname": None, "favourite": True, "name": "Mama Njeri"}, key=key)
    assert status == 200, changed
    assert (changed["name"], changed["nickname"], changed["favourite"]) == ("Mama Njeri", None, True)
    status, listed, _ = await call(gw, "GET", "/v1/contacts", key=key)
    assert [c["name"] for c in listed["contacts"]] == ["Baba", "Mama Njeri"]
    assert (await call(gw, "GET", f"/v1/contacts/{mama['id']}", key=key))[1] == changed

    status, gone, _ = await call(gw, "DELETE", f"/v1/contacts/{baba['id']}", key=key)
    assert (status, gone) == (204, None)
    status, missing, _ = await call(gw, "GET", f"/v1/contacts/{baba['id']}", key=key)
    assert (status, missing["error"]["code"]) == (404, "contact_not_found")
    # The same key reads the user's wallet through the payments API: it acts for that wallet.
    assert (await call(gw, "GET", f"/v1/wallets/{user.phone}/history", key=key))[0] == 200


async def test_wrong_pins_count_towards_the_lock_out_as_on_ussd(gw: Gateway):
    user = await customer(gw, name="Kamau")
    wrong = {"phone": user.phone, "pin": "1357", "device_name": "phone"}

    answers = [await call(gw, "POST", "/v1/devices", wrong) for _ in range(3)]

    assert [(s, a["error"]["code"], a["error"].get("attempts_left")) for s, a, _ in answers[:2]] == [
        (401, "invalid_credentials", 2), (401, "invalid_credentials", 1)]
    status, locked, headers = answers[2]
    assert (status, locked["error"]["code"]) == (423, "account_locked")
    until = datetime.fromisoformat(locked["error"]["locked_until"])
    assert 14 * 60 < (until - datetime.now(UTC)).total_seconds() <= 15 * 60
    assert 14 * 60 < int(headers["Retry-After"]) <= 15 * 60
    # Committed although each request failed: the wallet is locked, the right PIN waits too.
    assert await gw.scalar("SELECT status FROM users WHERE id = :u", u=user.id) == "locked"
    status, still, _ = await call(gw, "POST", "/v1/devices", {**wrong, "pin": PIN})
    assert (status, still["error"]["code"]) == (423, "account_locked")
    assert await gw.scalar("SELECT count(*) FROM api_keys WHERE user_id = :u", u=user.id) == 0


async def test_a_number_without_a_wallet_gets_the_answer_of_a_wrong_pin(gw: Gateway):
    status, answer, _ = await call(gw, "POST", "/v1/devices", {"phone": kenyan(), "pin": PIN,
                                                               "device_name": "phone"})
    assert status == 401
    assert answer["error"]["code"] == "invalid_credentials"
    assert answer["error"]["message"] == "Wrong phone number or PIN."


async def test_a_wallet_with_no_pin_or_closed_answers_as_no_wallet_and_counts_against_the_client(gw: Gateway):
    # Otherwise a 422 pin_not_set or a 403 account_closed, never counted, would tell anyone without
    # limit which numbers are registered.
    client = new_client()
    no_pin = await gw.user(name="No PIN yet")
    closed = await customer(gw, name="Closed")
    async with gw.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE users SET status = 'closed' WHERE id = $1", (closed.id,))
    _, unknown, _ = await call(gw, "POST", "/v1/devices", {"phone": kenyan(), "pin": PIN, "device_name": "x"},
                               client=client)
    tries = [{"phone": user.phone, "pin": PIN, "device_name": "x"} for user in (no_pin, closed, no_pin)]
    answers = [await call(gw, "POST", "/v1/devices", body, client=client) for body in tries]

    assert [(status, answer) for status, answer, _ in answers] == [(401, unknown)] * 3
    status, refused, _ = await call(gw, "POST", "/v1/devices", tries[1], client=client)
    assert (status, refused["error"]["code"]) == (429, "too_many_attempts")  # 4 failures: the limit
    assert await gw.scalar("SELECT count(*) FROM api_keys WHERE user_id IN (:a, :b)", a=no_pin.id, b=closed.id) == 0


async def test_sign_ins_sent_at_the_same_moment_are_counted_one_by_one(gw: Gateway):
    # Counted after the PIN check, twenty guesses sent at once all passed a limit of four.
    client = new_client()
    wallets = [await customer(gw, name=f"Burst {n}") for n in range(10)]
    tries = [{"phone": w.phone, "pin": pin, "device_name": "x"} for w in wallets for pin in ("1357", "2468")]

    answers = await asyncio.gather(*(call(gw, "POST", "/v1/devices", body, client=client) for body in tries))

    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [401] * SIGN_IN_LIMIT + [429] * (len(tries) - SIGN_IN_LIMIT), statuses


async def test_one_clients_failed_sign_ins_across_many_wallets_are_cut_off(gw: Gateway):
    # PIN spraying: two common PINs on each wallet stays under every wallet's lock-out.
    client = new_client()
    wallets = [await customer(gw, name=f"Spray {n}") for n in range(3)]
    tries = [{"phone": w.phone, "pin": pin, "device_name": "x"} for w in wallets for pin in ("1357", "2468")]
    answers = [await call(gw, "POST", "/v1/devices", body, client=client) for body in tries]

    assert [status for status, _, _ in answers] == [401] * SIGN_IN_LIMIT + [429] * (len(tries) - SIGN_IN_LIMIT)
    status, refused, headers = answers[-1]
    assert refused["error"]["code"] == "too_many_attempts"
    assert 14 * 60 < int(headers["Retry-After"]) <= 15 * 60
    # Refused before the PIN was looked at: even the right PIN waits, and the wallets' counts did not move.
    status, _, _ = await call(gw, "POST", "/v1/devices", {"phone": wallets[2].phone, "pin": PIN,
                                                          "device_name": "x"}, client=client)
    assert status == 429
    assert await gw.scalar("SELECT failed_pin_attempts FROM users WHERE id = :u", u=wallets[2].id) == 0
    # Unknown numbers count too, and other clients are not affected.
    assert (await call(gw, "POST", "/v1/devices", {"phone": kenyan(), "pin": PIN, "device_name": "x"},
                       client=client))[0] == 429
    await sign_in(gw, wallets[2])


async def test_a_successful_sign_in_does_not_count_against_the_client(gw: Gateway):
    client = new_client()
    user = await customer(gw, name="Wanjiru")
    for _ in range(SIGN_IN_LIMIT + 1):
        status, answer, _ = await call(gw, "POST", "/v1/devices", {"phone": user.phone, "pin": PIN,
                                                                    "device_name": "x"}, client=client)
        assert status == 201, answer


async def test_signing_out_revokes_the_calling_key_only(gw: Gateway):
    user = await customer(gw, name="Zawadi")
    first, second = await sign_in(gw, user, "old phone"), await sign_in(gw, user, "new phone")

    status, answer, _ = await call(gw, "DELETE", "/v1/devices/current", key=first)

    assert status == 200 and answer["revoked"]["name"] == "device: old phone"
    assert (await call(gw, "GET", "/v1/contacts", key=first))[0] == 401
    assert (await call(gw, "GET", "/v1/contacts", key=second))[0] == 200
    async with gw.engine.begin() as conn:
        platform = (await create_api_key(conn, gw.app[API_KEY_HASHER], "a backend")).secret
    status, refused, _ = await call(gw, "DELETE", "/v1/devices/current", key=platform)
    assert (status, refused["error"]["code"]) == (403, "forbidden")
    assert (await call(gw, "GET", f"/v1/contacts?phone={user.phone}", key=platform))[0] == 200


async def test_another_users_contacts_are_not_found(gw: Gateway):
    owner, stranger = await customer(gw, name="Owner"), await customer(gw, name="Stranger")
    owner_key, stranger_key = await sign_in(gw, owner), await sign_in(gw, stranger)
    status, theirs, _ = await call(gw, "POST", "/v1/contacts", {"name": "Otieno", "phone": kenyan()}, key=owner_key)
    assert status == 201

    for method, body in (("GET", None), ("PATCH", {"name": "Mine"}), ("DELETE", None)):
        status, answer, _ = await call(gw, method, f"/v1/contacts/{theirs['id']}", body, key=stranger_key)
        assert (status, answer["error"]["code"]) == (404, "contact_not_found"), method
    status, answer, _ = await call(gw, "GET", f"/v1/contacts?phone={owner.phone}", key=stranger_key)
    assert (status, answer["error"]["code"]) == (404, "wallet_not_found")
    status, listed, _ = await call(gw, "GET", "/v1/contacts", key=owner_key)
    assert [c["name"] for c in listed["contacts"]] == ["Otieno"]
    # A platform key must say whose contacts it means.
    async with gw.engine.begin() as conn:
        platform = (await create_api_key(conn, gw.app[API_KEY_HASHER], "a backend")).secret
    status, answer, _ = await call(gw, "GET", "/v1/contacts", key=platform)
    assert (status, answer["error"]["code"]) == (400, "missing_phone")
    status, listed, _ = await call(gw, "GET", f"/v1/contacts?phone={owner.phone}", key=platform)
    assert [c["id"] for c in listed["contacts"]] == [theirs["id"]]


@pytest.mark.parametrize(("method", "path", "raw", "status", "code"), [
    ("POST", "/v1/devices", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/devices", b'["phone"]', 400, "invalid_json"),
    ("POST", "/v1/devices", b'{"phone": "+254712345678", "pin": 2580, "device_name": "x"}', 400, "invalid_pin"),
    ("POST", "/v1/devices", b'{"phone": "+254712345678", "pin": "2580"}', 400, "missing_device_name"),
    ("POST", "/v1/devices", b'{"phone": "12", "pin": "2580", "device_name": "x"}', 400, "invalid_phone"),
    ("POST", "/v1/devices", b'{"phone": "+254712345678", "pin": "2580", "device_name": "x", "os": "y"}', 400,
     "unknown_field"),
    ("POST", "/v1/contacts", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/contacts", b'{"name": "Mama"}', 400, "missing_phone"),
    ("POST", "/v1/contacts", b'{"name": "Mama", "phone": "999"}', 400, "invalid_contact"),
    ("POST", "/v1/contacts", b'{"name": "Mama", "phone": "+254712345678", "favourite": "yes"}', 400,
     "invalid_favourite"),
    ("POST", "/v1/contacts", b'{"name": "Mama", "phone": "+254712345678", "relationship": "mother"}', 400,
     "unknown_field"),
    ("PATCH", "/v1/contacts/1", b"{}", 400, "nothing_to_change"),
    ("PATCH", "/v1/contacts/1", b'{"name": null}', 400, "invalid_name"),
    ("PATCH", "/v1/contacts/1", b"[", 400, "invalid_json"),
    ("GET", "/v1/contacts/abc", None, 404, "contact_not_found"),
    ("GET", "/v1/contacts?sort=name", None, 400, "unknown_query_parameter"),
])
async def test_bad_requests_get_a_clear_json_error_and_change_nothing(gw: Gateway, method, path, raw, status, code):
    user = await customer(gw, name="Careful")
    key = await sign_in(gw, user)
    keys_before = await gw.scalar("SELECT count(*) FROM api_keys")

    got, answer, _ = await call(gw, method, path, key=key, raw=raw)

    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"]
    assert await gw.scalar("SELECT count(*) FROM contacts WHERE user_id = :u", u=user.id) == 0
    assert await gw.scalar("SELECT count(*) FROM api_keys") == keys_before


async def test_a_key_is_needed_for_contacts(gw: Gateway):
    status, answer, headers = await call(gw, "GET", "/v1/contacts")
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert (await call(gw, "GET", "/v1/contacts", key="sk_notakey"))[0] == 401


async def test_a_number_saved_twice_is_a_conflict_and_the_cap_a_refusal(gw: Gateway):
    user = await customer(gw, name="Collector")
    key = await sign_in(gw, user)
    number = kenyan()
    status, first, _ = await call(gw, "POST", "/v1/contacts", {"name": "Juma", "phone": number}, key=key)
    assert status == 201

    status, twice, _ = await call(gw, "POST", "/v1/contacts", {"name": "Juma 2", "phone": number[1:]}, key=key)

    assert (status, twice["error"]["code"], twice["error"]["contact_id"]) == (409, "duplicate_contact", first["id"])
    for name in ("Two", "Three"):
        assert (await call(gw, "POST", "/v1/contacts", {"name": name, "phone": kenyan()}, key=key))[0] == 201
    status, capped, _ = await call(gw, "POST", "/v1/contacts", {"name": "Four", "phone": kenyan()}, key=key)
    assert (status, capped["error"]["code"]) == (422, "contact_limit_reached")


async def test_sends_through_the_payments_api_with_the_device_key_add_the_recipients(gw: Gateway):
    user = await customer(gw, name="Payer", funds=3000)
    friend = await gw.user(name="Halima Said")
    key = await sign_in(gw, user)
    p2p = {"kind": "p2p", "amount": "500", "currency": "KES", "recipient": friend.phone}

    status, paid, _ = await call(gw, "POST", "/v1/payments", p2p, key=key, raw=None)
    assert status == 400 and paid["error"]["code"] == "idempotency_key_required"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "send-1"}
    for expected in (201, 200):  # the second is a retry: the same payment, not counted again
        status, paid = await gw.post("/v1/payments", json.dumps(p2p), headers)
        assert status == expected and paid["status"] == "succeeded", paid
    number = kenyan()  # no Sauti wallet: paid by M-Pesa B2C, counted when M-Pesa has paid
    status, payout = await gw.post("/v1/payments", json.dumps(
        {"kind": "send_to_phone", "amount": "200", "currency": "KES", "recipient": number}),
        {**headers, "Idempotency-Key": "send-2"})
    assert status == 201, payout
    assert (await wait_for(gw, payout["public_id"])).status is PaymentStatus.SUCCEEDED

    status, listed, _ = await call(gw, "GET", "/v1/contacts", key=key)

    assert status == 200
    found = {c["phone"]: c for c in listed["contacts"]}
    assert (found[friend.phone]["name"], found[friend.phone]["times_paid"]) == ("Halima Said", 1)
    assert found[friend.phone]["total_sent"] == [{"currency": "KES", "amount": "500.00", "amount_minor": 50000,
                                                  "display": "KES 500"}]
    assert (found[number]["name"], found[number]["times_paid"]) == (number, 1)
    assert found[number]["last_paid_at"] is not None
