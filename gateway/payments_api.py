"""The JSON payments API for apps and merchants: ``/v1/payments`` (make one, read one, list them),
``/v1/quotes`` and wallet history, authenticated by API keys (`payments.api_keys`).

Every call carries ``Authorization: Bearer sk_…``; a missing, malformed, unknown or revoked key is a
401 that never says which. A user key acts for its own wallet, reads the payments its user made or
received and refunds only what its user received; a platform key names the payer
(``"payer": "+2547…"``) and may read any payment or wallet. What a key may not see is a 404.
``GET /v1/payments`` lists, newest first, a user key's user's payments (made or received) and a
platform key's own (those its requests made).

Amounts in requests are **major units as a decimal string** (``"1500.00"``, ``"5000"``); a JSON
number is read from its digits, never through a float, and one with more decimals than the
currency has is refused. Answers give every amount twice: the same decimal string and an integer
count of minor units (``amount_minor``), plus a display string (``KES 1,500``).

``POST /v1/payments`` needs an ``Idempotency-Key`` header, scoped to the API key: the same key and
body give back the same payment (200), the same key with another body is a 409, a new payment is
a 201. Errors are ``{"error": {"code", "message"}}``: 400 bad input, 401, 403, 404, 409, 413, 422
(a business refusal, such as a limit). Bad input is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.api_auth import authenticated, ensure_key_hasher, wallet_owner
from gateway.api_requests import (
    ApiError,
    amount_field,
    currency_param,
    int_param,
    json_body,
    only,
    text_field,
)
from gateway.api_views import event_json, payment_json, quote_json, wallet_json
from gateway.keys import DB_ENGINE, PAYMENTS, SETTINGS
from payments import payment_store as store
from payments.accounts import wallet_statement
from payments.api_keys import PREFIX_LENGTH, ApiKey
from payments.commands import (
    REFUND_KEY_PREFIX,
    BuyGoods,
    Channel,
    Command,
    Deposit,
    PayBill,
    PaymentKind,
    PayPochi,
    Refund,
    SendToPhone,
    SendToWallet,
    Withdraw,
)
from payments.errors import IdempotencyConflict
from payments.identities import User, find_user_by_phone, get_user
from payments.payment_records import PaymentFilter, search_payments
from payments.payment_store import Payment
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.postings import MAX_KEY_LENGTH
from payments.refunds import rests_on_operator

#: Our idempotency keys are ``api:<key prefix>:<the caller's key>``: two integrators who both send
#: ``Idempotency-Key: 1`` for one payer get two payments, not each other's.
_KEY_NAMESPACE = "api"
#: What the caller may use of `MAX_KEY_LENGTH`: our namespace and, for a refund, its own prefix take the rest.
MAX_IDEMPOTENCY_KEY = MAX_KEY_LENGTH - len(REFUND_KEY_PREFIX) - len(f"{_KEY_NAMESPACE}::") - PREFIX_LENGTH


def add_payment_api_routes(app: web.Application) -> None:
    """Mount the API on ``app``, which holds (or will hold, once started) `SETTINGS`, `DB_ENGINE`
    and `PAYMENTS`."""
    ensure_key_hasher(app)
    app.router.add_post("/v1/payments", authenticated(create_payment))
    app.router.add_get("/v1/payments", authenticated(list_payments))
    app.router.add_get("/v1/payments/{public_id}", authenticated(read_payment))
    app.router.add_post("/v1/quotes", authenticated(create_quote))
    app.router.add_get("/v1/wallets/{phone}/history", authenticated(wallet_history))


# -- POST /v1/payments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _KindSpec:
    """What one payment kind takes from a request body, and the command it becomes."""

    fields: frozenset[str]
    build: Callable[[dict[str, Any], Mapping[str, Any]], Command]


def _send_to_wallet(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return SendToWallet(**base, recipient_phone=text_field(body, "recipient"))


def _send_to_phone(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return SendToPhone(**base, recipient_phone=text_field(body, "recipient"))


def _withdraw(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return Withdraw(**base, phone=text_field(body, "phone", required=False))


def _deposit(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return Deposit(**base, phone=text_field(body, "phone", required=False))


def _pay_bill(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return PayBill(**base, paybill=text_field(body, "paybill"), account_number=text_field(body, "account_number"))


def _buy_goods(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return BuyGoods(**base, till=text_field(body, "till"))


def _pay_pochi(base: dict[str, Any], body: Mapping[str, Any]) -> Command:
    return PayPochi(**base, phone=text_field(body, "recipient"))


_COMMON_FIELDS = frozenset({"kind", "payer", "amount", "currency"})
KINDS: Mapping[str, _KindSpec] = MappingProxyType({
    PaymentKind.P2P.value: _KindSpec(frozenset({"recipient"}), _send_to_wallet),
    PaymentKind.SEND_TO_PHONE.value: _KindSpec(frozenset({"recipient"}), _send_to_phone),
    PaymentKind.WITHDRAW.value: _KindSpec(frozenset({"phone"}), _withdraw),
    PaymentKind.DEPOSIT.value: _KindSpec(frozenset({"phone"}), _deposit),
    PaymentKind.PAY_BILL.value: _KindSpec(frozenset({"paybill", "account_number"}), _pay_bill),
    PaymentKind.BUY_GOODS_TILL.value: _KindSpec(frozenset({"till"}), _buy_goods),
    PaymentKind.BUY_GOODS_POCHI.value: _KindSpec(frozenset({"recipient"}), _pay_pochi),
})
#: A refund names the payment it undoes (always whole): no payer, amount or currency of its own.
_REFUND_FIELDS = frozenset({"kind", "payment", "reason"})
_KIND_NAMES = ", ".join([*KINDS, PaymentKind.REFUND.value])


def scoped_idempotency_key(request: web.Request, caller: ApiKey, *, most: int = MAX_IDEMPOTENCY_KEY,
                           why: str = "the same payment, so a retry never pays twice") -> str:
    """The request's ``Idempotency-Key``, at most ``most`` characters, in the caller's namespace."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiError(400, "idempotency_key_required",
                       f"Send an Idempotency-Key header: the same key and body always give back {why}.")
    if len(key) > most or not key.isprintable():
        raise ApiError(400, "invalid_idempotency_key", f"An Idempotency-Key is 1 to {most} printable characters.")
    return f"{_KEY_NAMESPACE}:{caller.prefix}:{key}"


