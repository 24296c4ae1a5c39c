"""What a piece of code asks PostgreSQL: every statement an engine runs while a ``with`` block
lasts, with the isolation level it ran under (``AUTOCOMMIT`` for a lone statement outside any
transaction, `db.engine.autocommit`). Hot paths keep their round trips few; these tests say so."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

Statement = tuple[str, str | None]


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[Statement]]:
    """The statements ``engine`` runs meanwhile: (SQL, isolation level or None)."""
    seen: list[Statement] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, conn.get_execution_options().get("isolation_level")))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
