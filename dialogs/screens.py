"""The screens a journey is made of, as small immutable values (no behaviour, no side effects).

A screen names its text by a catalog key (`dialogs.catalog`), never by the text itself, so one
journey serves every language. Where a screen leads is a screen id, or one of the engine's
targets: ``@home`` (the caller's main menu), ``@back`` (the screen before), ``@resume`` (the dropped
session being resumed).

- `Menu`: numbered options, each leading somewhere (and optionally setting values, e.g. a language).
- `Input`: one value typed by the caller, checked by a named validator.
- `Confirm`: the one confirmation of a money movement: the summary, then the PIN (``0`` cancels).
- `Action`: not shown; runs a named action (the only place with side effects) whose outcome picks
  the next screen.
- `Notice`: information that continues (``0`` back, ``00`` home), e.g. a mini statement whose lines
  paginate.
- `End`: the last screen of a session (``END``).

Secret inputs (PINs) are used in the hop that receives them and never stored: a secret `Input` or
a `Confirm` must lead straight to an `Action` (`dialogs.journey` checks it at start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

HOME, BACK, RESUME = "@home", "@back", "@resume"
#: Targets the engine resolves itself.
ENGINE_TARGETS = frozenset({HOME, BACK, RESUME})


@dataclass(frozen=True)
class Option:
    """One numbered line of a menu. ``when``: a condition name (the option shows only where it
    holds, e.g. ``mpesa`` for M-Pesa-only services); ``sets``: values the choice records."""

    label: str
    goto: str
    when: str | None = None
    sets: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Screen:
    id: str
    text: str


@dataclass(frozen=True)
class Menu(Screen):
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class Input(Screen):
    field: str = ""
    validator: str = ""
    next: str = ""
    #: A PIN: used in this hop by the action it leads to, never kept.
    secret: bool = False
    #: A list its action pages itself (``98`` more): ``0`` is an answer to it, for that action to
    #: show the previous page (or go back from the first), not the engine's "back".
    paged: bool = False


@dataclass(frozen=True)
class Confirm(Screen):
    """Summary text (amount, fee, total, recipient), then "PIN to confirm, 0 to cancel"."""

    next: str = ""
    cancel: str = HOME


@dataclass(frozen=True)
class Action(Screen):
    """Runs action ``run`` with ``args``; ``outcomes`` maps each outcome it can give to a screen.
    ``text`` is unused (an action is never shown) and may be empty."""

    run: str = ""
    args: tuple[tuple[str, str], ...] = ()
    outcomes: tuple[tuple[str, str], ...] = ()

    def target(self, outcome: str) -> str | None:
        return dict(self.outcomes).get(outcome)


@dataclass(frozen=True)
class Notice(Screen):
    """Information that continues. ``items``: the value holding a list of lines to show under the
    text (paginated when long). Any key but the navigation keys goes to ``next``."""

    items: str | None = None
    next: str = BACK


@dataclass(frozen=True)
class End(Screen):
    pass


@dataclass(frozen=True)
class Journey:
    """A named group of screens with its first screen: what a role's menu, or registration, is."""

    name: str
    start: str
    screens: tuple[Screen, ...] = field(default=())


def targets(screen: Screen) -> list[str]:
    """Every screen id (or engine target) ``screen`` can lead to."""
    if isinstance(screen, Menu):
        return [o.goto for o in screen.options]
    if isinstance(screen, Input):
        return [screen.next]
    if isinstance(screen, Confirm):
        return [screen.next, screen.cancel]
    if isinstance(screen, Action):
        return [goto for _, goto in screen.outcomes]
    if isinstance(screen, Notice):
        return [screen.next]
    return []