async def create_payment(request: web.Request, caller: ApiKey) -> web.Response:
    scoped_key = scoped_idempotency_key(request, caller)
    body = await json_body(request)
    kind = text_field(body, "kind")
    if kind == PaymentKind.REFUND.value:
        return await _create_refund(request, caller, body, scoped_key)
    spec = KINDS.get(kind)
    if spec is None:
        raise ApiError(400, "invalid_kind", f"kind is one of {_KIND_NAMES}.")
    only(body, _COMMON_FIELDS | spec.fields)
    engine = request.app[DB_ENGINE]
    async with engine.connect() as conn:
        payer = await payer_of(conn, caller, body)
    amount = amount_field(body)
    command = spec.build({"idempotency_key": scoped_key, "payer_user_id": payer.id, "amount": amount,
                          "channel": Channel.API, "api_key_id": caller.id}, body)
    async with engine.connect() as conn:
        existing = await store.find_by_key(conn, payer.id, scoped_key)
        if existing is None and caller.is_platform:
            # Keys are the API key's, not the payer's: a platform key's key used for another payer
            # is another request. (Two such requests at the same instant are not caught: a client
            # that sends them has already lost track of its keys.)
            other = await store.find_by_api_key(conn, caller.id, scoped_key)
            if other is not None:
                raise IdempotencyConflict(scoped_key, other.id)
    payment = await request.app[PAYMENTS].handle(command)
    # A replay answers 200 with the first payment; a conflict was raised above as a 409.
    return web.json_response(payment_json(payment, payer.phone), status=200 if existing is not None else 201)


