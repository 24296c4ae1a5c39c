"""The app's voice API: spoken (or typed) commands from a smartphone, confirmed with the PIN.

- ``POST /v1/voice/commands``: ``multipart/form-data`` with the recording as ``audio`` (WAV, MP3,
  OGG, …) or JSON ``{"text": …}``; optional ``language`` (en, sw, fr; default the user's) and, for a
  platform key, ``phone`` (whose command it is). Answers 201 with the command: what was heard, the
  intent and entities, and either a question (``asking``) or the read-back waiting for the PIN
  (``confirming``).
- ``POST /v1/voice/commands/{id}/answer``: the answer to a question, by voice or text, as above.
- ``POST /v1/voice/commands/{id}/confirm``: JSON ``{"pin": "1234"}`` runs the payment. Only JSON:
  a PIN is typed, never spoken, so audio here is refused.
- ``POST /v1/voice/commands/{id}/cancel``, ``GET /v1/voice/commands/{id}``.

Authenticated by an API key (``Authorization: Bearer sk_…``): a device's key acts for its own user.
Bad audio answers 422 with a code (``empty_audio``, ``corrupt_audio``, ``truncated_audio``,
``audio_too_long``, ``no_speech``); a full recogniser queue answers 503 with ``Retry-After``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web

from dialogs.voice_commands import (
    EXPIRED,
    LOCKED,
    NOT_FOUND,
    VOICE_LANGUAGES,
    WRONG_PIN,
    Heard,
    VoiceCaller,
    VoiceReply,
    pin_shaped,
)
from gateway.api_auth import authenticated, wallet_owner
from gateway.api_requests import UNREADABLE_FORM, ApiError, api_error, json_body, only
from gateway.keys import DB_ENGINE, SETTINGS, SPEECH, VOICE_COMMANDS
from nlu.transcripts import AudioError, SpeechBusy, Transcript
from payments.api_keys import ApiKey
from payments.commands import Channel
from payments.identities import get_user
from payments.plain_text import CONTROL

#: Typed text is a sentence or two; more is not a command.
MAX_TEXT = 500
_FIELDS = frozenset({"text", "language", "phone"})


def add_voice_api_routes(app: web.Application) -> None:
    app.router.add_post("/v1/voice/commands", authenticated(create_command))
    app.router.add_get("/v1/voice/commands/{id}", authenticated(read_command))
    app.router.add_post("/v1/voice/commands/{id}/answer", authenticated(answer_command))
    app.router.add_post("/v1/voice/commands/{id}/confirm", authenticated(confirm_command))
    app.router.add_post("/v1/voice/commands/{id}/cancel", authenticated(cancel_command))


# -- reading requests ----------------------------------------------------------------------------


async def _form(request: web.Request) -> tuple[bytes | None, dict[str, str]]:
    """The recording (if any) and the text fields of a multipart or JSON body."""
    if request.content_type == "multipart/form-data":
        try:
            return await _multipart(request)
        except UNREADABLE_FORM:
            raise ApiError(400, "invalid_multipart", "The body is not well-formed multipart/form-data (a boundary "
                                                     "in the Content-Type, parts with a header each).") from None
    body = await json_body(request)
    only(body, _FIELDS)
    if not all(isinstance(v, str) for v in body.values()):
        raise ApiError(400, "invalid_field", "text, language and phone are strings.")
    return None, dict(body)


async def _multipart(request: web.Request) -> tuple[bytes | None, dict[str, str]]:
    limit = request.app[SETTINGS].voice.max_audio_bytes
    audio: bytes | None = None
    fields: dict[str, str] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "audio":
            audio = await _read_limited(part, limit)
        elif part.name in _FIELDS:
            fields[part.name] = (await _read_limited(part, MAX_TEXT * 4)).decode("utf-8", "replace")
        else:
            raise ApiError(400, "unknown_field", f"Unknown field {part.name[:40]!r}; expected audio, "
                                                 f"{', '.join(sorted(_FIELDS))}.")
    return audio, fields


async def _read_limited(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(64 * 1024):
        data += chunk
        if len(data) > limit:
            if part.name == "audio":
                raise ApiError(413, "audio_too_large", f"A recording is at most {limit} bytes.")
            raise ApiError(413, "field_too_large", f"The field {part.name!r} is at most {limit} bytes.")
    return bytes(data)


async def _caller(request: web.Request, key: ApiKey, fields: dict[str, str]) -> VoiceCaller:
    """Whose command: the key's own user, or (a platform key) the ``phone`` it names."""
    language = fields.get("language") or None
    if language is not None and language not in VOICE_LANGUAGES:
        raise ApiError(400, "invalid_language", f"language is one of {', '.join(VOICE_LANGUAGES)}.")
    async with request.app[DB_ENGINE].connect() as conn:
        if key.is_platform:
            user = await wallet_owner(conn, key, fields.get("phone") or request.query.get("phone", ""))
        else:
            user = await get_user(conn, key.user_id)
    return VoiceCaller.of(user.id, user.phone, user.display_name, language or user.language.value)


