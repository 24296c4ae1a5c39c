"""Africa's Talking's USSD callbacks (contract: ``../shared/contracts/africastalking.md``):

- ``POST /ussd``: form fields ``sessionId``, ``serviceCode``, ``phoneNumber``, ``networkCode``,
  ``text``; answered ``CON …`` / ``END …`` as ``text/plain``, always with HTTP 200: Africa's Talking
  closes the session on any error status, and the caller deserves a screen that says what happened.
  Missing fields, unknown numbers, absurd input and our own failures all get a short ``END`` screen.
- ``POST /ussd/events``: the end-of-session notification (``status`` Success / Incomplete / Failed),
  recorded with the screen the session ended on (`dialogs.session_outcomes`); for a session a redial
  continued, the screen the caller left it on.

IMPORTANT: ``text`` holds every input of the session, PINs included: it is never logged, and no log
line here carries it (the access log never logs bodies).
"""

from __future__ import annotations

import functools
import logging
import uuid

from aiohttp import web

from dialogs.engine import Hop, Reply
from dialogs.session_outcomes import AT_OUTCOMES, SessionEnd, record_end
from gateway.keys import DB_ENGINE, SETTINGS, USSD_ENGINE, USSD_JOURNEYS, USSD_SESSIONS
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.plain_text import without_controls

log = logging.getLogger(__name__)

#: Longest field values a real callback carries (AT session ids are ~40 characters; a 180-second
#: session cannot type more than a few hundred characters).
_MAX = {"sessionId": 100, "serviceCode": 40, "phoneNumber": 32, "networkCode": 16, "text": 2000}


def add_ussd_routes(app: web.Application) -> None:
    app.router.add_post("/ussd", ussd_callback)
    app.router.add_post("/ussd/events", ussd_session_event)


@functools.lru_cache(maxsize=65_536)
def _msisdn(raw: str) -> str:
    """The caller's number in E.164 (libphonenumber is slow: a number is parsed once per process)."""
    return parse_msisdn(raw)


def _plain(reply: Reply) -> web.Response:
    return web.Response(text=reply.wire(), content_type="text/plain", charset="utf-8")


def _field(form, name: str) -> str:
    """A form field, trimmed, without control characters: Africa's Talking sends none and a phone
    cannot type one, but a NUL would fail the session's record in PostgreSQL."""
    value = form.get(name, "")
    return without_controls(value).strip() if isinstance(value, str) else ""


async def ussd_callback(request: web.Request) -> web.Response:
    engine = request.app[USSD_ENGINE]
    language = request.app[SETTINGS].ussd.default_language
    try:
        form = await request.post()
    except Exception:  # not a form at all: still a screen, never an error page
        return _plain(engine.error_reply(language))
    fields = {name: _field(form, name) for name in _MAX}
    session_id = fields["sessionId"]
    if not session_id or any(len(fields[name]) > most for name, most in _MAX.items()) \
            or not session_id.isprintable():
        return _plain(engine.error_reply(language))
    try:
        phone = _msisdn(fields["phoneNumber"])
    except InvalidPhoneNumber:
        return _plain(engine.screen_reply("sys.unsupported", language))
    hop = Hop(session_id, phone, fields["text"], service_code=fields["serviceCode"],
              network_code=fields["networkCode"])
    try:
        reply = await engine.hop(hop)
    except Exception:
        reference = uuid.uuid4().hex[:12]
        # Never the text (PINs): the session and the reference are enough to find it.
        log.exception("ussd hop failed for session %s (reference %s)", session_id, reference)
        reply = engine.error_reply(engine.callers.language_for(phone))
    return _plain(reply)


#: The largest count the events table holds (a PostgreSQL integer); beyond it is no real session's.
_MAX_COUNT = 2**31 - 1


def _number(value: str) -> int | None:
    """A count Africa's Talking sends (hops, milliseconds), or None: ASCII digits only (``"²"`` is a
    digit to `str.isdigit` and no number to `int`), and no more than the column holds (an event that
    can never be stored would be refused, and resent, for ever)."""
    if not (value.isascii() and value.isdigit() and len(value) < 12):
        return None
    number = int(value)
    return number if number <= _MAX_COUNT else None


async def ussd_session_event(request: web.Request) -> web.Response:
    """Record how a session ended; a malformed notification is refused (400) and changes nothing."""
    try:
        form = await request.post()
    except Exception:
        return web.Response(status=400, text="expected a form-encoded end-of-session event")
    session_id, status = _field(form, "sessionId"), _field(form, "status")
    if not session_id or len(session_id) > _MAX["sessionId"] or status not in AT_OUTCOMES:
        return web.Response(status=400, text="an event needs sessionId and status (Success, Incomplete or Failed)")
    raw_phone = _field(form, "phoneNumber")[:_MAX["phoneNumber"]]
    try:
        phone = parse_msisdn(raw_phone)
    except InvalidPhoneNumber:
        phone = raw_phone
    state = await request.app[USSD_SESSIONS].load(session_id)
    journeys = request.app[USSD_JOURNEYS]
    # A session a redial continued ended on "moved": where the caller left it is what operators need.
    last_screen = (state.moved_from or state.screen) if state else None
    end = SessionEnd(
        session_id, phone, AT_OUTCOMES[status], last_screen=last_screen,
        journey=journeys.journey_of(last_screen) if last_screen else None,
        service_code=_field(form, "serviceCode")[:_MAX["serviceCode"]],
        network_code=_field(form, "networkCode")[:_MAX["networkCode"]], at_status=status,
        hops=_number(_field(form, "hopsCount")), duration_ms=_number(_field(form, "durationInMillis")),
        error_message=_field(form, "errorMessage")[:500] or None)
    try:
        await record_end(request.app[DB_ENGINE], end)
    except Exception:
        log.exception("ussd: recording the end of session %s failed", session_id)
        return web.Response(status=503, text="could not record the event now; send it again later")
    return web.Response(text="OK")
