"""How the sandbox decides what happens to a request: success or one of the failure modes.

Two ways to choose, checked in this order for every request that names a phone number (the payer
for STK push, C2B and Wave checkout approval; the recipient for B2C, B2B, Wave payouts and SMS):

1. the control API, ``POST /_sandbox/outcomes`` with ``{"outcome": "...", "msisdn": "...",
   "times": 1, "delay_s": 0.5}``: the next `times` requests for that number (or for any number when
   ``msisdn`` is left out) get `outcome`, their callbacks after `delay_s` when given. An override
   for the number wins over a global one. ``GET`` lists pending overrides, ``DELETE`` clears them.
2. the last three digits of the number:

   ====== =========================== =====================================================
   suffix outcome                     effect
   ====== =========================== =====================================================
   001    ``insufficient_funds``      Daraja ResultCode 1; Wave payout HTTP 400
                                      ``insufficient-funds``, checkout payment fails with
                                      ``insufficient-client-funds``; SMS statusCode 405
   002    ``recipient_limit_exceeded`` Wave payout ``failed`` with that error code
   003    ``recipient_account_blocked`` Wave payout ``failed``; checkout ``blocked-account``;
                                      SMS statusCode 406 (UserInBlacklist)
   019    ``expired``                 Daraja ResultCode 1019 (push expired)
   032    ``user_cancelled``          Daraja ResultCode 1032; Wave checkout payment fails
   037    ``unreachable``             Daraja ResultCode 1037; SMS statusCode 407
   201    ``wrong_pin``               Daraja ResultCode 2001 (initiator information invalid)
   429    ``rate_limited``            HTTP 429 (Wave ``rate-limit-exceeded``)
   500    ``http_500``                HTTP 500 instead of an answer (Wave payouts: the payout
                                      IS made and the answer lost; retry with the same key)
   900    ``no_callback``             the request completes but its callback/webhook is never
                                      sent (find out by query or statement)
   902    ``duplicate_callback``      the callback/webhook is sent twice
   903    ``early_callback``          the callback/webhook is sent before the synchronous
                                      answer returns
   904    ``slow``                    the synchronous answer takes ``slow_answer_s``
   905    ``queue_timeout``           Daraja POSTs to QueueTimeOutURL instead of ResultURL;
                                      nothing is paid
   ====== =========================== =====================================================

   Any other number succeeds. ``idempotency_mismatch`` (Wave payouts answer HTTP 409) and
   ``bad_request`` (Daraja refuses the request outright: HTTP 400 ``400.002.02``, as it does a field
   it finds invalid, and nothing happens) exist only through the control API. A sandbox ignores
   outcomes that make no sense for it (treats them as success) and its control API refuses them.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    RECIPIENT_LIMIT_EXCEEDED = "recipient_limit_exceeded"
    RECIPIENT_ACCOUNT_BLOCKED = "recipient_account_blocked"
    EXPIRED = "expired"
    USER_CANCELLED = "user_cancelled"
    UNREACHABLE = "unreachable"
    WRONG_PIN = "wrong_pin"
    RATE_LIMITED = "rate_limited"
    HTTP_500 = "http_500"
    NO_CALLBACK = "no_callback"
    DUPLICATE_CALLBACK = "duplicate_callback"
    EARLY_CALLBACK = "early_callback"
    SLOW = "slow"
    QUEUE_TIMEOUT = "queue_timeout"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    BAD_REQUEST = "bad_request"


SUFFIXES: dict[str, Outcome] = {
    "001": Outcome.INSUFFICIENT_FUNDS,
    "002": Outcome.RECIPIENT_LIMIT_EXCEEDED,
    "003": Outcome.RECIPIENT_ACCOUNT_BLOCKED,
    "019": Outcome.EXPIRED,
    "032": Outcome.USER_CANCELLED,
    "037": Outcome.UNREACHABLE,
    "201": Outcome.WRONG_PIN,
    "429": Outcome.RATE_LIMITED,
    "500": Outcome.HTTP_500,
    "900": Outcome.NO_CALLBACK,
    "902": Outcome.DUPLICATE_CALLBACK,
    "903": Outcome.EARLY_CALLBACK,
    "904": Outcome.SLOW,
    "905": Outcome.QUEUE_TIMEOUT,
}

_NOT_DIGITS = re.compile(r"\D")


def digits_of(msisdn: str) -> str:
    """``+254 712-345 001`` → ``254712345001``: how overrides are keyed."""
    return _NOT_DIGITS.sub("", msisdn)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request."""

    outcome: Outcome
    #: Seconds before the callback; None means the sandbox's configured delay.
    delay_s: float | None = None


