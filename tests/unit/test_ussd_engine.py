"""The engine's reading of Africa's Talking hops, with a small journey built as data, the
in-process store and actions that count their calls (pure logic: no database, no HTTP)."""

from __future__ import annotations

import asyncio
import re

from dialogs.catalog import load_catalogs
from dialogs.engine import Caller, Hop, UssdEngine
from dialogs.journey import build_journeys
from dialogs.screens import Action, Confirm, End, Input, Journey, Menu, Notice, Option
from dialogs.session_store import MemorySessionStore
from dialogs.steps import ActionSpec, Invalid, Step

CATALOGS = load_catalogs()
PHONE = "+254712000111"


class Directory:
    """Who is who, in memory: one registered customer."""

    def __init__(self):
        self.users = {PHONE: Caller(7, "en", frozenset({"customer"}))}

    async def find(self, phone):
        return self.users.get(phone)

    def language_for(self, phone):
        return "en"

    def values_for(self, phone):
        return {"currency": "KES", "pin_length": "4"}


class Counting:
    def __init__(self):
        self.calls: list[tuple[str, str | None, str]] = []

    async def pay(self, step: Step) -> str:
        self.calls.append((step.idempotency_key, step.secret, step.values.get("typed_amount")))
        await asyncio.sleep(0.01)  # a payment takes a while: twin hops overlap here
        step.values.update(ref="K7Q2M9BXA4", amount="Ksh 5", recipient="x", balance="Ksh 1")
        return "ok" if step.secret == "2580" else "wrong"

    async def noop(self, step: Step) -> str:
        return "ok"


def _amount(typed, values):
    if not typed.isdigit():
        raise Invalid("err.amount")
    return typed


def _pin(typed, values):
    if not typed.isdigit():
        raise Invalid("err.pin_format")
    return typed


def engine(store=None):
    actions = Counting()
    journeys = build_journeys([
        Journey("register", "r", (End("r", "reg.welcome"),)),
        Journey("customer", "home", (
            Menu("home", "home", (Option("menu.send", "send.amount"), Option("menu.account", "acct.menu"))),
            Input("send.amount", "send.amount", field="typed_amount", validator="amount", next="send.confirm"),
            Confirm("send.confirm", "send.confirm", next="send.pay", cancel="pay.cancelled"),
            Action("send.pay", "", run="pay", outcomes=(("ok", "send.done"), ("wrong", "send.confirm"))),
            End("send.done", "send.done"),
            End("pay.cancelled", "pay.cancelled"),
            Menu("acct.menu", "acct.menu", (Option("acct.statement", "acct.stmt.show"),)),
            Notice("acct.stmt.show", "acct.stmt.show", items="lines"),
        )),
    ], registration="register", homes=[("customer", "customer")], catalogs=CATALOGS,
        actions={"pay": ActionSpec(actions.pay, frozenset({"ok", "wrong"}))},
        validators={"amount": _amount, "pin": _pin})
    store = store or MemorySessionStore(session_ttl_s=300, resume_window_s=180)
    return UssdEngine(journeys, store, Directory()), actions, store


def en(key, **values):
    return CATALOGS.text("en", key, values)


async def test_a_retried_hop_gets_the_same_screen_and_runs_nothing_twice():
    e, actions, _ = engine()
    await e.hop(Hop("s1", PHONE, ""))
    await e.hop(Hop("s1", PHONE, "1"))
    await e.hop(Hop("s1", PHONE, "1*500"))
    done = await e.hop(Hop("s1", PHONE, "1*500*2580"))
    again = await e.hop(Hop("s1", PHONE, "1*500*2580"))
    stale = await e.hop(Hop("s1", PHONE, "1*500"))  # an old copy arriving late
    assert done.end and done.text.startswith("Sent Ksh 5") and again == done and stale.text == done.text
    assert len(actions.calls) == 1


async def test_twin_hops_racing_pay_with_one_idempotency_key_and_answer_alike():
    e, actions, _ = engine()
    for text in ("", "1", "1*500"):
        await e.hop(Hop("s2", PHONE, text))
    first, second = await asyncio.gather(e.hop(Hop("s2", PHONE, "1*500*2580")), e.hop(Hop("s2", PHONE, "1*500*2580")))
    assert first.text == second.text and first.end
    assert {key for key, _, _ in actions.calls} == {actions.calls[0][0]}  # both runs (if two) share the key


async def test_only_the_newest_segment_drives_the_dialog():
    e, _, _ = engine()
    await e.hop(Hop("s3", PHONE, ""))
    empty = await e.hop(Hop("s3", PHONE, "*"))  # a lone "*": an empty answer
    assert en("note.empty") in empty.text and en("home") in empty.text
    menu = await e.hop(Hop("s3", PHONE, "**9*1"))  # "*9*1" typed at once: only "1" counts
    assert menu.text.startswith(en("send.amount", currency="KES"))


async def test_hostile_and_absurd_input_gets_a_screen_not_an_error():
    e, actions, _ = engine()
    await e.hop(Hop("s4", PHONE, ""))
    for typed in ("9" * 500, "<script>", "\x00\x07", "-1", "1e9", "٣"):
        reply = await e.hop(Hop("s4", PHONE, typed))
        assert not reply.end and (en("note.invalid_choice") in reply.text or en("home") in reply.text)
        await e.store.delete("s4")
        await e.hop(Hop("s4", PHONE, ""))
    await e.hop(Hop("s4", PHONE, "1"))
    refused = await e.hop(Hop("s4", PHONE, "1*lots"))
    assert en("err.amount") in refused.text and not actions.calls


