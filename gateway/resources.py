"""Cleanup contexts: each opens one resource when the app starts and closes it when it stops
(aiohttp's `cleanup_ctx`), so shutdown releases everything in reverse order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from db.embedded import start_embedded
from db.engine import create_engine, redacted
from db.migrate import upgrade
from db.pool_watch import OverflowWatch
from gateway.generated_secrets import BadSecretFile, generated_secret
from gateway.keys import DATABASE_URL, DB_ENGINE, LEDGER, PINS, SETTINGS
from gateway.settings import ConfigError, Settings
from payments.fees import FeePlan
from payments.identities import PinPolicy, PinService
from payments.ledger import Ledger, LedgerLimits, TransferBatcher

log = logging.getLogger(__name__)


async def database_url(settings: Settings) -> str:
    """The configured PostgreSQL, or the embedded one (started on demand) when none is configured."""
    if settings.database.url:
        return settings.database.url
    # Starting the embedded server blocks (initdb, pg_ctl): keep it off the event loop.
    return await asyncio.to_thread(
        start_embedded, settings.database.embedded_dir, settings.database.embedded_database)


def pin_check_key(settings: Settings) -> str:
    """The configured PIN check key, or the one generated into ``pin_check_key_file``; "" when both
    are unset (every PIN check is then an argon2 verify)."""
    s = settings.security
    if s.pin_check_key is not None:
        return s.pin_check_key.get_secret_value()
    if s.pin_check_key_file is None:
        return ""
    if settings.providers.effective_mode == "live":
        # Still correct with a key per machine, but each machine would re-derive the others' check
        # values by argon2: PIN checks as slow as before, and a write per check.
        log.warning("security.pin_check_key is not set: using the key generated in %s; gateways on other "
                    "machines must share one key (set SAUTI_PIN_CHECK_KEY)", s.pin_check_key_file)
    try:
        return generated_secret(s.pin_check_key_file, "PIN check key")
    except BadSecretFile as exc:
        raise ConfigError(str(exc)) from None


def pin_policy(settings: Settings) -> PinPolicy:
    """The PIN rules as configured (reads or makes the generated check key: a start-up step)."""
    s = settings.security
    return PinPolicy(max_attempts=s.pin_max_attempts, lock_minutes=s.pin_lock_minutes, length=s.pin_length,
                     argon2_time_cost=s.argon2_time_cost, argon2_memory_kib=s.argon2_memory_kib,
                     argon2_parallelism=s.argon2_parallelism, pepper=s.pin_pepper.get_secret_value(),
                     check_key=pin_check_key(settings), hash_threads=s.pin_hash_threads)


def ledger_limits(settings: Settings) -> LedgerLimits:
    """The ledger's bound on one leg: ``ledger.max_transaction`` plus the largest fee the configured
    fee plans charge on it, so that it accepts every leg of a quoted payment and of its refund."""
    plans = [FeePlan(name, plan.basis_points, plan.monthly_allowance)
             for name, plan in settings.payments.fee_plans.items()]
    return LedgerLimits.for_payments(settings.ledger.max_transaction, plans)


def build_ledger(engine, settings: Settings) -> Ledger:
    s = settings.ledger
    batcher = TransferBatcher(engine, max_batch=s.batch_max_size, pipelines=s.batch_pipelines)
    return Ledger(engine, ledger_limits(settings), batcher=batcher)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    url = await database_url(settings)
    engine = create_engine(url, pool_size=settings.database.pool_size, max_overflow=settings.database.max_overflow)
    overflow = OverflowWatch(engine)  # says when the pool is too small for the load
    log.info("database: %s", redacted(url))
    if settings.database.migrate_on_start:
        revision = await upgrade(engine)
        log.info("database schema at revision %s", revision)
    app[DATABASE_URL] = url
    app[DB_ENGINE] = engine
    app[LEDGER] = build_ledger(engine, settings)
    app[PINS] = PinService(pin_policy(settings))
    yield
    app[PINS].close()
    overflow.close()
    await engine.dispose()
