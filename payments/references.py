"""Short references: what people read, type and say for a payment (USSD screens, SMS receipts,
voice replies), ten letters and digits as M-Pesa users know them (``K7Q2M9BXA4``).

Why not the public id: ``pay_01m8pbc3tw8d7ewds5qrnn6ywj`` takes 30 of a USSD screen's 182
characters, nobody reads it to a support agent over the phone, and a text-to-speech voice spells
it for ten seconds. API clients keep using public ids; people use references; both find the payment.

How: the row id (a payment's or a cash request's, told apart by the lowest bit) goes through a fixed
permutation of the 50-bit numbers (a four-round Feistel network) and is written in Crockford's base
32 (no I, L, O or U). So a reference is unique by construction (no column, no collision to retry),
consecutive payments do not look consecutive, and reading one back undoes both steps: no lookup
table. What people type back is read leniently (lower case, spaces and dashes, O for 0, I or L for
1). A reference is not a secret and opens nothing on its own: lookups by it go through the same
API-key scoping as public ids.
"""

from __future__ import annotations

import enum

#: Crockford's base 32: digits and upper-case letters without I, L, O and U.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10
_BITS = 5 * LENGTH
_HALF = _BITS // 2
_MASK = (1 << _HALF) - 1
# Round keys of the permutation. Fixed forever: changing them changes every reference ever shown.
_KEYS = (0x1F3A9C5, 0x0B7E151, 0x1628AED, 0x09E3779)
_READ_AS = {**{c: c for c in ALPHABET}, "O": "0", "I": "1", "L": "1"}
_VALUE = {c: ALPHABET.index(v) for c, v in _READ_AS.items()}


class ReferenceKind(enum.IntEnum):
    """What a reference names (the lowest bit of the permuted number)."""

    PAYMENT = 0
    CASH_REQUEST = 1


#: Row ids above this have no reference (2^49 of each kind: beyond any ledger's lifetime).
MAX_ID = (1 << (_BITS - 1)) - 1


def _round(half: int, key: int) -> int:
    # Any function works in a Feistel round; this one mixes every input bit into the output.
    x = (half ^ key) * 0x2545F491
    x ^= x >> 13
    x = (x * 0x5BD1E995) & 0xFFFFFFFFFFFF
    return (x ^ (x >> 17)) & _MASK


def _permute(n: int) -> int:
    left, right = n >> _HALF, n & _MASK
    for key in _KEYS:
        left, right = right, left ^ _round(right, key)
    return (left << _HALF) | right


def _unpermute(n: int) -> int:
    left, right = n >> _HALF, n & _MASK
    for key in reversed(_KEYS):
        left, right = right ^ _round(left, key), left
    return (left << _HALF) | right


def reference(kind: ReferenceKind, row_id: int) -> str:
    """The reference of a payment's or a cash request's row id."""
    if not 0 < row_id <= MAX_ID:
        raise ValueError(f"no reference for row id {row_id}")
    n = _permute(row_id << 1 | kind)
    return "".join(ALPHABET[(n >> shift) & 31] for shift in range(_BITS - 5, -1, -5))


def payment_reference(payment_id: int) -> str:
    return reference(ReferenceKind.PAYMENT, payment_id)


def cash_request_reference(request_id: int) -> str:
    return reference(ReferenceKind.CASH_REQUEST, request_id)


def read_reference(text: str) -> tuple[ReferenceKind, int] | None:
    """What a reference names, as typed or read back by a person; None when ``text`` is not one."""
    cleaned = text.strip().upper().replace(" ", "").replace("-", "")
    if len(cleaned) != LENGTH or any(c not in _VALUE for c in cleaned):
        return None
    n = 0
    for c in cleaned:
        n = n << 5 | _VALUE[c]
    tagged = _unpermute(n)
    row_id = tagged >> 1
    return (ReferenceKind(tagged & 1), row_id) if row_id > 0 else None
