"""What the NLU hands to the rest of Sauti: immutable value types and the parser interfaces.

`Parse` is the whole answer for one utterance. Amounts are `int` in major units (shillings, francs),
never floats; a currency is an ISO code ("KES", "XOF") and only present when the user said one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Contact:
    """One entry of the user's address book: `nickname` is how they saved it ("Mama"), if any;
    `phone` is E.164."""

    name: str
    nickname: str | None
    phone: str


@dataclass(frozen=True, slots=True)
class Entity:
    """A piece of the utterance: `value` is normalised (an int for amounts, E.164 for phones, a
    contact's name for recipients, a code for banks), `raw` is the text as said, over
    `text[start:end]`. `contact` is set for a recipient resolved against the address book."""

    type: str
    value: int | str
    raw: str
    start: int
    end: int
    contact: Contact | None = None


@dataclass(frozen=True, slots=True)
class Parse:
    """The reading of one utterance.

    `intent` is one of `nlu.intents.INTENTS`, or `nlu.intents.CLARIFY` when the best guess (kept in
    `guess`) was below the confidence threshold: code that acts on `intent` then never starts a
    payment from a doubtful reading. `missing` lists the slots the intent still needs, in the order
    a dialog should ask for them ("amount", "recipient", ...). `language` is the language detected
    ("en", "sw", "fr"), or the one given when the words do not tell.
    """

    text: str
    intent: str
    confidence: float
    entities: tuple[Entity, ...] = ()
    missing: tuple[str, ...] = ()
    language: str = "en"
    guess: str | None = None

    def entity(self, type_: str) -> Entity | None:
        """The first entity of a type, or None."""
        return next((e for e in self.entities if e.type == type_), None)

    def value(self, type_: str) -> int | str | None:
        """The value of the first entity of a type, or None."""
        found = self.entity(type_)
        return found.value if found is not None else None

    @property
    def amount(self) -> int | None:
        value = self.value("amount")
        return value if isinstance(value, int) else None

    @property
    def currency(self) -> str | None:
        value = self.value("currency")
        return value if isinstance(value, str) else None

    @property
    def recipient(self) -> Contact | None:
        found = self.entity("recipient")
        return found.contact if found is not None else None

    @property
    def needs_clarification(self) -> bool:
        return self.guess is not None


@runtime_checkable
class Parser(Protocol):
    """A synchronous NLU backend (the embedded parser)."""

    def parse(self, text: str, *, language: str | None = None, contacts: Sequence[Contact] = ()) -> Parse:
        ...


@runtime_checkable
class AsyncParser(Protocol):
    """An asynchronous NLU backend (a Rasa server over HTTP)."""

    async def parse(
        self, text: str, *, language: str | None = None, contacts: Sequence[Contact] = ()
    ) -> Parse:
        ...
