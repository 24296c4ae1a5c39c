"""Screens to text within one USSD page: 182 GSM-7 characters.

A screen is its text (with the session's values) under an optional note ("Wrong PIN, 2 tries
left"), then its lines: a menu's numbered options or a notice's items. When the lines do not fit,
they are split into pages with ``98 More`` and ``0 Back  00 Home`` in the caller's language (option
numbers stay the same on every page). A value too long for the screen (a 60-character name) is
shortened with ``..`` rather than pushing the screen over the limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dialogs.catalog import Catalogs
from dialogs.gsm7 import SCREEN_LIMIT, length, normalise
from dialogs.screens import End, Menu, Notice, Option, Screen

#: A value is never shortened below this many characters.
_SHORTEST = 8
#: The values that may be shortened to fit a screen: people's names (and a name with a number), and
#: what a merchant says a payment intent is for (``about``: its SMS has it whole).
SHORTENABLE = frozenset({"name", "recipient", "about"})


@dataclass(frozen=True)
class Rendered:
    text: str
    end: bool
    pages: int = 1


def visible_options(menu: Menu, values: Mapping[str, Any], conditions: Mapping[str, Any]) -> list[Option]:
    return [o for o in menu.options if o.when is None or conditions[o.when](values)]


def _shortened(values: Mapping[str, Any], excess: int) -> dict[str, Any] | None:
    """``values`` with the longest name cut by ``excess`` characters, or None if none can be.
    Only names (and descriptions) are ever cut: an amount, a fee or a reference is shown whole or
    the screen is wrong."""
    names = {k: v for k, v in values.items() if k in SHORTENABLE and isinstance(v, str) and len(v) > _SHORTEST + 2}
    if not names:
        return None
    key = max(names, key=lambda k: len(names[k]))
    value = names[key]
    # A bracketed value (a description, " (Order 42)") keeps its closing bracket.
    closing = ")" if value.endswith(")") else ""
    keep = max(_SHORTEST, len(value) - excess - 2 - len(closing))
    return {**values, key: value[:keep].rstrip() + ".." + closing}


def _head(catalogs: Catalogs, language: str, screen: Screen, values: Mapping[str, Any], note: str | None,
          room: int) -> str:
    """The note and the screen's text with ``values``, shortened to ``room`` characters if it can be."""
    # Only the values these texts name are normalised (a session carries a dozen; a screen shows
    # one or two). Internal values (``_own_phone``, a PIN's hash while it is being confirmed) are
    # never shown.
    names = catalogs.fields(language, screen.text)
    if note:
        names = names | catalogs.fields(language, note)
    shown = {k: normalise(str(values[k])) for k in names
             if k in values and not k.startswith("_") and not isinstance(values[k], list | dict)}
    while True:
        parts = [catalogs.text(language, note, shown, normalised=True)] if note else []
        text = catalogs.text(language, screen.text, shown, normalised=True)
        if text:
            parts.append(text)
        head = "\n".join(parts)
        excess = length(head) - room
        if excess <= 0:
            return head
        smaller = _shortened(shown, excess)
        if smaller is None:
            return head
        shown = smaller


def _fits(lines: Sequence[str], limit: int) -> bool:
    return length("\n".join(lines)) <= limit


def _paginate(head: str, items: list[str], more: str, back_home: str, limit: int) -> list[str]:
    pages: list[str] = []
    i = 0
    while i < len(items) or not pages:
        lines = [head] if not pages and head else []
        taken = 0
        while i + taken < len(items):
            last = i + taken + 1 == len(items)
            tail = [back_home] if last else [more, back_home]
            if _fits([*lines, *items[i:i + taken + 1], *tail], limit):
                taken += 1
            else:
                break
        if taken == 0 and i < len(items):
            # One line alone is too long for a page: cut it (names in a statement line can be long).
            tail = [more, back_home] if i + 1 < len(items) else [back_home]
            room = limit - length("\n".join([*lines, *tail])) - 1
            item = items[i]
            while length(item) > max(room, 4):
                item = item[:-3] + ".." if len(item) > 4 else item[:-1]
            items = [*items[:i], item, *items[i + 1:]]
            taken = 1
        i += taken
        lines.extend(items[i - taken:i])
        if i < len(items):
            lines.append(more)
        lines.append(back_home)
        pages.append("\n".join(lines))
    return pages


def render(catalogs: Catalogs, screen: Screen, *, language: str, values: Mapping[str, Any], note: str | None = None,
           page: int = 0, conditions: Mapping[str, Any] | None = None, limit: int = SCREEN_LIMIT) -> Rendered:
    """``screen`` as the caller sees it; ``page`` of a paginated one (clamped to the last)."""
    more = catalogs.text(language, "nav.more")
    back_home = f"{catalogs.text(language, 'nav.back')}  {catalogs.text(language, 'nav.home')}"
    if isinstance(screen, Menu):
        options = visible_options(screen, values, conditions or {})
        items = [f"{n}. {catalogs.text(language, o.label)}" for n, o in enumerate(options, 1)]
    elif isinstance(screen, Notice):
        raw = values.get(screen.items) if screen.items else None
        items = [normalise(str(line)) for line in raw] if isinstance(raw, list) else []
    else:
        items = []
    end = isinstance(screen, End)
    if not items and not isinstance(screen, Notice):
        return Rendered(_head(catalogs, language, screen, values, note, limit), end)
    # Leave room under the text for at least one line and the navigation.
    head = _head(catalogs, language, screen, values, note, limit - length(more) - length(back_home) - 24)
    whole = [head, *items] if head else list(items)
    if isinstance(screen, Menu) and _fits(whole, limit):
        return Rendered("\n".join(whole), end)
    if isinstance(screen, Notice) and _fits([*whole, back_home], limit):
        return Rendered("\n".join([*whole, back_home]), end)
    pages = _paginate(head, items, more, back_home, limit)
    return Rendered(pages[min(page, len(pages) - 1)], end, len(pages))