async def test_an_extended_dial_code_preselects_a_path_but_never_types_a_pin():
    e, actions, _ = engine()
    reply = await e.hop(Hop("s5", PHONE, "1*500*2580"))
    assert reply.text.startswith(en("send.confirm", amount="", recipient="", fee="", total="").split(" ")[0])
    assert not actions.calls  # stopped at the confirmation: the PIN is typed there
    wrong = await e.hop(Hop("s6", PHONE, "7*1"))
    assert en("note.invalid_choice") in wrong.text and en("home") in wrong.text


async def test_navigation_back_home_and_cancel():
    e, actions, _ = engine()
    await e.hop(Hop("s7", PHONE, ""))
    assert (await e.hop(Hop("s7", PHONE, "1"))).text.startswith("Enter amount")
    assert (await e.hop(Hop("s7", PHONE, "1*0"))).text.startswith("Sauti")  # back
    await e.hop(Hop("s7", PHONE, "1*0*1"))
    await e.hop(Hop("s7", PHONE, "1*0*1*50"))
    cancelled = await e.hop(Hop("s7", PHONE, "1*0*1*50*0"))  # 0 on a confirmation cancels
    assert cancelled.end and cancelled.text == en("pay.cancelled") and not actions.calls
    await e.hop(Hop("s8", PHONE, ""))
    await e.hop(Hop("s8", PHONE, "1"))
    assert (await e.hop(Hop("s8", PHONE, "1*00"))).text.startswith("Sauti")  # home


async def test_a_wrong_pin_comes_back_to_the_confirmation_with_a_note():
    e, actions, _ = engine()
    for text in ("", "1", "1*500"):
        await e.hop(Hop("s9", PHONE, text))
    wrong = await e.hop(Hop("s9", PHONE, "1*500*1111"))
    assert wrong.text.startswith("Send") and not wrong.end
    assert actions.calls[0][1] == "1111"
    right = await e.hop(Hop("s9", PHONE, "1*500*1111*2580"))
    assert right.end and len(actions.calls) == 2 and actions.calls[0][0] != actions.calls[1][0]


async def test_the_pin_is_never_stored():
    e, _, store = engine()
    for text in ("", "1", "1*500", "1*500*9931"):
        await e.hop(Hop("s10", PHONE, text))
    state = await store.load("s10")
    # As a value of its own: the digits may occur by chance inside a timestamp or a digest.
    assert not re.search(r"(?<![\w.])9931(?!\w)", state.dumps()), state.dumps()


async def test_a_dropped_session_can_be_resumed_by_redialling():
    e, actions, _ = engine()
    for text in ("", "1", "1*750"):
        await e.hop(Hop("old", PHONE, text))
    offer = await e.hop(Hop("new", PHONE, ""))
    assert offer.text.startswith(en("sys.resume"))
    resumed = await e.hop(Hop("new", PHONE, "1"))
    assert resumed.text.startswith("Send") and not resumed.end
    done = await e.hop(Hop("new", PHONE, "1*2580"))
    assert done.end and actions.calls[0][2] == "750"  # the amount typed in the dropped session
    late = await e.hop(Hop("old", PHONE, "1*750*2580"))  # the old session cannot pay again
    assert late.end and late.text == en("sys.moved") and len(actions.calls) == 1
    fresh = await e.hop(Hop("newer", PHONE, ""))  # nothing left to resume
    assert fresh.text.startswith("Sauti")


async def test_starting_again_instead_of_resuming():
    e, _, _ = engine()
    for text in ("", "1"):
        await e.hop(Hop("a", PHONE, text))
    await e.hop(Hop("b", PHONE, ""))
    assert (await e.hop(Hop("b", PHONE, "2"))).text.startswith("Sauti")


async def test_concurrent_sessions_of_one_number_do_not_mix():
    e, actions, _ = engine()
    await asyncio.gather(e.hop(Hop("x", PHONE, "")), e.hop(Hop("y", PHONE, "")))
    await e.hop(Hop("x", PHONE, "1"))
    await e.hop(Hop("y", PHONE, "2"))
    await e.hop(Hop("x", PHONE, "1*100"))
    x_done, y_menu = await asyncio.gather(e.hop(Hop("x", PHONE, "1*100*2580")), e.hop(Hop("y", PHONE, "2*0")))
    assert x_done.end and y_menu.text.startswith("Sauti") and actions.calls[0][2] == "100"


async def test_a_session_id_used_by_another_number_is_refused():
    e, _, _ = engine()
    await e.hop(Hop("z", PHONE, ""))
    other = await e.hop(Hop("z", "+254712999888", "1"))
    assert other.end and other.text == en("sys.error")


async def test_long_lists_page_with_98_and_back_with_0():
    e, _, store = engine()
    await e.hop(Hop("p", PHONE, ""))
    await e.hop(Hop("p", PHONE, "2"))
    state = await store.load("p")
    state.values["lines"] = [f"{n:02d}/11 -Ksh {n},000 Someone With A Long Name" for n in range(1, 9)]
    await store.save(state, expected_version=state.version)
    first = await e.hop(Hop("p", PHONE, "2*1"))
    assert "98 More" in first.text and "01/11" in first.text
    second = await e.hop(Hop("p", PHONE, "2*1*98"))
    assert "01/11" not in second.text and "0 Back" in second.text
    back = await e.hop(Hop("p", PHONE, "2*1*98*0"))
    assert back.text == first.text
