"""Shared fixtures: a real PostgreSQL for the whole run and a fresh, migrated database in it.

The server is `$SAUTI_TEST_DATABASE_URL` (or `$DATABASE_URL`) when set, else the embedded PostgreSQL
under ``var/test-pg``, so the suite needs nothing installed by hand. Each run creates its own
database (dropped at the end), so runs never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.embedded import start_embedded
from db.engine import async_url, create_engine
from db.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def database_server_url() -> str:
    configured = os.environ.get("SAUTI_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        return async_url(configured)
    return start_embedded(ROOT / "var" / "test-pg", "postgres")


async def _admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(async_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def new_database(database_server_url) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A factory of fresh migrated databases on the test server; all dropped at the end of the run."""
    created: list[str] = []

    async def make() -> str:
        name = f"sauti_test_{uuid.uuid4().hex[:12]}"
        await _admin(database_server_url, f'CREATE DATABASE "{name}"')
        created.append(name)
        url = make_url(database_server_url).set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url, pool_size=1)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        return url

    yield make
    for name in created:
        await _admin(database_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(new_database) -> str:
    return await new_database()


@pytest.fixture(scope="session")
async def engine(database_url) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=20, max_overflow=40)
    yield engine
    await engine.dispose()
