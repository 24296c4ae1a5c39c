"""The app API: what the Sauti app on a customer's phone calls beside the payments API
(`gateway.payments_api`): signing a device in with the wallet's PIN, and the user's contacts.

Device sign-in. ``POST /v1/devices`` with ``{"phone", "pin", "device_name"}`` checks the PIN as USSD
does (`payments.identities.PinService`: a wrong PIN counts towards the lock-out, and the count is
committed even though the request fails) and answers 201 with a new user key (`payments.api_keys`)
named ``device: <name>``, shown this once; the app sends it as ``Authorization: Bearer sk_…`` from
then on, to this API and to the payments API, where it acts for that wallet only.
``DELETE /v1/devices/current`` revokes the key that calls it (signing the device out).
A wrong PIN and a number with no wallet (or with no PIN yet, or closed) get the same 401
``invalid_credentials``, and each counts against the client's failures (`gateway.sign_in_limits`:
past ``security.sign_in_failures_per_client`` in a window, a 429 ``too_many_attempts`` with
``Retry-After``, whatever the phone and PIN); a wrong PIN adds ``attempts_left``, which a caller
needs before the lock-out and which tells nothing the payments API's quotes do not (they name any
number's registered owner). A locked wallet is a 423 with ``locked_until`` and a ``Retry-After`` header.

Contacts (`payments.contacts`). ``GET /v1/contacts`` (favourites first, then by name),
``GET /v1/contacts/{id}``, ``POST /v1/contacts`` ``{"name", "phone", "nickname"?, "favourite"?}`` (201; a number saved
already is a 409 ``duplicate_contact`` with the saved one's ``contact_id``; past the cap a 422),
``PATCH /v1/contacts/{id}`` with any of those fields (``"nickname": null`` clears it),
``DELETE /v1/contacts/{id}`` (204). A user key manages its own user's contacts; a platform key names
the user with ``?phone=+2547…``. Another user's contact is a 404, as is a contact that never was.
Sends add and count contacts by themselves; refunds do not take them back.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from dialogs.redis_pipe import RedisPipe
from gateway.api_auth import authenticated, ensure_key_hasher, json_errors, wallet_owner
from gateway.api_requests import ApiError, json_body, only, text_field
from gateway.api_views import amounts
from gateway.keys import API_KEY_HASHER, DB_ENGINE, PAYMENTS, PINS, SETTINGS, SIGN_IN_LIMITER
from gateway.sign_in_limits import MemorySignInLimiter, RedisSignInLimiter, SignInLimiter, client_address
from payments.api_keys import ApiKey, NewApiKey, create_api_key, revoke_api_key
from payments.contacts import (
    KEEP,
    DuplicateContact,
    SavedContact,
    add_contact,
    delete_contact,
    get_contact,
    list_contacts,
    update_contact,
)
from payments.errors import AccountClosed, AccountLocked, PinNotSet, WrongPin
from payments.identities import User, find_user_by_phone, get_user
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.plain_text import CONTROL

#: The longest device name (the key is named ``device: <name>``).
DEVICE_NAME_MAX = 60
_CONTACT_FIELDS = frozenset({"name", "phone", "nickname", "favourite"})
_WRONG_CREDENTIALS = "Wrong phone number or PIN."


async def sign_in_ctx(app: web.Application) -> AsyncIterator[None]:
    """The count of each client's failed sign-ins: in Redis when ``redis.url`` is set, so every
    gateway process sees the same counts, else in-process."""
    settings = app[SETTINGS]
    security = settings.security
    window_s = security.sign_in_window_minutes * 60
    limiter: SignInLimiter = (
        MemorySignInLimiter(security.sign_in_failures_per_client, window_s) if settings.redis.url is None
        else RedisSignInLimiter(RedisPipe(settings.redis.url), security.sign_in_failures_per_client, window_s))
    app[SIGN_IN_LIMITER] = limiter
    try:
        yield
    finally:
        await limiter.close()


def add_app_api_routes(app: web.Application) -> None:
    """Mount the app API on ``app``, which holds (or will hold, once started) `SETTINGS`,
    `DB_ENGINE`, `PINS` and `PAYMENTS`."""
    ensure_key_hasher(app)
    app.router.add_post("/v1/devices", json_errors(sign_in_device))
    app.router.add_delete("/v1/devices/current", authenticated(sign_out_device))
    app.router.add_get("/v1/contacts", authenticated(read_contacts))
    app.router.add_post("/v1/contacts", authenticated(create_contact))
    app.router.add_get("/v1/contacts/{contact_id}", authenticated(read_contact))
    app.router.add_patch("/v1/contacts/{contact_id}", authenticated(change_contact))
    app.router.add_delete("/v1/contacts/{contact_id}", authenticated(remove_contact))


# -- devices ---------------------------------------------------------------------------------------


def _device_name(body: Mapping[str, Any]) -> str:
    name = text_field(body, "device_name") or ""
    if len(name) > DEVICE_NAME_MAX or not name.isprintable():
        raise ApiError(400, "invalid_device_name", f"device_name is 1 to {DEVICE_NAME_MAX} printable characters.")
    return name


def _pin(body: Mapping[str, Any]) -> str:
    pin = body.get("pin")
    if pin is None:
        raise ApiError(400, "missing_pin", "pin is required.")
    # A string: as a JSON number, "0123" would lose its leading zero.
    # A control character or half a surrogate pair is no typing mistake: refused, not counted as a
    # wrong PIN (and it could not be hashed).
    if not isinstance(pin, str) or not pin or len(pin) > 32 or CONTROL.search(pin):
        raise ApiError(400, "invalid_pin", 'pin is the wallet\'s PIN as a string of digits, like "0123".')
    return pin


async def sign_in_device(request: web.Request) -> web.Response:
    limiter = request.app[SIGN_IN_LIMITER]
    client = client_address(request, request.app[SETTINGS].security.trusted_proxies)
    body = await json_body(request)
    only(body, {"phone", "pin", "device_name"})
    phone_text, pin, device = text_field(body, "phone") or "", _pin(body), _device_name(body)
    try:
        phone = parse_msisdn(phone_text)
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_phone", str(exc)) from None
    # Counted before any wallet or PIN is looked at (and taken back if it signs in): a client past
    # its limit learns nothing more, right or wrong, and tries sent at once count one by one.
    wait_s = await limiter.attempt(client)
    if wait_s is not None:
        raise ApiError(429, "too_many_attempts", "Too many failed sign-ins from here. Try again later.",
                       headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
    wrong = ApiError(401, "invalid_credentials", _WRONG_CREDENTIALS)
    failure: WrongPin | AccountLocked | None = None
    made: NewApiKey | None = None
    engine = request.app[DB_ENGINE]
    async with engine.connect() as conn:
        user = await find_user_by_phone(conn, phone)
    if user is not None:
        # As on USSD: the count and the lock are committed even though the request fails, and
        # concurrent guesses are all counted (`PinService.check`).
        try:
            user = await request.app[PINS].check(engine, user.id, pin)
        except (WrongPin, AccountLocked) as exc:
            failure = exc
        except (PinNotSet, AccountClosed):
            # Refused before any PIN is compared: answered as a number with no wallet (below), so
            # that no caller learns which numbers are registered, and counted like any failure.
            pass
        else:
            async with engine.begin() as conn:
                made = await create_api_key(conn, request.app[API_KEY_HASHER], f"device: {device}",
                                            user_id=user.id, actor=f"user:{user.id}")
    if made is not None:
        await limiter.succeeded(client)
    if isinstance(failure, WrongPin):
        raise ApiError(401, wrong.code, wrong.message, extra={"attempts_left": failure.attempts_left})
    if isinstance(failure, AccountLocked):
        wait_s = max(1, int((failure.until - datetime.now(UTC)).total_seconds()))
        raise ApiError(423, "account_locked", f"Too many wrong PINs: the wallet is locked until "
                       f"{failure.until:%Y-%m-%d %H:%M} UTC.", extra={"locked_until": failure.until.isoformat()},
                       headers={"Retry-After": str(wait_s)})
    if made is None:  # no wallet, no PIN set yet, or a closed account: the same answer
        raise wrong
    return web.json_response({
        "api_key": made.secret,  # shown this once: only a hash is kept
        "key": {"prefix": made.key.prefix, "name": made.key.name, "created_at": made.key.created_at.isoformat()},
        "user": {"phone": user.phone, "name": user.display_name or None, "language": user.language.value},
    }, status=201)


async def sign_out_device(request: web.Request, caller: ApiKey) -> web.Response:
    if caller.is_platform:
        # A platform key serves many users: it is revoked by an operator (`sauti apikey revoke`),
        # never by one call that could cut off every user of an integration.
        raise ApiError(403, "forbidden", "Only a user's key signs out here; platform keys are revoked by an operator.")
    async with request.app[DB_ENGINE].begin() as conn:
        revoked = await revoke_api_key(conn, caller.prefix, actor=f"user:{caller.user_id}")
    assert revoked.revoked_at is not None
    return web.json_response({"revoked": {"prefix": revoked.prefix, "name": revoked.name,
                                          "revoked_at": revoked.revoked_at.isoformat()}})


# -- contacts --------------------------------------------------------------------------------------


def contact_json(contact: SavedContact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "nickname": contact.nickname,
        "phone": contact.phone,
        "favourite": contact.favourite,
        "times_paid": contact.times_paid,
        # One entry per currency ever sent to them, as every amount of the APIs is given.
        "total_sent": [{"currency": m.currency.value, **amounts("amount", m), "display": m.format()}
                       for m in contact.total_sent],
        "last_paid_at": contact.last_paid_at.isoformat() if contact.last_paid_at else None,
        "created_at": contact.created_at.isoformat(),
        "updated_at": contact.updated_at.isoformat(),
    }


async def _owner(conn: AsyncConnection, caller: ApiKey, request: web.Request) -> User:
    """Whose contacts: the key's own user, or (platform keys) the one ``?phone=`` names."""
    only(request.query, {"phone"}, where="query parameter")
    named = request.query.get("phone")
    if named:
        return await wallet_owner(conn, caller, named)
    if caller.is_platform or caller.user_id is None:
        raise ApiError(400, "missing_phone", "A platform key names the user whose contacts these are: ?phone=+2547…")
    return await get_user(conn, caller.user_id)


