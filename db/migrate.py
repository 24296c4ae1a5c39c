"""Applies the Alembic migrations programmatically (``sauti db upgrade`` and start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works: it serialises processes that migrate the same database at the same time.
_MIGRATION_LOCK = 7_301_984


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str:
    """Migrate the database to ``revision``; returns the revision it is at afterwards."""
    cfg = alembic_config()

    def run(sync_conn) -> str:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)
        return MigrationContext.configure(sync_conn).get_current_revision() or "base"

    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        return await conn.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> str:
    """Undo migrations down to ``revision`` ("base": all of them); returns where it ends."""
    cfg = alembic_config()

    def run(sync_conn) -> str:
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)
        return MigrationContext.configure(sync_conn).get_current_revision() or "base"

    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        return await conn.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or "base"
