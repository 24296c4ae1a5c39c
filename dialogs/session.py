"""One USSD session's state, as the session store keeps it between hops (JSON).

What is kept: where the caller is (screen, the screens before it, the page of a long list), the
values typed so far (amounts, numbers, never a PIN), how much of Africa's Talking's ``text`` has been
consumed (its length: the text itself holds the PINs), and the last answer, so a retried hop gets it
again without anything happening twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

#: How many screens "0 back" can walk back through.
TRAIL_MAX = 20


@dataclass
class SessionState:
    session_id: str
    phone: str
    language: str
    screen: str
    user_id: int | None = None
    trail: list[str] = field(default_factory=list)
    page: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    #: A catalog key shown above the current screen once (an error, "wrong PIN").
    note: str | None = None
    #: Characters of AT's ``text`` already consumed; a hop whose text is no longer is a retry.
    text_len: int = 0
    hops: int = 0
    reply: str = ""
    ended: bool = False
    #: Bumped at every save: a save that finds another version lost a race with a twin hop.
    version: int = 0
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    service_code: str = ""
    #: The screen shown was reached by typing a PIN (a balance, a statement): never offered to a
    #: redial to resume, as whoever dials next must type the PIN again to see it.
    behind_pin: bool = False
    #: Where the caller left this session when a redial continued it (``screen`` is then
    #: ``sys.moved``): the screen its end is recorded at.
    moved_from: str = ""

    def go(self, screen: str, *, remember: bool = True) -> None:
        """Show ``screen`` next, remembering the current one for "0 back" (unless ``remember`` is
        False: "back" never returns to a PIN prompt)."""
        if screen != self.screen and remember:
            self.trail.append(self.screen)
            del self.trail[:-TRAIL_MAX]
        self.screen = screen
        self.page = 0

    def dumps(self) -> str:
        # Every field is already JSON (str, int, lists and dicts of them): no deep copy needed.
        return _encode(self.__dict__)

    @classmethod
    def loads(cls, raw: str | bytes) -> SessionState:
        data = _decode(raw)  # str or bytes alike
        try:
            return cls(**data)
        except TypeError:
            # Written by a newer release with a field this one does not know (a rolling deploy
            # shares Redis): keep what this release knows.
            return cls(**{k: v for k, v in data.items() if k in _FIELDS})


_FIELDS = frozenset(f.name for f in fields(SessionState))


# A session is written and read at every hop: orjson does both in a fraction of the json module's
# time (a tenth of a menu hop's CPU went to it). Keys that are not strings are written as strings,
# as the json module does.
def _encode(state: dict[str, Any]) -> str:
    return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS).decode()


_decode = orjson.loads
