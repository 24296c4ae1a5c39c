"""The app factory: `create_app(settings)` builds the aiohttp application, its middlewares, its
resources (one cleanup context each) and its routes. Nothing happens at import time."""

from __future__ import annotations

from aiohttp import web

from gateway.access_log import access_log_middleware
from gateway.errors import error_middleware
from gateway.health import healthz, readyz
from gateway.keys import SETTINGS
from gateway.resources import database_ctx
from gateway.settings import Settings
from gateway.worker_resources import worker_ctx


def create_app(settings: Settings) -> web.Application:
    middlewares = [error_middleware]
    if settings.logging.access_log:
        middlewares.insert(0, access_log_middleware)
    app = web.Application(middlewares=middlewares, client_max_size=2 * 1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(worker_ctx)  # after the database: it needs the engine
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
