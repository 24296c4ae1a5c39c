"""The voice channel end to end, as an app and as Africa's Talking meet it: the gateway `sauti serve`
builds, on a real TCP port, with the sandbox providers; spoken commands generated with eSpeak NG and
brought down to telephone quality (8 kHz), transcribed by the real Whisper base model; payments that
settle in the sandbox.

- App: `POST /v1/voice/commands` (audio or text) → read-back → `/confirm` with the PIN → the payment,
  which keeps the transcript, the confidence and that the PIN confirmed it.
- Call: `POST /voice` as Africa's Talking calls it → Record → the recording fetched from a recording
  server over HTTP → read-back → GetDigits for the PIN → the result; Swahili prompts played as audio.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiohttp import web

from dialogs.display import phone_text
from dialogs.speech_synthesis import synthesize
from gateway.keys import API_KEY_HASHER, PINS, VOICE_COMMANDS
from payments.api_keys import create_api_key
from payments.contacts import add_contact
from payments.identities import Role, User, grant_role
from payments.intents import CreateIntent
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import Gateway, free_port, gateway_settings, running_gateway, wait_for

KES = Currency.KES
PIN = "4826"
PEPPER = "e2e-voice-pepper"


def telephone_wav(text: str, language: str = "en") -> bytes:
    """`text` spoken by eSpeak NG, as a phone line carries it: 8 kHz, 16-bit mono WAV."""
    return synthesize(text, language).at_rate(8000).wav_bytes()


def telephone_mp3(text: str, language: str = "en") -> bytes:
    """The same as an MP3, as Africa's Talking stores its recordings."""
    speech = synthesize(text, language).at_rate(8000)
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(speech.samples.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


@pytest.fixture(scope="module")
async def recordings() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """A recording server (Africa's Talking's storage, in the sandbox): GET /<name> serves the file."""
    files: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        data = files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="audio/mpeg")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", files
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def gw(new_database) -> AsyncIterator[Gateway]:
    settings = gateway_settings(await new_database(), free_port(), api={"key_pepper": PEPPER},
                                voice={"recording_hosts": ["127.0.0.1"]})
    async with running_gateway(settings) as gateway:
        yield gateway


async def customer(gw: Gateway, *, name: str = "Wanjiku Kamau", language: str = "en",
                   funds: int = 5000) -> tuple[User, User, str]:
    """A customer with a PIN, money, a device key and a contact "Mama" (another Sauti user)."""
    payer = await gw.user(name=name)
    mama = await gw.user(name="Njeri Wambui", suffix="456")
    async with gw.engine.begin() as conn:
        await gw.app[PINS].set_pin(conn, payer.id, PIN)
        await conn.exec_driver_sql("UPDATE users SET language = $1 WHERE id = $2", (language, payer.id))
        await add_contact(conn, payer.id, "Mama", mama.phone)
        key = await create_api_key(conn, gw.app[API_KEY_HASHER], "device: test phone", user_id=payer.id)
    await gw.fund(payer, Money.of(funds, KES))
    return payer, mama, key.secret


async def call_api(gw: Gateway, key: str, path: str, *, body: Any = None, audio: bytes | None = None,
                   fields: dict[str, str] | None = None, method: str = "POST") -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        if audio is not None:
            form = aiohttp.FormData()
            form.add_field("audio", audio, filename="command.wav", content_type="audio/wav")
            for name, value in (fields or {}).items():
                form.add_field(name, value)
            request = http.post(gw.url + path, data=form, headers=headers)
        elif method == "GET":
            request = http.get(gw.url + path, headers=headers)
        else:
            request = http.post(gw.url + path, json=body if body is not None else {}, headers=headers)
        async with request as resp:
            return resp.status, await resp.json(content_type=None)


# -- the app ----------------------------------------------------------------------------------------