async def _create_refund(request: web.Request, caller: ApiKey, body: Mapping[str, Any],
                         scoped_key: str) -> web.Response:
    """Undo a succeeded payment, whole. A user key may refund only what was paid TO its user (a
    merchant giving a customer their money back, from its own wallet); a platform key any payment,
    except an M-Pesa payout: M-Pesa has nothing to ask for it, so crediting the payer rests on an
    operator having seen M-Pesa reverse it (`sauti` operators, not API callers)."""
    only(body, _REFUND_FIELDS)
    public_id = text_field(body, "payment")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise ApiError(400, "invalid_reason", "reason is required: a sentence saying why (at most 500 characters).")
    engine = request.app[DB_ENGINE]
    async with engine.connect() as conn:
        original = await store.find_payment(conn, public_id)
        if original is None or (not caller.is_platform and original.recipient_user_id != caller.user_id):
            raise ApiError(404, "payment_not_found", f"No payment {public_id[:40]!r} this API key may refund.")
        if rests_on_operator(original):
            raise ApiError(403, "refund_needs_operator", "An M-Pesa payout is refunded by an operator once M-Pesa "
                           "has reversed it; it cannot be refunded through the API.")
        command = Refund(scoped_key, original.public_id, reason.strip(), requested_by=f"api_key:{caller.prefix}",
                         api_key_id=caller.id)
        existing = await store.find_by_key(conn, original.payer_user_id, command.stored_key)
        if existing is None:
            # Keys are the API key's (as for payments): one used for a refund of another payer's
            # payment is another request.
            other = await store.find_by_api_key(conn, caller.id, command.stored_key)
            if other is not None:
                raise IdempotencyConflict(command.stored_key, other.id)
        payer = await get_user(conn, original.payer_user_id)
    refund = await request.app[PAYMENTS].handle(command)
    answer = payment_json(refund, payer.phone) | {"refund_of": original.public_id}
    return web.json_response(answer, status=200 if existing is not None else 201)


async def payer_of(conn, caller: ApiKey, body: Mapping[str, Any]) -> User:
    """Who pays: the key's own user, or (platform keys) the ``payer`` the body names."""
    return await own_or_named_wallet(conn, caller, body, "payer")


async def own_or_named_wallet(conn, caller: ApiKey, body: Mapping[str, Any], field: str) -> User:
    """The key's own user (the body may name them in ``field``, no one else), or, for a platform key,
    the wallet the body's ``field`` names (required)."""
    named = text_field(body, field, required=caller.is_platform)
    phone = None
    if named is not None:
        try:
            phone = parse_msisdn(named)
        except InvalidPhoneNumber as exc:
            raise ApiError(400, f"invalid_{field}", str(exc)) from None
    if not caller.is_platform:
        if phone is not None and phone != caller.user_phone:
            raise ApiError(403, "forbidden", "This API key acts for its own wallet only.")
        return await get_user(conn, caller.user_id)
    found = await find_user_by_phone(conn, phone)
    if found is None:
        raise ApiError(404, f"unknown_{field}", f"{phone} has no Sauti wallet.")
    return found


# -- GET /v1/payments/{public_id} ------------------------------------------------------------------


async def read_payment(request: web.Request, caller: ApiKey) -> web.Response:
    public_id = request.match_info["public_id"]
    not_found = ApiError(404, "payment_not_found", f"No payment {public_id[:40]!r} for this API key.")
    async with request.app[DB_ENGINE].connect() as conn:
        payment = await store.find_payment(conn, public_id)
        # A user key sees the payments its user made or received (a merchant follows the refunds it
        # asked for); anyone else's is "not found", never "forbidden", so ids cannot be probed.
        if payment is None or (not caller.is_platform
                               and caller.user_id not in (payment.payer_user_id, payment.recipient_user_id)):
            raise not_found
        return web.json_response(await payment_with_events(conn, payment))