async def _heard(request: web.Request, caller: VoiceCaller, audio: bytes | None,
                 fields: dict[str, str], *, first: bool) -> tuple[Heard, Transcript | None]:
    if audio is not None:
        commands = request.app[VOICE_COMMANDS]
        contacts = await commands.address_book(caller.user_id)
        # A first turn should be a whole command: a reading that is not gets a second, unprimed one.
        accept = commands.whole_command_check(caller, contacts) if first else None
        try:
            transcript = await request.app[SPEECH].transcribe(audio, language=caller.language, contacts=contacts,
                                                              accept=accept)
        except AudioError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        except SpeechBusy as exc:
            raise ApiError(503, SpeechBusy.code, str(exc), headers={"Retry-After": "2"}) from None
        return Heard(transcript.text, transcript.confidence, tuple(contacts)), transcript
    # Line breaks and tabs in typed text are spaces; any other control character is refused (a NUL
    # would reach the payment's transcript, which PostgreSQL cannot store).
    text = " ".join((fields.get("text") or "").split())
    if CONTROL.search(text):
        raise ApiError(400, "invalid_text", "A command is plain text, without control characters.")
    if not text:
        raise ApiError(400, "missing_input", "Send the command as an audio file (multipart field audio) or as text.")
    if len(text) > MAX_TEXT:
        raise ApiError(400, "text_too_long", f"A command is at most {MAX_TEXT} characters.")
    return Heard(text), None


# -- answers -------------------------------------------------------------------------------------

_STATUS_CODES = {NOT_FOUND: 404, EXPIRED: 410, LOCKED: 423, WRONG_PIN: 403}


def _json(reply: VoiceReply, transcript: Transcript | None = None, *, status: int = 200) -> web.Response:
    command = reply.command
    if command is None:
        return api_error(404, "command_not_found", "No such command for this key (it may have expired).")
    body: dict[str, Any] = {
        "id": command.id,
        "status": reply.status,
        "text": reply.text,
        "language": command.language,
        "intent": command.intent,
        "kind": command.kind,
        "missing": command.missing,
        "expires_at": datetime.fromtimestamp(command.expires_at, UTC).isoformat(),
    }
    if reply.parse is not None:
        body["entities"] = [{"type": e.type, "value": e.value, "raw": e.raw} for e in reply.parse.entities]
    if transcript is not None:
        body["transcript"] = {"text": transcript.text, "confidence": round(transcript.confidence, 3),
                              "language": transcript.language, "audio_s": round(transcript.audio_s, 2),
                              "model": transcript.model}
    if command.result.get("ref"):
        body["payment"] = {"reference": command.result["ref"], "outcome": command.result.get("outcome")}
    code = _STATUS_CODES.get(reply.status, status)
    if code >= 400:
        return web.json_response({"error": {"code": reply.status, "message": reply.text}, "command": body},
                                 status=code)
    return web.json_response(body, status=code)


# -- handlers ------------------------------------------------------------------------------------


async def create_command(request: web.Request, key: ApiKey) -> web.Response:
    audio, fields = await _form(request)
    caller = await _caller(request, key, fields)
    heard, transcript = await _heard(request, caller, audio, fields, first=True)
    reply = await request.app[VOICE_COMMANDS].start(caller, heard, channel=Channel.APP)
    return _json(reply, transcript, status=201)


async def answer_command(request: web.Request, key: ApiKey) -> web.Response:
    audio, fields = await _form(request)
    caller = await _caller(request, key, fields)
    heard, transcript = await _heard(request, caller, audio, fields, first=False)
    reply = await request.app[VOICE_COMMANDS].answer(caller, request.match_info["id"], heard)
    return _json(reply, transcript)


async def confirm_command(request: web.Request, key: ApiKey) -> web.Response:
    if request.content_type != "application/json":
        raise ApiError(415, "pin_by_keypad", "Confirm with JSON {\"pin\": \"…\"} typed by the user; a PIN is never "
                                             "taken by voice.")
    body = await json_body(request)
    only(body, {"pin", "phone"})
    pin = body.get("pin")
    length = request.app[SETTINGS].security.pin_length
    if not pin_shaped(pin, length):
        raise ApiError(400, "invalid_pin", f"pin is {length} digits, as a string.")
    caller = await _caller(request, key, {"phone": body["phone"]} if isinstance(body.get("phone"), str) else {})
    reply = await request.app[VOICE_COMMANDS].confirm(caller, request.match_info["id"], pin)
    return _json(reply)


async def cancel_command(request: web.Request, key: ApiKey) -> web.Response:
    caller = await _caller(request, key, dict(request.query))
    return _json(await request.app[VOICE_COMMANDS].cancel(caller, request.match_info["id"]))


async def read_command(request: web.Request, key: ApiKey) -> web.Response:
    caller = await _caller(request, key, dict(request.query))
    return _json(await request.app[VOICE_COMMANDS].get(caller, request.match_info["id"]))