async def test_a_spoken_command_is_read_back_then_paid_with_the_pin(gw: Gateway):
    payer, mama, key = await customer(gw)
    status, heard = await call_api(gw, key, "/v1/voice/commands",
                                   audio=telephone_wav("Send one thousand shillings to Mama"))

    assert status == 201, heard
    assert heard["status"] == "confirming" and heard["intent"] == "send_money", heard
    assert heard["transcript"]["text"] and 0 < heard["transcript"]["confidence"] <= 1
    assert "1,000 shillings" in heard["text"] and "Mama" in heard["text"] and "Fee" in heard["text"], heard["text"]

    status, wrong = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": "1111"})
    assert status == 403 and wrong["error"]["code"] == "wrong_pin" and "2 tries left" in wrong["error"]["message"]
    status, last = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": "2222"})
    assert status == 403 and "One try left: one more wrong PIN locks your account" in last["error"]["message"], last
    status, done = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert status == 200 and done["status"] == "executed", done
    reference = done["payment"]["reference"]

    payment = await wait_for(gw, reference)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.channel == "app" and payment.voice_confirmed and payment.confidence is not None
    assert payment.transcript == heard["transcript"]["text"]
    assert payment.recipient_user_id == mama.id and payment.amount == Money.of(1000, KES)
    # Confirming again answers the same payment: nothing is paid twice.
    status, again = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert status == 200 and again["payment"]["reference"] == reference
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 1
    await gw.assert_ledger_ok()


async def test_a_missing_amount_is_asked_for_and_answered_by_text(gw: Gateway):
    _, _, key = await customer(gw)
    status, asked = await call_api(gw, key, "/v1/voice/commands", body={"text": "send money to Mama"})
    assert status == 201 and asked["status"] == "asking" and asked["missing"] == ["amount"], asked
    assert asked["text"] == "How much, in KES?"

    status, read_back = await call_api(gw, key, f"/v1/voice/commands/{asked['id']}/answer",
                                       body={"text": "one thousand five hundred"})
    assert status == 200 and read_back["status"] == "confirming", read_back
    assert "1,500 shillings" in read_back["text"]


async def test_an_account_number_m_pesa_would_not_take_is_refused_before_the_pin(gw: Gateway):
    """A spoken bill's account number is held to the rule of the USSD screen and the payments API
    (letters and digits, 13 at most), and said so, before any PIN is asked."""
    payer, _, key = await customer(gw)
    status, heard = await call_api(gw, key, "/v1/voice/commands",
                                   body={"text": "pay 1500 to paybill 888880 account KCA-123"})
    assert status == 201 and heard["status"] == "failed", heard
    assert "up to 13 letters and digits" in heard["text"], heard["text"]
    status, heard = await call_api(gw, key, "/v1/voice/commands",
                                   body={"text": "pay 1500 to paybill 888880 account KCA123"})
    assert status == 201 and heard["status"] == "confirming" and "KCA123" in heard["text"], heard
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 0


async def test_typed_text_with_control_characters_is_refused_and_line_breaks_are_spaces(gw: Gateway):
    _, _, key = await customer(gw)
    for text in ("send 50 to Mama\x00", "\x1b[2Jsend 50 to Mama", "send\x7f 50"):
        status, refused = await call_api(gw, key, "/v1/voice/commands", body={"text": text})
        assert status == 400 and refused["error"]["code"] == "invalid_text", refused
    status, asked = await call_api(gw, key, "/v1/voice/commands", body={"text": "send money\n\tto Mama"})
    assert status == 201 and asked["missing"] == ["amount"], asked
    status, refused = await call_api(gw, key, f"/v1/voice/commands/{asked['id']}/answer", body={"text": "50\x00"})
    assert status == 400 and refused["error"]["code"] == "invalid_text", refused
    status, read_back = await call_api(gw, key, f"/v1/voice/commands/{asked['id']}/answer", body={"text": "50"})
    assert status == 200 and read_back["status"] == "confirming", read_back
    status, done = await call_api(gw, key, f"/v1/voice/commands/{asked['id']}/confirm", body={"pin": PIN})
    assert status == 200 and done["status"] == "executed", done
    payment = await wait_for(gw, done["payment"]["reference"])
    assert payment.status is PaymentStatus.SUCCEEDED


async def test_an_unknown_contact_is_asked_for_by_number(gw: Gateway):
    _, mama, key = await customer(gw)
    _, asked = await call_api(gw, key, "/v1/voice/commands", body={"text": "send 500 to Baraka"})
    assert asked["status"] == "asking" and asked["missing"] == ["recipient"], asked
    assert asked["text"].startswith("Baraka is not in your contacts"), asked["text"]

    _, read_back = await call_api(gw, key, f"/v1/voice/commands/{asked['id']}/answer",
                                  body={"text": "0" + mama.phone[4:]})
    assert read_back["status"] == "confirming", read_back


