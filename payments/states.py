"""The payment state machine: one explicit table of allowed moves.

    created ─▶ pending ─▶ processing ─▶ succeeded ─▶ reversed | refunded
       │          │            │
       └──────────┴────────────┴──────▶ failed

``created``: recorded, nothing moved yet. ``pending``: money reserved or moved into clearing, the
provider not yet asked. ``processing``: the provider accepted the request; its result is awaited.
``succeeded`` and ``failed`` are final for the payment itself; a succeeded payment can later be
``reversed`` (provider reversal) or ``refunded`` (a refund payment). Every move is recorded with its
cause (`Transition`), so a payment's history reads like a story.

IMPORTANT: every external payment reaches exactly one of succeeded / failed, and a final state is
never left except succeeded → reversed / refunded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from payments.errors import PaymentsError


class PaymentStatus(enum.StrEnum):
    CREATED = "created"
    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"
    REFUNDED = "refunded"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def settled(self) -> bool:
        """Money reached its destination (and may since have come back)."""
        return self in (PaymentStatus.SUCCEEDED, PaymentStatus.REVERSED, PaymentStatus.REFUNDED)


_FINAL = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.REVERSED, PaymentStatus.REFUNDED})

S = PaymentStatus
ALLOWED: MappingProxyType[PaymentStatus, frozenset[PaymentStatus]] = MappingProxyType({
    S.CREATED: frozenset({S.PENDING, S.PROCESSING, S.SUCCEEDED, S.FAILED}),
    S.PENDING: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED}),
    S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset({S.REVERSED, S.REFUNDED}),
    S.FAILED: frozenset(),
    S.REVERSED: frozenset(),
    S.REFUNDED: frozenset(),
})


class InvalidTransition(PaymentsError):
    code = "invalid_transition"

    def __init__(self, current: PaymentStatus, target: PaymentStatus) -> None:
        super().__init__(f"a payment cannot go from {current} to {target}")
        self.current, self.target = current, target


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded move of a payment, with why it happened (``cause``: what triggered it, e.g.
    ``"stk_callback"``, ``"status_query"``, ``"recovery"``, ``"operator:alice"``)."""

    from_status: PaymentStatus | None
    to_status: PaymentStatus
    cause: str
    at: datetime | None = None
    details: Any = field(default_factory=dict)


def check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    """Raise `InvalidTransition` unless ``current → target`` is in the table."""
    if target not in ALLOWED[current]:
        raise InvalidTransition(current, target)


def is_replay(current: PaymentStatus, target: PaymentStatus) -> bool:
    """A duplicate or late signal for a move that already happened (a second success callback,
    a failure report for a payment already failed): it changes nothing and is not an error."""
    return current == target or (current.is_final and target in (S.PENDING, S.PROCESSING))
