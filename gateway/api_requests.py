"""Reading the JSON APIs' requests (`gateway.payments_api`, `gateway.app_api`): JSON bodies that are
objects and nothing else, the fields each request may hold, amounts exact to the minor unit, query
parameters. Whatever is wrong raises `ApiError`, which the API answers as
``{"error": {"code", "message"}}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestPayloadError

from gateway.keys import SETTINGS
from payments.money import Currency, Money, MoneyError
from payments.phones import region_of
from payments.plain_text import CONTROL

#: The currency of a wallet when a history request names none: the one of the phone's country.
_HOME_CURRENCY: Mapping[str, Currency] = MappingProxyType({"KE": Currency.KES, "SN": Currency.XOF,
                                                            "CI": Currency.XOF})


class ApiError(Exception):
    """An answer other than success, raised anywhere in a handler and rendered at its edge.
    ``extra`` adds fields a caller can act on to the error object (``attempts_left``, …)."""

    def __init__(self, status: int, code: str, message: str, *, extra: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra, self.headers = dict(extra or {}), dict(headers or {})


#: What aiohttp raises reading a form or multipart body that is not one (no boundary, no part, a part
#: cut short, a part's header line that is no header, a field that is not UTF-8), or a body that does
#: not decompress as its Content-Encoding says (`RequestPayloadError`, on any body).
UNREADABLE_FORM = (ValueError, BadHttpMessage, RequestPayloadError)


def api_error(status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None,
              extra: Mapping[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": {**(extra or {}), "code": code, "message": message}}, status=status,
                             headers=headers)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


async def json_body(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's JSON object; with ``empty_ok``, no body at all (none sent, or an empty one) is ``{}``."""
    limit = request.app[SETTINGS].api.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"A request body is at most {limit} bytes.")
    try:
        raw = await request.read()
    except RequestPayloadError:  # sent as gzip or deflate, but not
        raise ApiError(400, "invalid_json", "The body could not be read: does it match its Content-Encoding?") \
            from None
    if len(raw) > limit:
        raise ApiError(413, "body_too_large", f"A request body is at most {limit} bytes.")
    if empty_ok and not raw.strip():
        return {}
    try:
        # IMPORTANT: numbers become Decimals from their digits (never floats); NaN and Infinity are refused.
        body = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, ArithmeticError, RecursionError):
        # Not only ValueError: a number whose exponent no Decimal holds (1e999999999999999999999) raises
        # decimal.InvalidOperation, an ArithmeticError, and arrays nested thousands deep a RecursionError.
        raise ApiError(400, "invalid_json", "The body must be a JSON object (Content-Type: application/json).") \
            from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


def only(given: Mapping[str, Any], allowed: set[str] | frozenset[str], *, where: str = "field") -> None:
    """Refuse what we do not know: a misspelt ``ammount`` must not silently become no amount."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown_{where.replace(' ', '_')}",
                       f"Unknown {where}(s): {', '.join(unknown)[:200]}; expected {', '.join(sorted(allowed))}.")


def text_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"missing_{name}", f"{name} is required.")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 64 or CONTROL.search(value.strip()):
        raise ApiError(400, f"invalid_{name}", f"{name} must be a non-empty string without control characters.")
    return value.strip()


def amount_field(body: Mapping[str, Any]) -> Money:
    currency_text = text_field(body, "currency")
    try:
        currency = Currency.parse(currency_text or "")
    except MoneyError as exc:
        raise ApiError(400, "unknown_currency", str(exc)) from None
    value = body.get("amount")
    if value is None:
        raise ApiError(400, "missing_amount", 'amount is required, in major units as a string: "1500.00".')
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)) or (isinstance(value, str)
                                                                               and len(value) > 32):
        raise ApiError(400, "invalid_amount", 'amount is a decimal string in major units, like "1500.00".')
    try:
        return Money.of(value, currency)
    except MoneyError as exc:
        raise ApiError(400, "invalid_amount", str(exc)) from None


def int_param(query: Mapping[str, str], name: str, *, default: int | None, low: int, high: int) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not low <= int(text) <= high:
        raise ApiError(400, f"invalid_{name}", f"{name} is a whole number from {low} to {high}.")
    return int(text)


def currency_param(text: str | None, phone: str) -> Currency:
    if text:
        try:
            return Currency.parse(text)
        except MoneyError as exc:
            raise ApiError(400, "unknown_currency", str(exc)) from None
    return _HOME_CURRENCY.get(region_of(phone), Currency.KES)
