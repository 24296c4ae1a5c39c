"""A local Africa's Talking SMS endpoint, as the official Python SDK calls it.

``POST /version1/messaging``: form-encoded ``username``, ``to`` (comma-separated E.164), ``message``,
optional ``from``, ``bulkSMSMode``, ``enqueue``; the ``apiKey`` header must match. The answer is
AT's ``{"SMSMessageData": {"Message": …, "Recipients": [{statusCode, number, status, cost,
messageId}]}}`` with HTTP 201 and a content type of exactly ``application/json`` (the SDK parses
JSON only then). Every message is recorded: ``GET /_sandbox/messages`` (``?to=+254…`` filters)
lists them, ``DELETE`` forgets them. Failure modes by recipient suffix (see `outcomes`):
insufficient funds → 405 InsufficientBalance, blocked → 406 UserInBlacklist, unreachable → 407
CouldNotRoute, ``http_500`` → HTTP 500 for the whole request, ``slow`` → a late answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from payments.sandbox.outcomes import Outcome, OutcomeBook, outcome_routes
from payments.sandbox.settings import SandboxSettings

_SUPPORTED = {
    Outcome.INSUFFICIENT_FUNDS,
    Outcome.RECIPIENT_ACCOUNT_BLOCKED,
    Outcome.UNREACHABLE,
    Outcome.HTTP_500,
    Outcome.SLOW,
}
_STATUS = {
    Outcome.INSUFFICIENT_FUNDS: (405, "InsufficientBalance"),
    Outcome.RECIPIENT_ACCOUNT_BLOCKED: (406, "UserInBlacklist"),
    Outcome.UNREACHABLE: (407, "CouldNotRoute"),
}
_SENT = (101, "Success")
_INVALID_NUMBER = (403, "InvalidPhoneNumber")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_COST_PER_MESSAGE = {"+254": ("KES", "0.8000"), "+221": ("XOF", "15.0000"), "+225": ("XOF", "15.0000")}


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str | None
    to: str
    sender: str | None
    message: str
    status: str
    status_code: int
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "to": self.to,
            "from": self.sender,
            "message": self.message,
            "status": self.status,
            "statusCode": self.status_code,
            "at": self.at.isoformat(),
        }


class AfricasTalkingSandbox:
    """State and handlers of one sandbox Africa's Talking. Reach it as ``app[AFRICASTALKING]``."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.outcomes = OutcomeBook(_SUPPORTED)
        self.messages: list[SentMessage] = []

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/version1/messaging", self.send),
            web.get("/_sandbox/messages", self.list_messages),
            web.delete("/_sandbox/messages", self.forget_messages),
            *outcome_routes(self.outcomes),
        ]

    async def send(self, request: web.Request) -> web.Response:
        form = await request.post()
        key_ok = secrets.compare_digest(request.headers.get("apiKey", "").encode(), self.settings.at_api_key.encode())
        if not key_ok or form.get("username") != self.settings.at_username:
            return web.Response(status=401, text="The supplied authentication is invalid")
        message = str(form.get("message", ""))
        numbers = [n.strip() for n in str(form.get("to", "")).split(",") if n.strip()]
        if not message or not numbers:
            return web.Response(status=400, text="Missing message or recipients")
        plans = [self.outcomes.take(n) for n in numbers]
        if any(p.outcome is Outcome.HTTP_500 for p in plans):
            return web.Response(status=500, text="Internal Server Error")
        if any(p.outcome is Outcome.SLOW for p in plans):
            await asyncio.sleep(self.settings.slow_answer_s)
        sender = form.get("from")
        now = datetime.now(UTC)
        recipients = []
        totals: dict[str, Decimal] = {}
        for number, plan in zip(numbers, plans, strict=True):
            code, status = _INVALID_NUMBER if not _E164.fullmatch(number) else _STATUS.get(plan.outcome, _SENT)
            message_id = f"ATXid_{secrets.token_hex(16)}" if code == _SENT[0] else "None"
            currency, unit = _COST_PER_MESSAGE.get(number[:4], ("USD", "0.0100"))
            cost = f"{currency} {unit}" if code == _SENT[0] else "0"
            if code == _SENT[0]:
                totals[currency] = totals.get(currency, Decimal(0)) + Decimal(unit)
            recipients.append(
                {"statusCode": code, "number": number, "status": status, "cost": cost, "messageId": message_id}
            )
            self.messages.append(
                SentMessage(
                    message_id if code == _SENT[0] else None,
                    number,
                    str(sender) if sender else None,
                    message,
                    status,
                    code,
                    now,
                )
            )
        sent = sum(1 for r in recipients if r["statusCode"] == _SENT[0])
        total = " ".join(f"{c} {v:.4f}" for c, v in totals.items()) or "0"
        body = {
            "SMSMessageData": {
                "Message": f"Sent to {sent}/{len(recipients)} Total Cost: {total}",
                "Recipients": recipients,
            }
        }
        # bytes + content_type: exactly "application/json", no charset, which the SDK insists on.
        return web.Response(status=201, body=json.dumps(body).encode(), content_type="application/json")

    async def list_messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to")
        chosen = [m.to_json() for m in self.messages if to is None or m.to == to]
        return web.json_response({"messages": chosen})

    async def forget_messages(self, request: web.Request) -> web.Response:
        self.messages.clear()
        return web.json_response({"messages": []})


AFRICASTALKING = web.AppKey("africastalking_sandbox", AfricasTalkingSandbox)


def create_africastalking_sandbox(settings: SandboxSettings | None = None) -> web.Application:
    """The Africa's Talking sandbox app; its state is ``app[AFRICASTALKING]``."""
    sandbox = AfricasTalkingSandbox(settings or SandboxSettings())
    app = web.Application()
    app[AFRICASTALKING] = sandbox
    app.add_routes(sandbox.routes())
    return app
