"""Text from outside, without the characters no field of ours may hold: control characters (C0,
DEL, C1) and halves of surrogate pairs (JSON's ``"\ud800"`` decodes to one, alone; it is no
character and cannot be encoded). None is ever meaningful in a name, a number, a reference or a
command, and PostgreSQL cannot store a NUL or a lone surrogate at all (in ``text`` nor in
``jsonb``): a statement with one fails, which must never be how bad input is found. The edges
refuse them where a person or a client can be told (the JSON APIs), and drop them where the sender
cannot be asked again (provider callbacks, Africa's Talking's forms)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: C0 controls (tab and line breaks included), DEL, the C1 controls, and lone surrogates (a
#: decoded str holds a real pair as one character, so only halves match).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def without_controls(text: str) -> str:
    return CONTROL.sub("", text)


def plain(value: Any) -> Any:
    """A decoded JSON value with every string, keys included, `without_controls`."""
    if isinstance(value, str):
        return without_controls(value)
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value
