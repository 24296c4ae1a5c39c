"""Who calls the JSON APIs (`gateway.payments_api`, `gateway.app_api`), and their errors at the edge.

A caller presents an API key (`payments.api_keys`) as ``Authorization: Bearer sk_…``. `authenticated`
wraps a handler so that it runs only for an active key, which it receives; a missing, malformed,
unknown or revoked key is a 401 that never says which. A key of the wrong role is a 403: a staff
key (an operator's or support's) on the payments API, a caller's on the operator API (``ops=``,
`gateway.ops_api`), or a support key where an operator's must act (``ops="act"``). `json_errors`
renders what a handler raises (`ApiError`, the domain's `PaymentsError`s) as
``{"error": {"code", "message", …}}``. A user key acts for its own user only; `wallet_owner` finds
the user a request names by phone and answers 404 for anyone a key may not see, so numbers cannot
be probed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.api_requests import ApiError, api_error
from gateway.errors import status_for
from gateway.keys import API_KEY_HASHER, DB_ENGINE, SETTINGS
from payments.api_keys import ApiKey, ApiKeyHasher, verify_api_key
from payments.errors import PaymentsError
from payments.identities import User, find_user_by_phone
from payments.phones import InvalidPhoneNumber, parse_msisdn

Handler = Callable[[web.Request, ApiKey], Awaitable[web.StreamResponse]]
OpenHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ensure_key_hasher(app: web.Application) -> None:
    """Give ``app`` (which holds `SETTINGS`) the hasher of API keys, once for every API mounted."""
    if API_KEY_HASHER not in app:
        app[API_KEY_HASHER] = ApiKeyHasher(app[SETTINGS].api.key_pepper.get_secret_value())


def json_errors(handler: OpenHandler) -> OpenHandler:
    """Run the handler and answer what it raises on purpose as the APIs' JSON errors."""

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return api_error(exc.status, exc.code, exc.message, extra=exc.extra, headers=exc.headers)
        except PaymentsError as exc:
            return api_error(status_for(exc), exc.code, str(exc))

    run.__name__ = handler.__name__
    return run


def authenticated(handler: Handler, *, ops: str | None = None) -> OpenHandler:
    """Find the caller's key, run the handler with it if its role fits, and answer its errors as
    JSON errors. ``ops``: None for the callers' APIs (a caller's key), "read" for the operator
    API's reads (a staff key), "act" for its actions (an operator's key)."""

    async def run(request: web.Request) -> web.StreamResponse:
        caller = await caller_key(request)
        if caller is None:
            return api_error(401, "unauthorized", "A valid API key is required: Authorization: Bearer sk_…",
                             headers={"WWW-Authenticate": 'Bearer realm="sauti"'})
        if caller.is_staff and ops is None:
            return api_error(403, "operator_key", "An operator or support key is for the operator API (/v1/ops) "
                             "and the dashboard (/ops), not for acting as an app or merchant.")
        if ops is not None and not caller.is_staff:
            return api_error(403, "operator_key_required",
                             "The operator API needs an operator key (sauti apikey create --operator).")
        if ops == "act" and not caller.may_act:
            return api_error(403, "read_only_key", "A support key reads only: refunds, verdicts and retries need "
                             "an operator key.")
        return await handler(request, caller)

    run.__name__ = handler.__name__
    return json_errors(run)


async def caller_key(request: web.Request) -> ApiKey | None:
    """The active key the request presents, or None."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    async with request.app[DB_ENGINE].begin() as conn:
        return await verify_api_key(conn, request.app[API_KEY_HASHER], presented.strip())


async def wallet_owner(conn: AsyncConnection, caller: ApiKey, phone_text: str) -> User:
    """The user whose number ``phone_text`` is, if the key may act for them (a user key: itself
    only); else a 404, the same whether the number is someone else's or nobody's."""
    not_found = ApiError(404, "wallet_not_found", "No Sauti wallet for this number and API key.")
    try:
        phone = parse_msisdn(phone_text)
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_phone", str(exc)) from None
    if not caller.is_platform and phone != caller.user_phone:
        raise not_found
    owner = await find_user_by_phone(conn, phone)
    if owner is None:
        raise not_found
    return owner
