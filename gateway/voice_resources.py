"""The voice channel's resources for the app's lifetime (`voice_ctx`): the NLU parser, the speech
recogniser service (its model is loaded on first use, in a worker thread), the store of pending
commands (Redis when ``redis.url`` is set, else in-process), the rendered prompts, an HTTP client
for Africa's Talking's recordings, and the conversation (`dialogs.voice_commands.VoiceCommands`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
from aiohttp import web

from dialogs.callers import CallerDirectory
from dialogs.catalog import CATALOG_DIR, load_catalogs, screen_catalogs
from dialogs.customer_actions import CustomerActions, Services
from dialogs.redis_pipe import RedisPipe
from dialogs.voice_commands import VOICE_LANGUAGES, VoiceCommands
from dialogs.voice_prompts import VoicePrompts
from dialogs.voice_store import MemoryVoiceCommandStore, RedisVoiceCommandStore, VoiceCommandStore
from gateway.keys import DB_ENGINE, PAYMENTS, PINS, SETTINGS, SPEECH, VOICE_COMMANDS, VOICE_HTTP, VOICE_PROMPTS
from gateway.settings import Settings
from nlu.results import Contact
from nlu.speech import SpeechService
from payments.contacts import address_book

log = logging.getLogger(__name__)


def open_voice_store(settings: Settings) -> VoiceCommandStore:
    if settings.redis.url is None:
        return MemoryVoiceCommandStore()
    return RedisVoiceCommandStore(RedisPipe(settings.redis.url), key_prefix=settings.voice.redis_key_prefix)


def _parser(settings: Settings, http: aiohttp.ClientSession):
    nlu = settings.nlu.nlu_settings()
    return nlu.embedded_parser() if nlu.backend == "embedded" else nlu.rasa_parser(http)


async def voice_ctx(app: web.Application) -> AsyncIterator[None]:
    """After `payments_ctx`: commands pay through the customer actions, as USSD does."""
    settings = app[SETTINGS]
    engine = app[DB_ENGINE]
    timeout = aiohttp.ClientTimeout(total=settings.voice.fetch_timeout_s)
    http = aiohttp.ClientSession(timeout=timeout)
    store = open_voice_store(settings)
    speech = SpeechService(settings.speech.speech_settings())

    async def contacts_of(user_id: int) -> Sequence[Contact]:
        async with engine.connect() as conn:
            return [Contact(c.name, c.nickname, c.phone) for c in await address_book(conn, user_id)]

    try:
        callers = CallerDirectory(engine, default_language=settings.ussd.default_language,
                                  country_languages=dict(settings.ussd.country_languages),
                                  service_code=settings.ussd.service_code, pin_length=settings.security.pin_length)
        app[VOICE_COMMANDS] = VoiceCommands(
            actions=CustomerActions(Services(engine, app[PAYMENTS], app[PINS])), parser=_parser(settings, http),
            store=store, texts=load_catalogs(CATALOG_DIR / "voice", VOICE_LANGUAGES), notes=screen_catalogs(),
            callers=callers, address_book=contacts_of, ttl_s=settings.voice.command_ttl_s)
        app[SPEECH] = speech
        app[VOICE_PROMPTS] = VoicePrompts(settings.voice.prompt_cache_dir)
        app[VOICE_HTTP] = http
        await speech.start()
        log.info("voice: speech %s (%s), pending commands %s", settings.speech.backend, settings.speech.model,
                 "in Redis" if settings.redis.url else "in-process")
        yield
    finally:
        await speech.close()
        await store.close()
        await http.close()
