"""The async SQLAlchemy engine (asyncpg driver) and the URL forms it accepts."""

from __future__ import annotations

import weakref

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """Any PostgreSQL URL (``postgres://``, ``postgresql://``, ``postgresql+psycopg://``) in the
    ``postgresql+asyncpg://`` form SQLAlchemy's async engine needs."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"Sauti needs PostgreSQL; {parsed.get_backend_name()!r} URLs are not supported")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs and error messages."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10, echo: bool = False) -> AsyncEngine:
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: it costs a round trip per checkout; a dropped connection raises a
        # disconnect error instead, and SQLAlchemy then invalidates the pool.
        pool_pre_ping=False,
        echo=echo,
        # Server-side statement timeout is set per transaction where needed; asyncpg's statement
        # cache makes the ledger's single `SELECT ledger_apply(...)` a prepared statement.
        connect_args={"server_settings": {"application_name": "sauti"}},
    )


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for statements that need no transaction around them.

    On PostgreSQL a lone statement is atomic and sees one snapshot on its own; opening a connection
    the usual way wraps it in ``BEGIN`` … ``COMMIT``/``ROLLBACK``, two more round trips that each
    cost the server and this process a system call and a wake-up. The USSD hot paths (who is
    calling, a PIN's hash, a balance, a session's end, an outbox claim) are such statements. Use it
    only where each statement stands alone: two statements run through it may see different
    moments, and each commits as it ends.
    """
    # Made once per engine: building the option engine costs more than the round trip it saves.
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


_AUTOCOMMIT: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()