async def list_payments(request: web.Request, caller: ApiKey) -> web.Response:
    """``GET /v1/payments?status=&kind=&limit=&before=``: newest first, what this key may read one by
    one: a user key's user made or received, a platform key's own requests made."""
    query = request.query
    only(query, {"status", "kind", "limit", "before"}, where="query parameter")
    most = request.app[SETTINGS].api.history_max_limit
    limit = int_param(query, "limit", default=min(20, most), low=1, high=most)
    before = int_param(query, "before", default=None, low=1, high=2**63 - 1)
    wanted = PaymentFilter(status=query.get("status") or None, kind=query.get("kind") or None,
                           **({"api_key_id": caller.id} if caller.is_platform else {"party_user_id": caller.user_id}))
    async with request.app[DB_ENGINE].connect() as conn:
        found = await search_payments(conn, wanted, limit=limit, before=before)
    return web.json_response({
        "payments": [payment_json(item.payment, item.payer_phone) for item in found],
        "limit": limit,
        # More may follow: pass it as ``before`` for the next (older) page.
        "next_before": found[-1].payment.id if len(found) == limit else None,
    })


async def payment_with_events(conn: AsyncConnection, payment: Payment) -> dict[str, Any]:
    """A payment as `GET /v1/payments/{id}` answers it (and `sauti payment show` prints it): with
    every transition it went through and the payment it refunds."""
    payer = await get_user(conn, payment.payer_user_id)
    events = await store.events_of(conn, payment.id)
    original = await store.get_payment_by_id(conn, payment.refund_of) if payment.refund_of else None
    answer = payment_json(payment, payer.phone) | {"events": [event_json(e) for e in events]}
    if original is not None:
        answer["refund_of"] = original.public_id
    return answer


# -- POST /v1/quotes -------------------------------------------------------------------------------


#: What a quote may price: the kinds ``POST /v1/payments`` makes with an amount of their own. A
#: refund gives a whole payment back (its price is the payment's), and an agent's cash-in or
#: cash-out is priced at the agent's counter, not through this API.
_QUOTED_KINDS = ", ".join(KINDS)


async def create_quote(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"kind", "payer", "amount", "currency", "recipient"})
    kind_text = text_field(body, "kind", required=False) or PaymentKind.P2P.value
    if kind_text not in KINDS:
        raise ApiError(400, "invalid_kind", f"A quote prices a payment of one of these kinds: {_QUOTED_KINDS} "
                       "(a refund gives back a whole payment; agents price cash-ins and cash-outs).")
    async with request.app[DB_ENGINE].connect() as conn:
        payer = await payer_of(conn, caller, body)
    amount = amount_field(body)
    priced = await request.app[PAYMENTS].quote(payer.id, amount, kind=PaymentKind(kind_text),
                                               recipient_phone=text_field(body, "recipient", required=False))
    return web.json_response(quote_json(priced, kind_text))


# -- GET /v1/wallets/{phone}/history ---------------------------------------------------------------


async def wallet_history(request: web.Request, caller: ApiKey) -> web.Response:
    query = request.query
    only(query, {"limit", "before", "currency"}, where="query parameter")
    most = request.app[SETTINGS].api.history_max_limit
    limit = int_param(query, "limit", default=min(20, most), low=1, high=most)
    before = int_param(query, "before", default=None, low=1, high=2**63 - 1)
    async with request.app[DB_ENGINE].connect() as conn:
        owner = await wallet_owner(conn, caller, request.match_info["phone"])
        wallet = await wallet_statement(conn, owner.id, currency_param(query.get("currency"), owner.phone),
                                        limit=limit, before_posting_id=before)
    return web.json_response({"phone": owner.phone, **wallet_json(wallet, limit)})
