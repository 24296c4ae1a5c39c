"""The USSD engine: one hop in (Africa's Talking's ``sessionId``, ``phoneNumber`` and ``text``), one
screen out, with the session kept in a `dialogs.session_store` between hops.

How a hop is read. ``text`` is every input of the session joined by ``*``; the engine remembers how
many characters it already consumed, so:
- a hop whose text is no longer than that is a retry (or a stale copy): it gets the last screen
  again and nothing runs twice;
- otherwise only the newest segment drives the dialog (a ``*`` typed by the caller makes empty
  segments; they are read as an empty answer, never as an error);
- the first hop of a session may carry segments already (an extended dial code, ``*384*1*2#``):
  they are fed to the caller's menu one by one, stopping at the first that is refused and never
  typing a PIN for the caller.

Navigation everywhere: ``0`` back (cancel on a confirmation; the previous page of a long list, and
of a list an action pages itself), ``00`` home, ``98`` next page.
Actions run inside the hop that reaches them, with an idempotency key made of the session and hop
number, so a hop retried after a crash replays a payment instead of repeating it. A PIN lives only
in that hop (`dialogs.steps.Step.secret`).

Resume: while a session is mid-journey its phone number points at it for ``resume_window_s``; a
redial within that window (a new ``sessionId``) is offered to continue where the caller left off.
Never onto what a PIN showed (a mini statement: whoever dials next must type the PIN again), nor
past a PIN typed on the way to a new one. The session continued elsewhere ends on ``sys.moved``,
remembering the screen it was left on (what its end-of-session event records).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from dialogs.journey import JourneySet
from dialogs.render import Rendered, render, visible_options
from dialogs.screens import BACK, HOME, RESUME, Action, Confirm, End, Input, Menu, Notice, Screen
from dialogs.session import SessionState
from dialogs.session_store import SessionStore
from dialogs.steps import PIN_PROOFS, Invalid, Step

log = logging.getLogger(__name__)

#: Longer input than this is not an answer to any screen (hostile or a stuck key).
MAX_INPUT = 64
#: Actions chained in one hop at most (a journey that loops through actions is a bug, not a hang).
_MAX_CHAIN = 12
#: Attempts at saving when a twin hop keeps winning the race.
_SAVE_ATTEMPTS = 3


@dataclass(frozen=True)
class Caller:
    """Who is dialling, as far as the dialogs need to know."""

    user_id: int
    language: str
    roles: frozenset[str]
    locked_until: datetime | None = None
    closed: bool = False
    #: ``locked_until`` on the caller's clock.
    locked_until_text: str = ""
    #: Values found with the caller that their session starts with (their saved contacts, how many
    #: payment intents await them), so a menu hop never needs the database.
    values: Mapping[str, Any] = field(default_factory=dict)


class Callers(Protocol):
    async def find(self, phone: str) -> Caller | None: ...

    def language_for(self, phone: str) -> str:
        """The language to greet a new number in."""

    def values_for(self, phone: str) -> dict[str, Any]:
        """Values every session of this number starts with (its currency, its mobile money)."""


@dataclass(frozen=True)
class Hop:
    session_id: str
    phone: str
    text: str
    service_code: str = ""
    network_code: str = ""


@dataclass(frozen=True)
class Reply:
    text: str
    end: bool
    screen: str = ""

    def wire(self) -> str:
        """The body Africa's Talking expects: ``CON`` or ``END``, a space, the screen."""
        return ("END " if self.end else "CON ") + self.text


