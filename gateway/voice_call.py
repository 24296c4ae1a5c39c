"""Africa's Talking Voice: a phone call that speaks a command (contract:
``../shared/contracts/africastalking.md``, Voice). ``POST /voice`` answers each callback with XML:

    answer → greet → Record the command → (recordingUrl) transcribe → a question and Record again,
    or the read-back and GetDigits for the PIN → (dtmfDigits) pay → say the result → GetDigits:
    1 for another command, 0 to end. ``0`` instead of the PIN cancels.

English is spoken with AT's ``Say``; Swahili and French prompts are rendered with eSpeak NG and
played from ``GET /voice/prompts/{name}`` (`dialogs.voice_prompts`). The PIN comes only as DTMF
digits: a PIN said aloud is refused by the conversation. A callback retried with the same recording
gets the same answer, and a PIN sent twice pays once (the command id is the payment's key).

IMPORTANT: ``dtmfDigits`` carries the PIN: it is never logged, and no log line here carries it.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from dialogs.voice_commands import Heard, VoiceCaller, VoiceReply, pin_shaped
from dialogs.voice_store import ASKING, CONFIRMING
from gateway import voice_xml as xml
from gateway.keys import DB_ENGINE, SETTINGS, SPEECH, VOICE_COMMANDS, VOICE_HTTP, VOICE_PROMPTS
from nlu.transcripts import AudioError, SpeechBusy
from payments.commands import Channel
from payments.identities import UserStatus, find_user_by_phone
from payments.phones import InvalidPhoneNumber, parse_msisdn

log = logging.getLogger(__name__)

#: A call's state outlives the longest call Africa's Talking allows by a margin.
CALL_STATE_TTL_S = 3 * 3600
_MAX = {"sessionId": 100, "callerNumber": 32, "dtmfDigits": 20, "recordingUrl": 1000, "isActive": 2}


def add_voice_call_routes(app: web.Application) -> None:
    app.router.add_post("/voice", voice_callback)
    app.router.add_get("/voice/prompts/{name}", voice_prompt)


async def voice_prompt(request: web.Request) -> web.StreamResponse:
    path = request.app[VOICE_PROMPTS].path_of(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(text="no such prompt")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "public, max-age=86400"})


def _field(form: Any, name: str) -> str:
    value = form.get(name, "")
    return value.strip()[: _MAX.get(name, 200)] if isinstance(value, str) else ""


class _Call:
    """One callback of one call: what it carries, and how to answer in the caller's language."""

    def __init__(self, request: web.Request, session_id: str, state: dict[str, Any]) -> None:
        self.request = request
        self.session_id = session_id
        self.state = state
        settings = request.app[SETTINGS]
        self.voice = settings.voice
        base = self.voice.public_base_url or f"{request.scheme}://{request.host}"
        self.base = base.rstrip("/")
        self.callback_url = f"{self.base}/voice"

    @property
    def caller(self) -> VoiceCaller:
        s = self.state
        return VoiceCaller(s["user_id"], s["phone"], s["name"], s["language"])

    async def prompt(self, text: str) -> str:
        language = self.state.get("language", "en")
        if language == "en":
            return xml.say(text)
        name = await self.request.app[VOICE_PROMPTS].render(text, language)
        return xml.play(f"{self.base}/voice/prompts/{name}")

    async def record(self, text: str) -> str:
        return xml.record(await self.prompt(text), max_length=self.voice.max_record_s, timeout=5,
                          callback_url=self.callback_url)

    async def ask_pin(self, text: str) -> str:
        return xml.get_digits(await self.prompt(text), num_digits=None, timeout=self.voice.pin_timeout_s,
                              finish_on_key="#", callback_url=self.callback_url)

    async def menu(self, text: str) -> list[str]:
        """Say `text`, then offer another command (1) or the end of the call (0)."""
        commands = self.request.app[VOICE_COMMANDS]
        follow = commands.texts.text(self.state["language"], "call.next")
        return [await self.prompt(text),
                xml.get_digits(await self.prompt(follow), num_digits=1, timeout=10, finish_on_key=None,
                               callback_url=self.callback_url)]

    def text(self, key: str, **values: object) -> str:
        commands = self.request.app[VOICE_COMMANDS]
        return commands.texts.text(self.state.get("language", "en"), key, {**self.state, **values})

    async def save(self, answer: web.Response) -> web.Response:
        await self.request.app[VOICE_COMMANDS].store.save_call(self.session_id, self.state, ttl_s=CALL_STATE_TTL_S)
        return answer


