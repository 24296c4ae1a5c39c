"""Applies the Alembic migrations programmatically (``sauti db upgrade`` and start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works: it serialises processes that migrate the same database at the same time.
_MIGRATION_LOCK = 7_301_984


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


class MigrationError(Exception):
    """Migrations that cannot run as asked (a revision this code does not have); the message says why."""


class DatabaseAhead(MigrationError):
    """The database is at a revision this code does not know: a later release migrated it."""


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str:
    """Migrate the database to ``revision``; returns the revision it is at afterwards. `DatabaseAhead`
    when the database is past this code's migrations, `MigrationError` when ``revision`` is unknown."""
    return await _migrate(engine, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> str:
    """Undo migrations down to ``revision`` ("base": all of them); returns where it ends."""
    return await _migrate(engine, command.downgrade, revision)


async def _migrate(engine: AsyncEngine, step, revision: str) -> str:
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)

    def run(sync_conn) -> str:
        cfg.attributes["connection"] = sync_conn
        _check_known(script, MigrationContext.configure(sync_conn).get_current_revision())
        try:
            step(cfg, revision)
        except CommandError as exc:  # a target this code does not have ("9999", a typo)
            raise MigrationError(f"cannot migrate to {revision!r}: {exc} (this code's newest revision is "
                                 f"{script.get_current_head()})") from None
        return MigrationContext.configure(sync_conn).get_current_revision() or "base"

    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        return await conn.run_sync(run)


def _check_known(script: ScriptDirectory, current: str | None) -> None:
    if current is None:
        return
    try:
        script.get_revision(current)
    except CommandError:
        # Alembic would say "Can't locate revision": the usual cause is a rollback of the code after a
        # newer release migrated the database. Running this code against it would break both.
        raise DatabaseAhead(f"the database is at revision {current}, newer than this code's "
                            f"{script.get_current_head()} (a later release migrated it): run that release, or "
                            "a newer one") from None


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or "base"
