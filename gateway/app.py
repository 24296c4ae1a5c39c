"""The app factory: `create_app(settings)` builds the aiohttp application, its middlewares, its
resources (one cleanup context each) and its routes. Nothing happens at import time."""

from __future__ import annotations

import gc

from aiohttp import web

from gateway.access_log import access_log_middleware
from gateway.app_api import add_app_api_routes, sign_in_ctx
from gateway.callbacks import add_callback_routes
from gateway.errors import error_middleware
from gateway.health import healthz, readyz
from gateway.intents_api import add_intent_api_routes
from gateway.keys import SETTINGS
from gateway.ops_api import add_ops_api_routes
from gateway.ops_dashboard import add_ops_dashboard_routes
from gateway.payments_api import add_payment_api_routes
from gateway.payments_resources import payments_ctx, recovery_ctx
from gateway.resources import database_ctx
from gateway.settings import Settings
from gateway.ussd import add_ussd_routes
from gateway.ussd_resources import ussd_ctx
from gateway.voice_api import add_voice_api_routes
from gateway.voice_call import add_voice_call_routes
from gateway.voice_resources import voice_ctx
from gateway.webhooks_api import add_webhook_api_routes
from gateway.worker_resources import worker_ctx


async def _freeze_startup_objects(app: web.Application) -> None:
    """Everything built at start-up (settings, journeys, catalogs, clients, pools) lives as long
    as the app: move it out of the garbage collector's sight, so a full collection stops pausing
    every request for tens of milliseconds."""
    gc.freeze()


def create_app(settings: Settings) -> web.Application:
    middlewares = [error_middleware]
    if settings.logging.access_log:
        middlewares.insert(0, access_log_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=2 * 1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(payments_ctx)  # after the database (engine, ledger), before the worker (handlers)
    app.cleanup_ctx.append(worker_ctx)  # after the database: it needs the engine
    app.cleanup_ctx.append(recovery_ctx)  # stopped first: it asks the providers through payments' clients
    app.cleanup_ctx.append(ussd_ctx)  # after payments: its journeys pay through the orchestrator
    app.cleanup_ctx.append(voice_ctx)  # after payments: spoken commands pay through the same actions as USSD
    app.cleanup_ctx.append(sign_in_ctx)  # failed device sign-ins per client (in Redis when configured)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.on_startup.append(_freeze_startup_objects)  # after the cleanup contexts have started
    add_callback_routes(app)  # /callbacks/{secret}/stk, /b2c/result, ..., /callbacks/wave
    add_payment_api_routes(app)  # /v1/payments, /v1/quotes, /v1/wallets/{phone}/history
    add_intent_api_routes(app)  # /v1/payment_intents
    add_app_api_routes(app)  # /v1/devices (sign-in with the PIN), /v1/contacts
    add_webhook_api_routes(app)  # /v1/webhook_endpoints
    add_ops_api_routes(app)  # /v1/ops/... (operator keys only: payments' records, review, refunds, outbox)
    add_ops_dashboard_routes(app)  # /ops (the same for a person, in a browser, signed in with an operator key)
    add_ussd_routes(app)  # /ussd (Africa's Talking's USSD callback), /ussd/events
    add_voice_api_routes(app)  # /v1/voice/commands (the app: audio or text, confirmed with the PIN)
    add_voice_call_routes(app)  # /voice (Africa's Talking Voice's callback), /voice/prompts/{name}
    return app
