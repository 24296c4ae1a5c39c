"""Typed keys for what the app holds (aiohttp `web.AppKey`): one per resource, set by the app
factory or its cleanup contexts."""

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from dialogs.engine import UssdEngine
from dialogs.journey import JourneySet
from dialogs.session_store import SessionStore
from dialogs.voice_commands import VoiceCommands
from dialogs.voice_prompts import VoicePrompts
from gateway.settings import Settings
from gateway.sign_in_limits import SignInLimiter
from nlu.speech import SpeechService
from payments.api_keys import ApiKeyHasher
from payments.identities import PinService
from payments.ledger import Ledger
from payments.orchestrator import Payments

SETTINGS = web.AppKey("settings", Settings)
DB_ENGINE = web.AppKey("db_engine", AsyncEngine)
DATABASE_URL = web.AppKey("database_url", str)
LEDGER = web.AppKey("ledger", Ledger)
PINS = web.AppKey("pins", PinService)
PAYMENTS = web.AppKey("payments", Payments)
API_KEY_HASHER = web.AppKey("api_key_hasher", ApiKeyHasher)
SIGN_IN_LIMITER = web.AppKey("sign_in_limiter", SignInLimiter)
USSD_JOURNEYS = web.AppKey("ussd_journeys", JourneySet)
USSD_SESSIONS = web.AppKey("ussd_sessions", SessionStore)
USSD_ENGINE = web.AppKey("ussd_engine", UssdEngine)

# The voice channel (`gateway.voice_resources`).
VOICE_COMMANDS = web.AppKey("voice_commands", VoiceCommands)
SPEECH = web.AppKey("speech", SpeechService)
VOICE_PROMPTS = web.AppKey("voice_prompts", VoicePrompts)
VOICE_HTTP = web.AppKey("voice_http", aiohttp.ClientSession)
