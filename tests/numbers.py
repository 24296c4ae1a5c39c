"""Test phone numbers that never collide within a test run: the digits before a number's sandbox
suffix come from one counter per process (from a random start, so two runs on one database differ
too). Random digits alone collided: a few hundred numbers drawn from 10^5 meet a birthday clash
about half the time."""

from __future__ import annotations

import itertools
import random

_NEXT = itertools.count(random.randrange(10**6))


def unique_digits(width: int) -> str:
    """``width`` digits not handed out before in this process (for fewer than 10**width draws)."""
    return f"{next(_NEXT) % 10**width:0{width}d}"
