"""The async SQLAlchemy engine (asyncpg driver) and the URL forms it accepts."""

from __future__ import annotations

import re
import weakref
from urllib.parse import quote_plus

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


class BadDatabaseUrl(ValueError):
    """A database URL that cannot be used; its message shows the URL redacted."""


def async_url(url: str) -> str:
    """Any PostgreSQL URL (``postgres://``, ``postgresql://``, ``postgresql+psycopg://``) in the
    ``postgresql+asyncpg://`` form SQLAlchemy's async engine needs."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except (ArgumentError, ValueError):  # their messages quote the whole URL, password and all
        raise BadDatabaseUrl(f"not a database URL Sauti can read: {redacted(url)}") from None
    if parsed.get_backend_name() != "postgresql":
        raise BadDatabaseUrl(f"Sauti needs PostgreSQL; {parsed.get_backend_name()!r} URLs are not supported")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


#: Query parameters that carry a password (libpq's ``password`` and ``sslpassword``, in any case).
_SECRET_PARAMETER = re.compile(r"password", re.I)
_HIDDEN = "***"


def redacted(url: str) -> str:
    """The URL with its passwords hidden (``user:pass@`` and ``?password=``, ``?sslpassword=``), for logs
    and error messages; never raises (a URL SQLAlchemy cannot read is masked as text)."""
    try:
        parsed = make_url(url)
        query = {k: (_HIDDEN if _SECRET_PARAMETER.search(k) else v) for k, v in parsed.query.items()}
        shown = parsed.set(query=query).render_as_string(hide_password=True)
        return shown.replace(f"={quote_plus(_HIDDEN)}", f"={_HIDDEN}")
    except (ArgumentError, ValueError):  # several hosts (h1:5432,h2:5432), a typo: mask what looks secret
        return _redacted_text(url)


def _redacted_text(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"{_HIDDEN} (no scheme://: no telling which part is secret)"
    at = rest.rfind("@")
    if at >= 0:
        # Everything up to the last "@" is user and password (a password may hold "/", "?" or "@").
        user, colon, _ = rest[:at].partition(":")
        rest = f"{user}{':' + _HIDDEN if colon else ''}@{rest[at + 1:]}"
    location, question, query = rest.partition("?")
    if question:
        query = "&".join(f"{name}={_HIDDEN}" if _SECRET_PARAMETER.search(name) else f"{name}{eq}{value}"
                         for name, eq, value in (item.partition("=") for item in query.split("&")))
    return f"{scheme}{sep}{location}{question}{query}"


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