@dataclass
class UssdEngine:
    journeys: JourneySet
    store: SessionStore
    callers: Callers
    #: Called once a session ends on an END screen (completed), e.g. to record it; never raises.
    on_end: Callable[[SessionState], Awaitable[None]] | None = None
    _now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    # -- the hop ---------------------------------------------------------------------------------

    async def hop(self, hop: Hop) -> Reply:
        for _ in range(_SAVE_ATTEMPTS):
            # The number's resume pointer comes with the session (one round trip): a first hop needs it.
            state, pointer = await self.store.load_for_hop(hop.session_id, hop.phone)
            if state is None:
                expected = 0
                state = await self._open(hop, pointer)
            else:
                if state.phone != hop.phone:
                    # Another number on this session id: not this caller's session.
                    return self.screen_reply("sys.error", self.callers.language_for(hop.phone))
                if state.ended or len(hop.text) <= state.text_len:
                    return Reply(state.reply, state.ended, state.screen)
                expected = state.version
                await self._advance(state, hop)
            reply = self._show(state)
            if await self.store.save(state, expected_version=expected, resume=self._resume_pointer(state)):
                if state.ended:
                    await self._ended(state)
                return reply
            log.info("ussd session %s: a twin hop saved first; answering with its screen", hop.session_id)
        return self.screen_reply("sys.error", self.callers.language_for(hop.phone))

    async def _open(self, hop: Hop, pointer: str | None) -> SessionState:
        caller = await self.callers.find(hop.phone)
        values = self.callers.values_for(hop.phone)
        if caller is not None:
            values.update(caller.values)
        state = SessionState(session_id=hop.session_id, phone=hop.phone, service_code=hop.service_code,
                             language=caller.language if caller else self.callers.language_for(hop.phone),
                             screen=self.journeys.registration_start, user_id=caller.user_id if caller else None,
                             values=values, text_len=len(hop.text), hops=1)
        if caller is None:
            return state  # a new number registers first; a pre-selected path means nothing yet
        if caller.closed:
            state.screen = "sys.closed"
            return state
        if caller.locked_until is not None and caller.locked_until > self._now():
            state.screen = "sys.locked"
            state.values["until"] = caller.locked_until_text
            return state
        state.screen = self._home(state, caller.roles)
        state.values["roles"] = sorted(caller.roles)
        segments = hop.text.split("*") if hop.text else []
        if segments:
            key = self._key(state)
            for segment in segments:
                if not await self._prefill(state, segment.strip(), key):
                    break
        elif (previous := await self._resumable(pointer, hop.session_id, caller.user_id, state.screen)) is not None:
            state.values["resume_from"] = previous
            state.screen = "sys.resume"
        return state

    async def _advance(self, state: SessionState, hop: Hop) -> None:
        consumed = state.text_len
        # What this hop added: the text after the part already consumed (and its "*"); if the
        # history does not line up (a telco that sends only the last input), the last segment.
        typed = hop.text[consumed + 1:] if hop.text[consumed:consumed + 1] == "*" else hop.text.rsplit("*", 1)[-1]
        state.text_len = len(hop.text)
        state.hops += 1
        # Only the newest segment drives the dialog: "1*2" typed at once, or a lone "*", end in it.
        await self._input(state, typed.rsplit("*", 1)[-1].strip(), self._key(state))

    def _key(self, state: SessionState) -> str:
        return f"ussd:{state.session_id}:{state.hops}"

    # -- input -----------------------------------------------------------------------------------

    async def _prefill(self, state: SessionState, segment: str, key: str) -> bool:
        """Feed one segment of an extended dial code; False once it should stop."""
        screen = self.journeys.screen(state.screen)
        if isinstance(screen, Confirm | End) or (isinstance(screen, Input) and screen.secret):
            return False  # a PIN is always typed on its own screen
        before = (state.screen, state.page)
        await self._input(state, segment, key)
        return state.note is None and (state.screen, state.page) != before

    async def _input(self, state: SessionState, typed: str, key: str) -> None:
        screen = self.journeys.screen(state.screen)
        state.note = None
        if isinstance(screen, End):
            return
        if len(typed) > MAX_INPUT or not typed.isprintable():
            state.note = "note.invalid_choice"
            return
        if typed == "00":
            await self._goto(state, HOME, key)
            return
        if typed == "98" and state.page + 1 < self._render(state, screen).pages:
            state.page += 1
            return
        if typed == "0":
            if isinstance(screen, Confirm):
                await self._goto(state, screen.cancel, key)
            elif state.page > 0:
                state.page -= 1
            elif isinstance(screen, Input) and screen.paged:
                await self._typed(state, screen, typed, key)  # its action shows the page before
            else:
                await self._goto(state, BACK, key)
            return
        if isinstance(screen, Menu):
            await self._choose(state, screen, typed, key)
        elif isinstance(screen, Input | Confirm):
            await self._typed(state, screen, typed, key)
        elif isinstance(screen, Notice):
            await self._goto(state, screen.next, key)

    async def _choose(self, state: SessionState, menu: Menu, typed: str, key: str) -> None:
        options = visible_options(menu, state.values, self.journeys.conditions)
        if not (typed.isdigit() and typed.isascii() and 1 <= int(typed) <= len(options)):
            state.note = "note.invalid_choice" if typed else "note.empty"
            return
        option = options[int(typed) - 1]
        for name, value in option.sets:
            state.values[name] = value
            if name == "language" and value in self.journeys.catalogs.languages:
                state.language = value
        await self._goto(state, option.goto, key)

    async def _typed(self, state: SessionState, screen: Input | Confirm, typed: str, key: str) -> None:
        if not typed:
            state.note = "note.empty"
            return
        validator = self.journeys.validators[screen.validator if isinstance(screen, Input) else "pin"]
        try:
            value = validator(typed, state.values)
        except Invalid as refused:
            state.note = refused.note
            state.values.update(refused.values)
            return
        if isinstance(screen, Confirm) or screen.secret:
            await self._goto(state, screen.next, key, secret=value)
        else:
            state.values[screen.field] = value
            await self._goto(state, screen.next, key)

    # -- moving ----------------------------------------------------------------------------------

    def _home(self, state: SessionState, roles=None) -> str:
        if state.user_id is None:
            return self.journeys.registration_start
        return self.journeys.home_for(roles if roles is not None else state.values.get("roles", ()))

    async def _goto(self, state: SessionState, target: str, key: str, *, secret: str | None = None) -> None:
        pin_typed = secret is not None
        for _ in range(_MAX_CHAIN):
            if target in (HOME, BACK, RESUME):
                state.behind_pin = False
            if target == HOME:
                state.trail.clear()
                state.screen, state.page = self._home(state), 0
                return
            if target == BACK:
                state.screen = state.trail.pop() if state.trail else self._home(state)
                state.page = 0
                return
            if target == RESUME:
                await self._resume(state)
                return
            screen = self.journeys.screen(target)
            if not isinstance(screen, Action):
                state.go(target, remember=not _asks_pin(self.journeys.screens.get(state.screen)))
                # What a PIN opened (a balance, a statement, and its pages) is not for a redial to
                # resume; a PIN prompt again (a wrong PIN) is: it asks for the PIN.
                state.behind_pin = pin_typed and not _asks_pin(screen)
                return
            target = await self._run(state, screen, key, secret)
            secret = None  # a PIN serves the one action it was typed for
        raise RuntimeError(f"journey loops through actions at {target}")

    async def _run(self, state: SessionState, action: Action, key: str, secret: str | None) -> str:
        step = Step(session_id=state.session_id, phone=state.phone, user_id=state.user_id,
                    language=state.language, values=state.values, args=dict(action.args),
                    idempotency_key=f"{key}:{action.id}", secret=secret)
        outcome = await self.journeys.actions[action.run].run(step)
        target = action.target(outcome)
        if target is None:
            raise RuntimeError(f"action {action.run} at {action.id} gave undeclared outcome {outcome!r}")
        if step.new_user_id is not None:
            state.user_id = step.new_user_id
        if step.new_language in self.journeys.catalogs.languages:
            state.language = step.new_language
        if step.note is not None:
            state.note = step.note
        return target

    # -- resume ----------------------------------------------------------------------------------

    async def _resumable(self, previous: str | None, session_id: str, user_id: int, home: str) -> str | None:
        """``previous`` (the session the caller's number points at), if it is worth offering to resume."""
        if previous is None or previous == session_id:
            return None
        old = await self.store.load(previous)
        if old is None or old.ended or old.user_id != user_id or old.screen == home or old.screen.startswith("sys."):
            return None
        if old.behind_pin:
            # IMPORTANT: the old session shows what a PIN opened (a mini statement): resumed, it would
            # show it to whoever dials next without one.
            return None
        if any(key in old.values for key in PIN_PROOFS):
            # IMPORTANT: the old session holds a PIN typed there (the current one, checked, on the way
            # to a new one): whoever dials next must type it again, not carry it on.
            return None
        return previous

    async def _resume(self, state: SessionState) -> None:
        previous = state.values.pop("resume_from", None)
        old = await self.store.load(previous) if previous else None
        if old is None or old.ended:
            await self._goto(state, HOME, self._key(state))
            return
        state.screen, state.trail, state.page = old.screen, old.trail, old.page
        state.values = {**old.values, **{k: v for k, v in state.values.items() if k in ("roles",)}}
        state.language = old.language
        # The old session is over: a late hop on it says so instead of acting twice. Where it was
        # left is kept: its end-of-session event records that screen, not "moved".
        old.ended, old.moved_from, old.screen = True, old.screen, "sys.moved"
        old.reply = self._render(old, self.journeys.screen("sys.moved")).text
        await self.store.save(old, expected_version=old.version)
        await self.store.clear_resume(state.phone, old.session_id)

    # -- output ----------------------------------------------------------------------------------

    def _render(self, state: SessionState, screen: Screen) -> Rendered:
        return render(self.journeys.catalogs, screen, language=state.language, values=state.values,
                      note=state.note, page=state.page, conditions=self.journeys.conditions)

    def _show(self, state: SessionState) -> Reply:
        rendered = self._render(state, self.journeys.screen(state.screen))
        state.page = min(state.page, rendered.pages - 1)
        state.reply, state.ended, state.note = rendered.text, rendered.end, None
        state.updated_at = self._now().timestamp()
        return Reply(rendered.text, rendered.end, state.screen)

    def _resume_pointer(self, state: SessionState) -> str | None:
        """Point the caller's number at a session worth resuming (a registered caller past the main
        menu); forget it once the session ended, or shows what a PIN opened."""
        if state.ended or state.behind_pin:
            return "clear"
        if state.user_id is not None and state.trail and not state.screen.startswith("sys."):
            return "point"
        return None

    async def _ended(self, state: SessionState) -> None:
        if self.on_end is not None:
            try:
                await self.on_end(state)
            except Exception:  # recording is for operators; the caller's screen is already decided
                log.exception("ussd session %s: recording its end failed", state.session_id)

    def screen_reply(self, screen_id: str, language: str) -> Reply:
        """One of the engine's own END screens, outside any session."""
        text = self.journeys.catalogs.text(language, self.journeys.screen(screen_id).text)
        return Reply(text, True, screen_id)

    def error_reply(self, language: str) -> Reply:
        """The screen for a hop that failed unexpectedly (nothing is saved: a retry runs it again,
        with the same idempotency keys)."""
        return self.screen_reply("sys.error", language)


def _asks_pin(screen: Screen | None) -> bool:
    """Whether ``screen`` takes a PIN: a confirmation, or a secret input."""
    return isinstance(screen, Confirm) or (isinstance(screen, Input) and screen.secret)