@dataclass(slots=True)
class _Override:
    outcome: Outcome
    remaining: int
    delay_s: float | None


class OutcomeBook:
    """The overrides set through the control API, and the suffix table, for one sandbox."""

    def __init__(self, supported: Iterable[Outcome]) -> None:
        self.supported = frozenset(supported) | {Outcome.SUCCESS}
        self._by_number: dict[str, deque[_Override]] = {}
        self._global: deque[_Override] = deque()

    def set_next(
        self, outcome: Outcome, *, msisdn: str | None = None, times: int = 1, delay_s: float | None = None
    ) -> None:
        if outcome not in self.supported:
            raise ValueError(f"this sandbox does not simulate {outcome.value!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        override = _Override(outcome, times, delay_s)
        if msisdn:
            self._by_number.setdefault(digits_of(msisdn), deque()).append(override)
        else:
            self._global.append(override)

    def take(self, msisdn: str | None) -> Plan:
        """The plan for the next request about `msisdn`, consuming one use of an override."""
        key = digits_of(msisdn) if msisdn else ""
        for queue in (self._by_number.get(key), self._global):
            if queue:
                override = queue[0]
                override.remaining -= 1
                if override.remaining == 0:
                    queue.popleft()
                return Plan(override.outcome, override.delay_s)
        outcome = SUFFIXES.get(key[-3:], Outcome.SUCCESS) if key else Outcome.SUCCESS
        return Plan(outcome if outcome in self.supported else Outcome.SUCCESS)

    def clear(self) -> None:
        self._by_number.clear()
        self._global.clear()

    def pending(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"msisdn": None, "outcome": o.outcome.value, "times": o.remaining, "delay_s": o.delay_s}
            for o in self._global
        ]
        for number, queue in self._by_number.items():
            rows.extend(
                {"msisdn": number, "outcome": o.outcome.value, "times": o.remaining, "delay_s": o.delay_s}
                for o in queue
            )
        return rows


def outcome_routes(book: OutcomeBook) -> list[web.RouteDef]:
    """``/_sandbox/outcomes``: set (POST), list (GET) and clear (DELETE) overrides."""

    async def set_outcome(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            outcome = Outcome(body["outcome"])
            msisdn = body.get("msisdn")
            times = int(body.get("times", 1))
            delay = body.get("delay_s")
            book.set_next(
                outcome,
                msisdn=str(msisdn) if msisdn else None,
                times=times,
                delay_s=float(delay) if delay is not None else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            known = sorted(o.value for o in book.supported)
            return web.json_response({"error": f"bad outcome request: {exc}", "outcomes": known}, status=400)
        return web.json_response({"pending": book.pending()})

    async def list_outcomes(request: web.Request) -> web.Response:
        return web.json_response({"pending": book.pending(), "supported": sorted(o.value for o in book.supported)})

    async def clear_outcomes(request: web.Request) -> web.Response:
        book.clear()
        return web.json_response({"pending": []})

    return [
        web.post("/_sandbox/outcomes", set_outcome),
        web.get("/_sandbox/outcomes", list_outcomes),
        web.delete("/_sandbox/outcomes", clear_outcomes),
    ]