async def test_a_rejected_read_back_moves_nothing(gw: Gateway):
    payer, _, key = await customer(gw)
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "send 700 to Mama"})
    assert heard["status"] == "confirming"
    _, spoken_no = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/answer", body={"text": "no"})
    assert spoken_no["status"] == "cancelled" and spoken_no["text"] == "Cancelled. No money moved."
    status, late = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert status == 200 and late["status"] == "cancelled" and "payment" not in late
    assert await gw.wallet(payer) == Money.of(5000, KES)


async def test_swahili_commands_read_back_in_swahili(gw: Gateway):
    _, _, key = await customer(gw, language="sw")
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "tuma shilingi elfu moja kwa Mama"})
    assert heard["status"] == "confirming", heard
    assert heard["text"].startswith("Tuma shilingi 1,000 kwa Mama"), heard["text"]


async def test_a_pin_is_never_taken_by_voice(gw: Gateway):
    _, _, key = await customer(gw)
    _, said = await call_api(gw, key, "/v1/voice/commands", body={"text": f"my pin is {PIN} send 500 to Mama"})
    assert said["status"] == "answered" and "never say your PIN" in said["text"]
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "send 500 to Mama"})
    status, refused = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm",
                                     audio=telephone_wav(PIN))
    assert status == 415 and refused["error"]["code"] == "pin_by_keypad"


async def test_bad_audio_gets_a_clear_error(gw: Gateway):
    _, _, key = await customer(gw)
    status, empty = await call_api(gw, key, "/v1/voice/commands", audio=b"")
    assert status == 422 and empty["error"]["code"] == "empty_audio"
    status, garbage = await call_api(gw, key, "/v1/voice/commands", audio=b"this is not audio at all" * 100)
    assert status == 422 and garbage["error"]["code"] == "corrupt_audio"
    wav = telephone_wav("Send five hundred shillings to Mama")
    status, cut = await call_api(gw, key, "/v1/voice/commands", audio=wav[: len(wav) // 3])
    assert status == 422 and cut["error"]["code"] == "truncated_audio", cut


async def test_a_command_expires(gw: Gateway):
    _, _, key = await customer(gw)
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "send 500 to Mama"})
    commands = gw.app[VOICE_COMMANDS]
    clock = commands.clock
    commands.clock = lambda: clock() + 3600
    try:
        status, late = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    finally:
        commands.clock = clock
    assert status == 410 and late["error"]["code"] == "expired"


# -- a phone call ---------------------------------------------------------------------------------


async def at_voice(gw: Gateway, **fields: str) -> tuple[int, str]:
    """One Africa's Talking Voice callback, form-encoded as AT sends it."""
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/voice", data=fields) as resp:
        return resp.status, await resp.text()


async def test_a_phone_call_pays_after_the_pin_is_typed(gw: Gateway, recordings):
    base, files = recordings
    payer, mama, _ = await customer(gw)
    call = {"sessionId": "ATVId_e2e_1", "isActive": "1", "direction": "inbound", "callerNumber": payer.phone,
            "destinationNumber": "+254711082000"}
    status, xml = await at_voice(gw, **call)
    assert status == 200 and "<Record" in xml and "Welcome to Sauti" in xml, xml

    files["c1.mp3"] = telephone_mp3("Send one thousand shillings to Mama")
    _, xml = await at_voice(gw, **call, recordingUrl=f"{base}/c1.mp3")
    assert "<GetDigits" in xml and "1,000 shillings" in xml and "Mama" in xml, xml
    # Africa's Talking retries a callback: the same answer, the recording heard once.
    _, retried = await at_voice(gw, **call, recordingUrl=f"{base}/c1.mp3")
    assert retried == xml

    _, xml = await at_voice(gw, **call, dtmfDigits=PIN + "#")
    assert "Sent 1,000 shillings to" in xml and "Press 1 for another command" in xml, xml
    # The reference is said one character at a time; read back as a caller wrote it down, it finds the payment.
    spoken = re.search(r"Reference ((?:[0-9A-Z] ){9}[0-9A-Z])\.", xml)
    assert spoken, xml
    payment = await wait_for(gw, spoken.group(1))
    assert payment.status is PaymentStatus.SUCCEEDED and payment.channel == "voice" and payment.voice_confirmed
    assert payment.recipient_user_id == mama.id

    _, xml = await at_voice(gw, **call, dtmfDigits="1")
    assert "<Record" in xml, xml
    status, _ = await at_voice(gw, sessionId=call["sessionId"], isActive="0", durationInSeconds="42",
                                   currencyCode="KES", amount="2.5")
    assert status == 200
    await gw.assert_ledger_ok()


