"""The USSD channel's resources for the app's lifetime (`ussd_ctx`): the journeys, built and
validated once (a bad journey stops start-up, naming the screen), the session store (Redis when
``redis.url`` is set, else in-process), and the engine that serves `POST /ussd`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from dialogs.assembly import sauti_journeys
from dialogs.callers import CallerDirectory
from dialogs.customer_actions import Services
from dialogs.engine import UssdEngine
from dialogs.journey import JourneySet
from dialogs.session import SessionState
from dialogs.session_outcomes import SessionEnd, record_end
from dialogs.session_store import MemorySessionStore, RedisSessionStore, SessionStore
from gateway.keys import DB_ENGINE, PAYMENTS, PINS, SETTINGS, USSD_ENGINE, USSD_JOURNEYS, USSD_SESSIONS
from gateway.settings import Settings
from payments.agents import AgentService, AgentSettings

log = logging.getLogger(__name__)


class UssdUnavailable(Exception):
    """The USSD channel cannot start as configured (Redis does not answer); the message says what to fix."""


async def open_session_store(settings: Settings) -> SessionStore:
    s = settings.ussd
    if settings.redis.url is None:
        return MemorySessionStore(session_ttl_s=s.session_ttl_s, resume_window_s=s.resume_window_s)
    store = RedisSessionStore(settings.redis.url, session_ttl_s=s.session_ttl_s, resume_window_s=s.resume_window_s,
                              key_prefix=s.redis_key_prefix, connections=s.redis_connections)
    try:
        await store.ping()
    except Exception as exc:
        await store.close()
        raise UssdUnavailable(f"redis.url: the USSD session store does not answer ({type(exc).__name__}); "
                              "start Redis or unset redis.url to keep sessions in-process") from None
    return store


def build_ussd_engine(journeys: JourneySet, store: SessionStore, services: Services, settings: Settings) -> UssdEngine:
    s = settings.ussd
    # Who is dialling and how a session ended are lone statements: `CallerDirectory` and
    # `record_end` run them outside any transaction themselves (`db.engine.autocommit`).
    callers = CallerDirectory(services.engine, default_language=s.default_language,
                              country_languages=dict(s.country_languages), service_code=s.service_code,
                              pin_length=settings.security.pin_length)

    async def completed(state: SessionState) -> None:
        await record_end(services.engine, SessionEnd(
            state.session_id, state.phone, "completed", last_screen=state.screen,
            journey=journeys.journey_of(state.screen), service_code=state.service_code, hops=state.hops,
            duration_ms=max(0, int((state.updated_at - state.started_at) * 1000))))

    return UssdEngine(journeys, store, callers, on_end=completed)


async def ussd_ctx(app: web.Application) -> AsyncIterator[None]:
    """After `payments_ctx` (the actions pay through `Payments`)."""
    settings = app[SETTINGS]
    services = Services(app[DB_ENGINE], app[PAYMENTS], app[PINS])
    agents = AgentService(app[PAYMENTS], app[PINS], AgentSettings(**settings.agents.model_dump()))
    journeys = sauti_journeys(services, pin_length=settings.security.pin_length, agents=agents)
    store = await open_session_store(settings)
    app[USSD_JOURNEYS] = journeys
    app[USSD_SESSIONS] = store
    app[USSD_ENGINE] = build_ussd_engine(journeys, store, services, settings)
    log.info("ussd: %d screens in %d journeys; sessions %s", len(journeys.screens), len(journeys.journeys),
             "in Redis" if settings.redis.url else "in-process")
    # Requests past their expiry are closed here, where the agent service lives (a cash-out's held
    # money goes back to the customer); each is closed in a transaction of its own.
    stop = asyncio.Event()
    sweep = asyncio.create_task(agents.sweep_expired_requests(stop), name="agents-expiry")
    started = time.monotonic()
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(sweep, timeout=settings.server.shutdown_timeout_s)
        except TimeoutError:
            log.warning("agents: an expiry round outlasted the shutdown grace period; cancelled")
        await store.close()
        log.debug("ussd: closed after %.0fs", time.monotonic() - started)
