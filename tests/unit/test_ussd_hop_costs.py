"""What one hop costs the engine, counted on Sauti's own menus (issue 4): who is dialling is looked
up once per session, and every hop is one read and one save of the session, the first hop
included (the resume pointer comes with the read). Pure logic: the in-process store, counting."""

from __future__ import annotations

from collections import Counter

from dialogs.assembly import sauti_journeys
from dialogs.engine import Caller, Hop, UssdEngine
from dialogs.session import SessionState
from dialogs.session_store import MemorySessionStore

PHONE = "+254712000111"
JOURNEYS = sauti_journeys(None)


class Directory:
    """One registered customer; counts the lookups (each is a database query in the gateway)."""

    def __init__(self) -> None:
        self.lookups = 0

    async def find(self, phone: str) -> Caller | None:
        self.lookups += 1
        return Caller(7, "en", frozenset({"customer"})) if phone == PHONE else None

    def language_for(self, phone: str) -> str:
        return "en"

    def values_for(self, phone: str) -> dict:
        return {"currency": "KES", "provider": "M-Pesa", "pin_length": "4", "me": "0712 000111",
                "example": "0712345678", "service_code": "*384*1#"}


class CountingStore(MemorySessionStore):
    """The in-process store, counting each operation (each is a Redis round trip in the Redis store)."""

    def __init__(self) -> None:
        super().__init__(session_ttl_s=300, resume_window_s=180)
        self.calls: Counter[str] = Counter()

    async def load(self, session_id: str) -> SessionState | None:
        self.calls["load"] += 1
        return await super().load(session_id)

    async def load_for_hop(self, session_id: str, phone: str) -> tuple[SessionState | None, str | None]:
        self.calls["load_for_hop"] += 1
        return self._sessions_state(session_id), self._pointer(phone)

    async def save(self, state: SessionState, *, expected_version: int, resume: str | None = None) -> bool:
        self.calls["save"] += 1
        return await super().save(state, expected_version=expected_version, resume=resume)

    async def resume_candidate(self, phone: str) -> str | None:
        self.calls["resume_candidate"] += 1
        return self._pointer(phone)

    # The parent's reads, without counting them twice.
    def _sessions_state(self, session_id: str) -> SessionState | None:
        found = self._sessions.get(session_id)
        return SessionState.loads(found[2]) if found is not None and found[0] > self._clock() else None

    def _pointer(self, phone: str) -> str | None:
        found = self._resume.get(phone)
        return found[1] if found is not None and found[0] > self._clock() else None


def engine() -> tuple[UssdEngine, Directory, CountingStore]:
    directory, store = Directory(), CountingStore()
    return UssdEngine(JOURNEYS, store, directory), directory, store


async def browse(e: UssdEngine, session_id: str, inputs: list[str]) -> list[str]:
    typed: list[str] = []
    screens = [(await e.hop(Hop(session_id, PHONE, ""))).screen]
    for text in inputs:
        typed.append(text)
        screens.append((await e.hop(Hop(session_id, PHONE, "*".join(typed)))).screen)
    return screens


async def test_a_session_looks_its_caller_up_once_and_each_hop_is_one_read_and_one_save():
    e, directory, store = engine()
    # The benchmark's browsing session: My account, back, Send money, back, home.
    screens = await browse(e, "s1", ["6", "0", "1", "0", "00"])
    assert screens == ["home", "acct.menu", "home", "send.to", "home", "home"]
    assert directory.lookups == 1
    assert store.calls == Counter(load_for_hop=6, save=6)


async def test_a_retried_hop_is_one_read_and_saves_nothing():
    e, _, store = engine()
    await browse(e, "s1", ["6"])
    store.calls.clear()
    again = await e.hop(Hop("s1", PHONE, "6"))
    assert again.screen == "acct.menu" and store.calls == Counter(load_for_hop=1)


async def test_a_redial_offered_to_resume_reads_the_old_session_once_more():
    e, directory, store = engine()
    await browse(e, "s1", ["1"])  # dropped on "send to whom"
    store.calls.clear()
    offered = await e.hop(Hop("s2", PHONE, ""))
    assert offered.screen == "sys.resume"
    assert store.calls == Counter(load_for_hop=1, load=1, save=1) and directory.lookups == 2