async def test_a_swahili_call_plays_rendered_prompts_and_0_cancels(gw: Gateway, recordings):
    base, files = recordings
    payer, _, _ = await customer(gw, language="sw")
    call = {"sessionId": "ATVId_e2e_2", "isActive": "1", "callerNumber": payer.phone}
    _, xml = await at_voice(gw, **call)
    prompt = re.search(r'<Play url="([^"]+)"', xml)
    assert "<Record" in xml and prompt is not None and "<Say" not in xml, xml
    async with aiohttp.ClientSession() as http, http.get(prompt.group(1)) as resp:
        assert resp.status == 200 and resp.content_type == "audio/wav"
        assert (await resp.read())[:4] == b"RIFF"

    files["c2.mp3"] = telephone_mp3("tuma shilingi elfu moja kwa Mama", "sw")
    _, xml = await at_voice(gw, **call, recordingUrl=f"{base}/c2.mp3")
    # Whatever Whisper made of it, the call goes on with a played prompt: a question or the read-back.
    assert ("<GetDigits" in xml or "<Record" in xml) and "<Play" in xml, xml
    if "<GetDigits" in xml:
        _, xml = await at_voice(gw, **call, dtmfDigits="0")
        assert "<Play" in xml
    assert await gw.wallet(payer) == Money.of(5000, KES)


async def test_unknown_callers_and_forged_recordings(gw: Gateway):
    _, xml = await at_voice(gw, sessionId="ATVId_e2e_3", isActive="1", callerNumber="+254700000999")
    assert "not registered with Sauti" in xml and "<Record" not in xml
    payer, _, _ = await customer(gw)
    call = {"sessionId": "ATVId_e2e_4", "isActive": "1", "callerNumber": payer.phone}
    await at_voice(gw, **call)
    _, xml = await at_voice(gw, **call, recordingUrl="http://169.254.169.254/latest/meta-data")
    assert "could not hear that well" in xml and "<Record" in xml, xml
    _, xml = await at_voice(gw, **call, recordingUrl="")
    assert "<Record" in xml
    status, _ = await at_voice(gw, isActive="1")
    assert status == 200
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/voice", data=b"\xff\x00",
                                                          headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200 and "<Response>" in await resp.text()


async def test_a_french_command_is_heard_and_answered_in_french(gw: Gateway):
    """A Senegalese caller speaks French (eSpeak NG, 8 kHz): whatever Whisper makes of it, the
    answer is the French conversation's, about a franc wallet, never an error."""
    payer = await gw.user(Currency.XOF, name="Aminata Fall")
    awa = await gw.user(Currency.XOF, name="Awa Ndiaye", suffix="456")
    async with gw.engine.begin() as conn:
        await gw.app[PINS].set_pin(conn, payer.id, PIN)
        await conn.exec_driver_sql("UPDATE users SET language = 'fr' WHERE id = $1", (payer.id,))
        await add_contact(conn, payer.id, "Awa", awa.phone)
        key = (await create_api_key(conn, gw.app[API_KEY_HASHER], "device: fr", user_id=payer.id)).secret
    await gw.fund(payer, Money.of(20_000, Currency.XOF))
    status, heard = await call_api(gw, key, "/v1/voice/commands",
                                   audio=synthesize("envoie cinq mille francs à Awa", "fr").at_rate(8000).wav_bytes())
    assert status == 201, heard
    assert heard["language"] == "fr" and heard["transcript"]["language"] == "fr", heard
    french = ("Envoyer", "Combien", "Qui doit", "Désolé", "Awa n'est pas")
    assert heard["status"] in ("confirming", "asking", "answered") and heard["text"].startswith(french), heard
    if heard["status"] == "confirming":
        assert "francs" in heard["text"]
    # Typed, the same command reads back in French and in francs.
    _, typed = await call_api(gw, key, "/v1/voice/commands", body={"text": "envoie cinq mille francs à Awa"})
    assert typed["status"] == "confirming" and typed["text"].startswith("Envoyer 5 000 francs à Awa"), typed


# -- requests to pay (payment intents) --------------------------------------------------------------