async def voice_callback(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except Exception:  # not a form: a short apology, never an error page
        return xml.response(xml.say("Sorry, something went wrong. Please call again."))
    session_id = _field(form, "sessionId")
    if _field(form, "isActive") == "0":
        # The final notification (duration and cost): the call is over; nothing to answer.
        if session_id:
            await request.app[VOICE_COMMANDS].store.drop_call(session_id)
        return web.Response(status=200)
    if not session_id:
        return xml.response(xml.say("Sorry, something went wrong. Please call again."))
    store = request.app[VOICE_COMMANDS].store
    state = await store.load_call(session_id)
    if state is None:
        return await _new_call(request, session_id, _field(form, "callerNumber"))
    call = _Call(request, session_id, state)
    if "recordingUrl" in form:
        return await _recording(call, _field(form, "recordingUrl"))
    digits = _field(form, "dtmfDigits")
    if digits:
        return await _digits(call, digits)
    # Neither words nor digits: the caller said nothing in time.
    if state.get("stage") == "pin":
        return await call.save(xml.response(await call.ask_pin(call.text("pin.call"))))
    return await call.save(xml.response(await call.prompt(call.text("call.bye"))))


async def _new_call(request: web.Request, session_id: str, caller_number: str) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        phone = parse_msisdn(caller_number)
    except InvalidPhoneNumber:
        return xml.response(xml.reject())
    async with request.app[DB_ENGINE].connect() as conn:
        user = await find_user_by_phone(conn, phone)
    if user is None or user.status is UserStatus.CLOSED:
        commands = request.app[VOICE_COMMANDS]
        return xml.response(xml.say(commands.texts.text("en", "call.unregistered",
                                                        {"service_code": settings.ussd.service_code})))
    caller = VoiceCaller.of(user.id, user.phone, user.display_name, user.language.value)
    state = {"user_id": caller.user_id, "phone": caller.phone, "name": caller.name, "language": caller.language,
             "command": None, "recording": None, "stage": "record", "last": None}
    call = _Call(request, session_id, state)
    return await call.save(xml.response(await call.record(call.text("greet"))))


def _allowed(url: str, hosts: tuple[str, ...]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme in ("http", "https") and any(host == h or host.endswith("." + h) for h in hosts)


async def _fetch(call: _Call, url: str) -> bytes:
    if not _allowed(url, call.voice.recording_hosts):
        log.warning("voice: refused a recording outside voice.recording_hosts (host %s)", urlsplit(url).hostname)
        raise AudioError("the recording is not on an allowed host")
    limit = call.voice.max_audio_bytes
    try:
        async with call.request.app[VOICE_HTTP].get(url) as answer:
            if answer.status != 200:
                raise AudioError(f"the recording could not be fetched (HTTP {answer.status})")
            data = bytearray()
            async for chunk in answer.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > limit:
                    raise AudioError("the recording is too large")
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AudioError(f"the recording could not be fetched ({type(exc).__name__})") from None


async def _recording(call: _Call, url: str) -> web.Response:
    state = call.state
    if url and url == state.get("recording") and state.get("last"):
        # Africa's Talking retried this callback: the same answer, nothing heard twice.
        return xml.response(*state["last"])
    if not url:
        return await call.save(xml.response(await call.record(call.text("bad_audio"))))
    commands = call.request.app[VOICE_COMMANDS]
    caller = call.caller
    current = await commands.store.load(state["command"]) if state.get("command") else None
    answering = current is not None and current.status == ASKING
    try:
        audio = await _fetch(call, url)
        contacts = await commands.address_book(caller.user_id)
        accept = None if answering else commands.whole_command_check(caller, contacts)
        transcript = await call.request.app[SPEECH].transcribe(audio, language=caller.language, contacts=contacts,
                                                               accept=accept)
    except AudioError:
        return await call.save(xml.response(await call.record(call.text("bad_audio"))))
    except SpeechBusy:
        return await call.save(xml.response(await call.record(call.text("busy"))))
    heard = Heard(transcript.text, transcript.confidence, tuple(contacts))
    if answering:
        assert current is not None
        reply = await commands.answer(caller, current.id, heard)
    else:
        reply = await commands.start(caller, heard, channel=Channel.VOICE)
    actions = await _after(call, reply)
    state["recording"], state["last"] = url, actions
    return await call.save(xml.response(*actions))


async def _after(call: _Call, reply: VoiceReply) -> list[str]:
    """The XML that follows a turn of the conversation."""
    state = call.state
    if reply.command is not None:
        state["command"] = reply.command.id
    if reply.status == ASKING:
        state["stage"] = "record"
        return [await call.record(reply.text)]
    if reply.command is not None and reply.command.status == CONFIRMING:
        state["stage"] = "pin"
        return [await call.ask_pin(reply.text)]
    state["stage"] = "menu"
    return await call.menu(reply.text)


async def _digits(call: _Call, digits: str) -> web.Response:
    state = call.state
    commands = call.request.app[VOICE_COMMANDS]
    caller = call.caller
    if state.get("stage") == "pin" and state.get("command"):
        pin = digits.rstrip("#")
        length = call.request.app[SETTINGS].security.pin_length
        if pin == "0":
            reply = await commands.cancel(caller, state["command"])
        elif not pin_shaped(pin, length):
            # No PIN ("#" alone, a "*", too few digits): the read-back and the question again, and
            # no try counted against the caller (the app API refuses it the same way, with a 400).
            reply = await commands.get(caller, state["command"])
        else:
            reply = await commands.confirm(caller, state["command"], pin)
        return await call.save(xml.response(*await _after(call, reply)))
    if digits.startswith("1"):
        state.update(stage="record", command=None, recording=None, last=None)
        return await call.save(xml.response(await call.record(call.text("again"))))
    state["stage"] = "done"
    return await call.save(xml.response(await call.prompt(call.text("call.bye"))))