def _contact_id(request: web.Request) -> int:
    text = request.match_info["contact_id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise ApiError(404, "contact_not_found", "No such contact.")
    return int(text)


def _favourite(body: Mapping[str, Any]) -> bool | None:
    value = body.get("favourite")
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, "invalid_favourite", "favourite is true or false.")
    return value


def _nickname(body: Mapping[str, Any]) -> str | None:
    value = body.get("nickname")
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_nickname", "nickname is a string, or null for none.")
    return value


def _max_contacts(request: web.Request) -> int:
    return request.app[PAYMENTS].settings.max_contacts_per_user


def _duplicate(exc: DuplicateContact) -> ApiError:
    return ApiError(409, exc.code, str(exc), extra={"contact_id": exc.contact_id})


async def read_contacts(request: web.Request, caller: ApiKey) -> web.Response:
    async with request.app[DB_ENGINE].connect() as conn:
        owner = await _owner(conn, caller, request)
        contacts = await list_contacts(conn, owner.id)
    return web.json_response({"contacts": [contact_json(c) for c in contacts], "limit": _max_contacts(request)})


async def create_contact(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, _CONTACT_FIELDS)
    name, phone = text_field(body, "name") or "", text_field(body, "phone") or ""
    nickname, favourite = _nickname(body), _favourite(body)
    async with request.app[DB_ENGINE].begin() as conn:
        owner = await _owner(conn, caller, request)
        try:
            contact = await add_contact(conn, owner.id, name, phone, nickname, bool(favourite),
                                        max_contacts=_max_contacts(request))
        except DuplicateContact as exc:
            raise _duplicate(exc) from None
    return web.json_response(contact_json(contact), status=201)