async def shop(gw: Gateway, name: str, *, suffix: str = "123") -> tuple[User, int]:
    """A merchant, and the id of its API key (which asks)."""
    merchant = await gw.user(name=name, suffix=suffix)
    async with gw.engine.begin() as conn:
        await grant_role(conn, merchant.id, Role.MERCHANT, actor="test")
        made = await create_api_key(conn, gw.app[API_KEY_HASHER], f"shop: {name}", user_id=merchant.id)
    return merchant, made.key.id


async def ask(gw: Gateway, merchant: tuple[User, int], payer: User, amount: int, description: str = "") -> str:
    """The merchant asks ``payer`` to pay ``amount``; the intent's public id."""
    view, _ = await gw.payments.intents.create(CreateIntent(
        f"ask-{uuid.uuid4().hex}", merchant[1], merchant[0].id, payer.phone, Money.of(amount, KES), description))
    return view.intent.public_id


async def test_a_request_to_pay_is_read_back_with_its_merchant_and_paid_with_the_pin(gw: Gateway):
    payer, _, key = await customer(gw)
    java = await shop(gw, "Java House")
    public_id = await ask(gw, java, payer, 1500, "Lunch")

    status, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})

    # One request: nothing to choose, read back whole (the merchant's number too, as in its SMS).
    assert status == 201 and heard["status"] == "confirming" and heard["intent"] == "pay_request", heard
    number = phone_text(java[0].phone)
    assert heard["text"].startswith(f"Pay 1,500 shillings to Java House ({number}), for Lunch? Fee"), heard["text"]
    assert heard["text"].endswith("Enter your PIN to confirm."), heard["text"]
    status, done = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert status == 200 and done["status"] == "executed", done
    assert done["text"].startswith(f"Paid 1,500 shillings to Java House ({number}). Reference "), done["text"]

    payment = await wait_for(gw, done["payment"]["reference"], PaymentStatus.SUCCEEDED)
    assert payment.recipient_user_id == java[0].id and payment.amount == Money.of(1500, KES)
    assert payment.channel == "app" and payment.voice_confirmed and payment.transcript == "pay my payment request"
    assert await gw.scalar("SELECT status FROM payment_intents WHERE public_id = :p", p=public_id) == "succeeded"
    # Confirming again answers the same payment.
    _, again = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert again["payment"]["reference"] == done["payment"]["reference"]
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 1
    await gw.assert_ledger_ok()


async def test_several_requests_are_listed_and_one_is_picked_by_number_name_or_amount(gw: Gateway):
    payer, _, key = await customer(gw)
    java, naivas = await shop(gw, "Java House"), await shop(gw, "Naivas Supermarket", suffix="321")
    await ask(gw, java, payer, 1500, "Lunch")
    naivas_id = await ask(gw, naivas, payer, 300)

    _, listed = await call_api(gw, key, "/v1/voice/commands", body={"text": "show my payment requests"})
    assert listed["status"] == "asking" and listed["missing"] == ["request"], listed
    # Newest first, as on USSD.
    assert listed["text"] == ("2 requests to pay are waiting. 1: Naivas Supermarket, 300 shillings. "
                              "2: Java House, 1,500 shillings, for Lunch. Say the number of the one to pay."), listed
    # Words that name none of them: the list again.
    _, again = await call_api(gw, key, f"/v1/voice/commands/{listed['id']}/answer", body={"text": "the blue one"})
    assert again["status"] == "asking" and again["text"].startswith("I did not find that request. 2 requests"), again
    _, picked = await call_api(gw, key, f"/v1/voice/commands/{listed['id']}/answer", body={"text": "the second one"})
    assert picked["status"] == "confirming" and "to Java House" in picked["text"], picked

    _, by_name = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay the request from naivas"})
    assert by_name["status"] == "confirming" and by_name["text"].startswith("Pay 300 shillings to Naivas"), by_name
    _, by_amount = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay the 1500 request"})
    assert by_amount["status"] == "confirming" and "to Java House" in by_amount["text"], by_amount
    _, by_digit = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})
    _, first = await call_api(gw, key, f"/v1/voice/commands/{by_digit['id']}/answer", body={"text": "1"})
    assert first["status"] == "confirming" and "to Naivas" in first["text"], first
    # An amount no request asks for is a question, not a guess.
    _, none = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay the 999 request"})
    assert none["status"] == "asking" and none["text"].startswith("I did not find that request."), none

    status, done = await call_api(gw, key, f"/v1/voice/commands/{by_name['id']}/confirm", body={"pin": PIN})
    assert status == 200 and done["status"] == "executed", done
    assert await gw.scalar("SELECT status FROM payment_intents WHERE public_id = :p", p=naivas_id) == "succeeded"


