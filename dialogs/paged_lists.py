"""Lists an action pages itself (an agent's cash requests, the requests to pay): which page ``98``
and ``0`` show, kept in the session between hops.

Such a list is read a page at a time from the database, newest first, each page starting before
the last row of the one above it; the session keeps where the next page starts (``next_key``, set
by the action as it shows a page) and where each page shown so far started (``pages_key``), so
that ``0`` goes back one page, and from the first leaves the list. A page whose rows all ended
meanwhile (served, paid, expired) shows the first page again, if any is left.

The action supplies ``show(before)``: show the page starting before that row (None: the first),
False when there is none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

#: Show the page starting before this row (None: the first); False when it has no rows.
Show = Callable[[int | None], Awaitable[bool]]


async def first_page(values: MutableMapping[str, Any], pages_key: str, show: Show) -> bool:
    """Show the list's first page; False when the list is empty."""
    if not await show(None):
        return False
    values[pages_key] = [None]
    return True


async def turn(values: MutableMapping[str, Any], pages_key: str, next_key: str, typed: str,
               show: Show) -> str | None:
    """``98`` (the next page, when there is one) or ``0`` (the page before) typed on the list:
    ``more`` (a page is shown), ``empty`` (no row is left), ``back`` (``0`` on the first page: leave
    the list); None when ``typed`` is neither (a line picked, or a mistake)."""
    pages = list(values.get(pages_key) or [None])
    if typed == "98" and values.get(next_key) is not None:
        pages.append(values[next_key])
    elif typed == "0":
        if len(pages) == 1:
            return "back"
        pages.pop()
    else:
        return None
    if not await show(pages[-1]):
        if pages[-1] is None or not await show(None):
            return "empty"
        pages = [None]
    values[pages_key] = pages
    return "more"
