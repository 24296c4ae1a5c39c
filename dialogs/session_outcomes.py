"""How USSD sessions ended, recorded for operators (table ``ussd_sessions``, migration 0006), and the
drop-off report read from it.

Two writers, whichever comes first, each filling what it knows: the engine when its END screen closes
a session (``completed``, with the screen), and Africa's Talking's end-of-session event (its status,
hop count and duration; for a session it reports ``Incomplete``, the screen where the caller gave up,
taken from the session store). Nothing from the input history (PINs) or the screens' text (names,
balances) is stored. This is the one module of the dialogs that writes to the database directly: the
table belongs to the USSD channel, not to payments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import autocommit
from db.schema import ussd_sessions

#: Africa's Talking's ``status`` values and what they mean for us.
AT_OUTCOMES = {"Success": "completed", "Incomplete": "dropped", "Failed": "failed"}


@dataclass(frozen=True)
class SessionEnd:
    session_id: str
    phone: str
    outcome: str
    last_screen: str | None = None
    journey: str | None = None
    service_code: str = ""
    network_code: str = ""
    at_status: str | None = None
    hops: int | None = None
    duration_ms: int | None = None
    error_message: str | None = None


def _record_end_statement():
    """The upsert `record_end` runs: built once, as its parameters change and its shape does not
    (building it, ``excluded`` and all, cost more CPU than running it)."""
    statement = insert(ussd_sessions)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[ussd_sessions.c.session_id],
        set_={
            "outcome": case((excluded.at_status.is_not(None), excluded.outcome), else_=ussd_sessions.c.outcome),
            "at_status": func.coalesce(excluded.at_status, ussd_sessions.c.at_status),
            "last_screen": func.coalesce(ussd_sessions.c.last_screen, excluded.last_screen),
            "journey": func.coalesce(ussd_sessions.c.journey, excluded.journey),
            "network_code": func.coalesce(func.nullif(excluded.network_code, ""), ussd_sessions.c.network_code),
            "hops": func.coalesce(excluded.hops, ussd_sessions.c.hops),
            "duration_ms": func.coalesce(excluded.duration_ms, ussd_sessions.c.duration_ms),
            "error_message": func.coalesce(excluded.error_message, ussd_sessions.c.error_message),
        })


_RECORD_END = _record_end_statement()


async def record_end(engine: AsyncEngine, end: SessionEnd) -> None:
    """Insert the session's end, or complete the row the other writer made: Africa's Talking's
    status decides the outcome; our screen id is kept when the event has none."""
    # One statement, atomic on its own: no BEGIN and COMMIT around it (one of these per session).
    async with autocommit(engine).connect() as conn:
        await conn.execute(_RECORD_END, dict(end.__dict__))


@dataclass(frozen=True)
class ScreenCount:
    screen: str
    journey: str
    dropped: int
    completed: int
    failed: int


async def drop_offs(engine: AsyncEngine, since: datetime) -> list[ScreenCount]:
    """Sessions ended since ``since``, by the screen they ended on: most drop-offs first."""
    c = ussd_sessions.c
    counts = [func.count().filter(c.outcome == name).label(name) for name in ("dropped", "completed", "failed")]
    query = (select(func.coalesce(c.last_screen, "(unknown)").label("screen"),
                    func.coalesce(c.journey, "").label("journey"), *counts)
             .where(c.ended_at >= since).group_by("screen", "journey")
             .order_by(counts[0].desc(), func.count().desc(), "screen"))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [ScreenCount(r.screen, r.journey, r.dropped, r.completed, r.failed) for r in rows]