async def test_no_request_a_closed_one_and_one_the_wallet_cannot_cover(gw: Gateway):
    payer, _, key = await customer(gw, funds=1000)
    _, nothing = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})
    assert nothing["status"] == "answered" and nothing["text"] == "You have no requests to pay.", nothing

    java = await shop(gw, "Java House")
    public_id = await ask(gw, java, payer, 800)
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})
    assert heard["status"] == "confirming", heard
    # The merchant cancels it before the PIN: nothing is paid.
    await gw.payments.intents.cancel(public_id, api_key_id=java[1], user_id=None)
    status, gone = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert status == 200 and gone["status"] == "failed", gone
    assert gone["text"] == "This request is no longer open. No money moved.", gone
    assert await gw.wallet(payer) == Money.of(1000, KES)

    await ask(gw, java, payer, 2000, "Dinner")
    _, short = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})
    # Told before any PIN, with the balance and what it would take.
    assert short["status"] == "failed" and short["text"].startswith("It did not go through."), short
    assert "1,000 shillings" in short["text"], short
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 0


async def test_requests_are_read_in_swahili_and_french(gw: Gateway):
    payer, _, key = await customer(gw, language="sw")
    await ask(gw, await shop(gw, "Java House"), payer, 1500, "Chakula")
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "lipa ombi la java house"})
    assert heard["status"] == "confirming", heard
    assert heard["text"].startswith("Ulipe shilingi 1,500 kwa Java House"), heard["text"]
    assert ", kwa Chakula? Ada" in heard["text"], heard["text"]

    payer_fr, _, key_fr = await customer(gw, language="fr")
    await ask(gw, await shop(gw, "Boutique Awa"), payer_fr, 300)
    await ask(gw, await shop(gw, "Pharmacie", suffix="321"), payer_fr, 700, "Médicaments")
    _, listed = await call_api(gw, key_fr, "/v1/voice/commands", body={"text": "payer la demande de paiement"})
    assert listed["status"] == "asking", listed
    assert listed["text"].startswith("2 demandes de paiement vous attendent. 1 : Pharmacie, 700 shillings, pour "
                                     "Médicaments. 2 : Boutique Awa"), listed["text"]
    _, picked = await call_api(gw, key_fr, f"/v1/voice/commands/{listed['id']}/answer", body={"text": "la deuxième"})
    assert picked["status"] == "confirming" and picked["text"].startswith("Payer 300 shillings à Boutique Awa"), picked


async def test_a_spoken_request_is_found_by_its_merchant_s_name_as_heard(gw: Gateway):
    """Whisper hears "Java House" as it may ("genre house"): the name is matched by sound against the
    merchants asking, as a recipient is against contacts."""
    payer, _, key = await customer(gw)
    await ask(gw, await shop(gw, "Java House"), payer, 1500, "Lunch")
    await ask(gw, await shop(gw, "Naivas Supermarket", suffix="321"), payer, 300)

    said = telephone_wav("Pay the request from Java House")
    status, heard = await call_api(gw, key, "/v1/voice/commands", audio=said)

    assert status == 201 and heard["intent"] == "pay_request", heard
    assert heard["status"] == "confirming" and "1,500 shillings to Java House" in heard["text"], heard


async def test_a_pin_said_aloud_is_never_kept_digits_or_words(gw: Gateway):
    _, _, key = await customer(gw)
    _, heard = await call_api(gw, key, "/v1/voice/commands", body={"text": "send 500 to Mama"})
    for said in (f"my pin is {PIN}", "my pin is four eight two six", "pini yangu ni nne nane mbili sita"):
        _, warned = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/answer", body={"text": said})
        assert warned["status"] == "confirming" and "never say your PIN" in warned["text"], (said, warned)
    status, done = await call_api(gw, key, f"/v1/voice/commands/{heard['id']}/confirm", body={"pin": PIN})
    assert status == 200 and done["status"] == "executed", done
    payment = await wait_for(gw, done["payment"]["reference"])
    # What the payment keeps (operators read it) is what was said before: no PIN, in any form.
    assert payment.transcript == "send 500 to Mama", payment.transcript


