"""What journeys plug in: actions (the only code with side effects) and input validators, and what
each is given (`Step`). Both are looked up by name in tables the composition root builds and hands
to `dialogs.journey.build_journeys`, never in a global registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Invalid(Exception):
    """Input a validator refuses: ``note`` is the catalog key shown above the screen again,
    ``values`` what that note shows."""

    def __init__(self, note: str, **values: Any) -> None:
        super().__init__(note)
        self.note = note
        self.values = values


#: Values an action keeps in the session as proof that a PIN was typed there: the hash of a new PIN
#: awaiting its second entry, and "the current PIN was right" on the way to a new one. A session
#: holding one is never resumed by another (`dialogs.engine`).
PIN_HASH, PIN_OK = "_pin_hash", "_pin_ok"
PIN_PROOFS = frozenset({PIN_HASH, PIN_OK})


@dataclass
class Step:
    """What an action sees: the session's values (which it may update), the caller, the PIN typed
    in this hop if any (``secret``, never stored), its arguments, and an idempotency key unique to
    this hop of this session (a retried hop gets the same key)."""

    session_id: str
    phone: str
    user_id: int | None
    language: str
    values: dict[str, Any]
    args: Mapping[str, str]
    idempotency_key: str
    secret: str | None = field(default=None, repr=False)
    #: Set by the action: a catalog key shown above the next screen ("Wrong PIN, 2 tries left").
    note: str | None = None
    #: Set by the action when the caller registered or changed language.
    new_user_id: int | None = None
    new_language: str | None = None
    #: Set by a spoken command (`dialogs.voice_commands`): the payment is made on the voice or app
    #: channel and keeps what was heard (``channel``, ``transcript``, ``confidence``), confirmed by
    #: the PIN typed on the keypad.
    spoken: Mapping[str, Any] | None = None

    def say(self, note: str, **values: Any) -> None:
        self.note = note
        self.values.update(values)

    def say_wrong_pin(self, attempts_left: int) -> None:
        """A wrong PIN's note: the tries left, and on the last one a warning that the next wrong
        PIN locks the account (catalogs have no plurals: "1 tries left" read as a mistake)."""
        if attempts_left == 1:
            self.say("err.wrong_pin_last", tries="1")
        else:
            self.say("err.wrong_pin", tries=str(attempts_left))


@dataclass(frozen=True)
class ActionSpec:
    """An action: ``run(step)`` returns one of ``outcomes``."""

    run: Callable[[Step], Awaitable[str]]
    outcomes: frozenset[str]


#: A validator: ``(typed text, the session's values) -> the value to keep``; raises `Invalid`.
Validator = Callable[[str, Mapping[str, Any]], str]

#: A condition on a menu option: ``(the session's values) -> shown or not``.
Condition = Callable[[Mapping[str, Any]], bool]
