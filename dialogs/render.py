"""Screens to text within one USSD page: 182 GSM-7 characters.

A screen is its text (with the session's values) under an optional note ("Wrong PIN, 2 tries
left"), then its lines: a menu's numbered options or a notice's items. When the lines do not fit,
they are split into pages with ``98 More`` and ``0 Back  00 Home`` in the caller's language (option
numbers stay the same on every page). A value too long for the screen (a 60-character name) is
shortened with ``..`` rather than pushing the screen over the limit, counted in GSM-7 septets (an
extension character such as ``{`` or ``€`` takes two). Shortening stops once no value can get
shorter; a screen that still does not fit (never with the values Sauti shows: the screen tests
check every one) is cut at the limit rather than sent too long, and says so (`Rendered.cut`).

Lists an action pages itself (an agent's requests, requests to pay) are built by `list_page`: the
same navigation, and names cut so that a page fits under any note the engine may show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dialogs.catalog import Catalogs
from dialogs.gsm7 import SCREEN_LIMIT, length, normalise
from dialogs.screens import End, Menu, Notice, Option, Screen

#: A value is never shortened below this many GSM-7 septets (its ``..`` aside).
_SHORTEST = 8
#: The values that may be shortened to fit a screen: people's names (and a name with a number), and
#: what a merchant says a payment intent is for (``about``: its SMS has it whole).
SHORTENABLE = frozenset({"name", "recipient", "about"})
_ELLIPSIS = ".."
#: The notes the engine itself may show above any screen that takes input.
ENGINE_NOTES = ("note.invalid_choice", "note.empty")
#: A name in a list line is never cut below this many septets (its ``..`` aside).
_SHORTEST_IN_LIST = 4


@dataclass(frozen=True)
class Rendered:
    text: str
    end: bool
    pages: int = 1
    #: The screen did not fit even with its names shortened and was cut at the limit (a bug of the
    #: screen or its values: the screen tests fail on it).
    cut: bool = False


def visible_options(menu: Menu, values: Mapping[str, Any], conditions: Mapping[str, Any]) -> list[Option]:
    return [o for o in menu.options if o.when is None or conditions[o.when](values)]


def _prefix(text: str, septets: int) -> str:
    """The longest start of ``text`` that takes at most ``septets`` GSM-7 septets."""
    if length(text) <= septets:
        return text
    kept, used = [], 0
    for char in text:
        used += length(char)
        if used > septets:
            break
        kept.append(char)
    return "".join(kept)


def _cut(value: str, excess: int) -> str:
    """``value`` shorter by ``excess`` septets if it can be (never below `_SHORTEST`), with ``..``;
    a bracketed value (a description, " (Order 42)") keeps its closing bracket."""
    closing = ")" if value.endswith(")") else ""
    keep = max(_SHORTEST, length(value) - excess - len(_ELLIPSIS) - len(closing))
    return _prefix(value, keep).rstrip() + _ELLIPSIS + closing


def _shortened(values: Mapping[str, Any], excess: int) -> dict[str, Any] | None:
    """``values`` with the longest name that can still get shorter cut by ``excess`` septets, or
    None if none can. Only names (and descriptions) are ever cut: an amount, a fee or a reference
    is shown whole or the screen is wrong."""
    # IMPORTANT: a value is a candidate only if cutting it really makes it shorter (in septets): one
    # cut to its shortest already comes back the same, and offering it again looped for ever (with
    # ``{`` or ``€`` in a name, eight characters are sixteen septets).
    best: tuple[int, str, str] | None = None
    for key in SHORTENABLE:
        value = values.get(key)
        if not isinstance(value, str):
            continue
        before = length(value)
        cut = _cut(value, excess)
        if length(cut) < before and (best is None or before > best[0]):
            best = (before, key, cut)
    if best is None:
        return None
    _, key, cut = best
    return {**values, key: cut}


def navigation(catalogs: Catalogs, language: str) -> str:
    """``0 Back  00 Home`` in ``language``: the last line of every page of a long list (shared with
    the lists actions page themselves: an agent's requests, requests to pay)."""
    return f"{catalogs.text(language, 'nav.back')}  {catalogs.text(language, 'nav.home')}"


def list_name(name: str, width: int) -> str:
    """A name cut to fit a line of a list: at most ``width`` septets once normalised (an extension
    character takes two), with ``..`` when cut."""
    shown = normalise(name)
    if length(shown) <= width:
        return shown
    return _prefix(shown, width - len(_ELLIPSIS)).rstrip() + _ELLIPSIS


def list_page(catalogs: Catalogs, language: str, texts: Iterable[str], field: str,
              lines: Sequence[tuple[str, str]], *, more: bool, width: int) -> str:
    """The value ``field`` of a page of a list an action pages itself (shown by the catalog text of
    one of ``texts``): ``n. name figure`` lines, ``98 More`` when a next page follows, and the
    navigation. Names are cut to ``width`` septets, and shorter where the page would otherwise not
    fit one screen under the longest note the engine may show (the largest amounts, in French)."""
    nav = [catalogs.text(language, "nav.more")] if more else []
    nav.append(navigation(catalogs, language))
    names = [normalise(name) for name, _ in lines]
    rows = [(f"{n}. ", f" {normalise(figure)}") for n, (_, figure) in enumerate(lines, 1)]
    fixed = (max(length(catalogs.text(language, text, {field: ""})) for text in texts)
             + max(length(catalogs.text(language, note)) for note in ENGINE_NOTES) + 1
             + sum(length(start) + length(end) for start, end in rows)
             + sum(length(line) for line in nav) + len(rows) + len(nav) - 1)
    if rows:
        width = max(_SHORTEST_IN_LIST + len(_ELLIPSIS), min(width, (SCREEN_LIMIT - fixed) // len(rows)))
    shown = [f"{start}{list_name(name, width)}{end}" for (start, end), name in zip(rows, names, strict=True)]
    return "\n".join([*shown, *nav])


def _within(text: str, limit: int) -> tuple[str, bool]:
    """``text``, cut at ``limit`` septets (with ``..``) if it is longer, and whether it was: the last
    resort for a screen that shortening its names could not fit (a telco would cut it, or refuse it)."""
    if length(text) <= limit:
        return text, False
    return _prefix(text, limit - len(_ELLIPSIS)).rstrip() + _ELLIPSIS, True


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
        # Each round makes one value strictly shorter, or stops: this ends.
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
    back_home = navigation(catalogs, language)
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
        text, cut = _within(_head(catalogs, language, screen, values, note, limit), limit)
        return Rendered(text, end, cut=cut)
    # Leave room under the text for at least one line and the navigation.
    head = _head(catalogs, language, screen, values, note, limit - length(more) - length(back_home) - 24)
    whole = [head, *items] if head else list(items)
    if isinstance(screen, Menu) and _fits(whole, limit):
        return Rendered("\n".join(whole), end)
    if isinstance(screen, Notice) and _fits([*whole, back_home], limit):
        return Rendered("\n".join([*whole, back_home]), end)
    pages = _paginate(head, items, more, back_home, limit)
    text, cut = _within(pages[min(page, len(pages) - 1)], limit)
    return Rendered(text, end, len(pages), cut)

