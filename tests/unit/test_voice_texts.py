"""The voice channel's texts and XML: every language has every text, amounts read as they are
said, Africa's Talking's XML escapes whatever a name or an amount holds, and rendered prompts are
real telephone-quality audio kept under a name only we make."""

from __future__ import annotations

import wave
from io import BytesIO
from xml.etree import ElementTree

from dialogs.catalog import CATALOG_DIR, load_catalogs
from dialogs.voice_commands import VOICE_LANGUAGES, speakable
from dialogs.voice_prompts import VoicePrompts
from gateway import voice_xml as xml


def test_every_voice_text_exists_in_every_language_with_the_same_values():
    catalogs = load_catalogs(CATALOG_DIR / "voice", VOICE_LANGUAGES)  # raises, naming the key, if not
    assert set(catalogs.texts["sw"]) == set(catalogs.texts["en"]) == set(catalogs.texts["fr"])


def test_amounts_are_written_to_be_said():
    assert speakable("Send Ksh 1,000 to Mama? Fee Ksh 10.", "en") == "Send 1,000 shillings to Mama? Fee 10 shillings."
    assert speakable("Tuma Ksh 1,000 kwa Mama", "sw") == "Tuma shilingi 1,000 kwa Mama"
    assert speakable("Envoyer 5 000 FCFA à Awa", "fr") == "Envoyer 5 000 francs à Awa"


def test_one_of_a_currency_is_said_in_the_singular():
    assert speakable("Send Ksh 100 to Mama? Fee Ksh 1. Total Ksh 101.", "en") == \
        "Send 100 shillings to Mama? Fee 1 shilling. Total 101 shillings."
    assert speakable("Frais 1 FCFA, total 11 FCFA", "fr") == "Frais 1 franc, total 11 francs"
    assert speakable("Ada Ksh 1", "sw") == "Ada shilingi 1"
    assert speakable("Fee Ksh 1.50", "en") == "Fee 1.50 shillings"


def test_the_xml_escapes_names_and_urls():
    body = xml.response(xml.say('Send 5 to "Tom & <Jerry>"'),
                        xml.get_digits(xml.play("http://x/p.wav?a=1&b=2"), num_digits=None, timeout=20,
                                       finish_on_key="#", callback_url="http://x/voice")).text
    root = ElementTree.fromstring(body.encode())  # noqa: S314 (our own document)
    assert root.tag == "Response"
    assert root[0].text == 'Send 5 to "Tom & <Jerry>"'
    digits = root[1]
    assert digits.attrib == {"timeout": "20", "finishOnKey": "#", "callbackUrl": "http://x/voice"}
    assert digits[0].attrib["url"] == "http://x/p.wav?a=1&b=2"


async def test_prompts_are_rendered_once_at_telephone_quality(tmp_path):
    prompts = VoicePrompts(tmp_path)
    name = await prompts.render("Karibu Sauti", "sw")
    path = prompts.path_of(name)
    assert path is not None and await prompts.render("Karibu Sauti", "sw") == name
    with wave.open(BytesIO(path.read_bytes())) as audio:
        assert audio.getframerate() == 8000 and audio.getnchannels() == 1 and audio.getnframes() > 4000
    assert prompts.path_of("../../etc/passwd") is None and prompts.path_of("0" * 32 + ".wav") is None