async def test_a_bare_number_picks_by_place_even_when_a_request_asks_that_amount(gw: Gateway):
    """The list was just read out by number: "2" is the second, not the request of 2 shillings
    (said as money, it is that one). The read-back says which, and only the PIN pays it."""
    payer, _, key = await customer(gw)
    java_id = await ask(gw, await shop(gw, "Java House"), payer, 1500, "Lunch")
    bag_id = await ask(gw, await shop(gw, "Naivas", suffix="321"), payer, 2, "Bag")

    async def answered(said: str, language: str = "en") -> dict[str, Any]:
        async with gw.engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE users SET language = $1 WHERE id = $2", (language, payer.id))
        _, listed = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})
        assert listed["status"] == "asking", listed
        _, reply = await call_api(gw, key, f"/v1/voice/commands/{listed['id']}/answer", body={"text": said})
        return reply

    _, listed = await call_api(gw, key, "/v1/voice/commands", body={"text": "show my payment requests"})
    assert listed["text"].startswith("2 requests to pay are waiting. 1: Naivas, 2 shillings, for Bag. "
                                     "2: Java House, 1,500 shillings, for Lunch."), listed
    for said, language in (("2", "en"), ("two", "en"), ("the second", "en"), ("number 2", "en"),
                           ("ya pili", "sw"), ("ombi la pili", "sw"), ("la deuxième", "fr"), ("la seconde", "fr"),
                           ("numéro 2", "fr")):
        reply = await answered(said, language)
        assert reply["status"] == "confirming" and "Java House" in reply["text"], (said, reply)
    for said in ("2 shillings", "Ksh 2"):
        reply = await answered(said)
        assert reply["status"] == "confirming" and reply["text"].startswith("Pay 2 shillings to Naivas"), (said, reply)
    # "No" alone still cancels.
    assert (await answered("no"))["status"] == "cancelled"

    picked = await answered("2")
    status, done = await call_api(gw, key, f"/v1/voice/commands/{picked['id']}/confirm", body={"pin": PIN})
    assert status == 200 and done["status"] == "executed" and "to Java House" in done["text"], done
    assert await gw.scalar("SELECT status FROM payment_intents WHERE public_id = :p", p=java_id) == "succeeded"
    assert await gw.scalar("SELECT status FROM payment_intents WHERE public_id = :p", p=bag_id) == "pending"


async def test_a_number_inside_an_amount_picks_no_request_by_its_place(gw: Gateway):
    payer, _, key = await customer(gw)
    await ask(gw, await shop(gw, "Carrefour"), payer, 3500)
    await ask(gw, await shop(gw, "Naivas", suffix="321"), payer, 300)
    await ask(gw, await shop(gw, "Java House", suffix="456"), payer, 1500)
    _, listed = await call_api(gw, key, "/v1/voice/commands", body={"text": "pay my payment request"})
    assert listed["status"] == "asking", listed
    for said in ("the 3 thousand one", "the 2k one"):
        _, again = await call_api(gw, key, f"/v1/voice/commands/{listed['id']}/answer", body={"text": said})
        assert again["status"] == "asking" and again["text"].startswith("I did not find that request."), (said, again)


async def test_keys_that_are_no_pin_on_a_call_ask_again_and_cost_no_try(gw: Gateway, recordings):
    base, files = recordings
    payer, _, _ = await customer(gw)
    call = {"sessionId": "ATVId_e2e_badpin", "isActive": "1", "callerNumber": payer.phone}
    await at_voice(gw, **call)
    files["b1.mp3"] = telephone_mp3("Send one thousand shillings to Mama")
    _, xml = await at_voice(gw, **call, recordingUrl=f"{base}/b1.mp3")
    assert "<GetDigits" in xml, xml
    for keys in ("#", "48*26#", "48#"):
        _, xml = await at_voice(gw, **call, dtmfDigits=keys)
        assert "<GetDigits" in xml and "1,000 shillings" in xml and "Wrong PIN" not in xml, (keys, xml)
    _, xml = await at_voice(gw, **call, dtmfDigits=PIN + "#")
    assert "Sent 1,000 shillings to" in xml, xml
    assert await gw.scalar("SELECT failed_pin_attempts FROM users WHERE id = :u", u=payer.id) == 0