async def change_contact(request: web.Request, caller: ApiKey) -> web.Response:
    contact_id = _contact_id(request)
    body = await json_body(request)
    only(body, _CONTACT_FIELDS)
    if not body:
        raise ApiError(400, "nothing_to_change", f"Send one or more of {', '.join(sorted(_CONTACT_FIELDS))}.")
    if "name" in body and body["name"] is None:
        raise ApiError(400, "invalid_name", "A contact always has a name.")
    if "phone" in body and body["phone"] is None:
        raise ApiError(400, "invalid_phone", "A contact always has a phone number.")
    name = text_field(body, "name", required=False)
    phone = text_field(body, "phone", required=False)
    async with request.app[DB_ENGINE].begin() as conn:
        owner = await _owner(conn, caller, request)
        try:
            contact = await update_contact(
                conn, owner.id, contact_id, name=name, phone=phone, favourite=_favourite(body),
                nickname=_nickname(body) if "nickname" in body else KEEP)
        except DuplicateContact as exc:
            raise _duplicate(exc) from None
    return web.json_response(contact_json(contact))


async def remove_contact(request: web.Request, caller: ApiKey) -> web.Response:
    contact_id = _contact_id(request)
    async with request.app[DB_ENGINE].begin() as conn:
        owner = await _owner(conn, caller, request)
        await delete_contact(conn, owner.id, contact_id)
    return web.Response(status=204)


async def read_contact(request: web.Request, caller: ApiKey) -> web.Response:
    contact_id = _contact_id(request)
    async with request.app[DB_ENGINE].connect() as conn:
        owner = await _owner(conn, caller, request)
        contact = await get_contact(conn, owner.id, contact_id)
    return web.json_response(contact_json(contact))
