"""The posting rules, as immutable value types checked on construction.

A transfer is a set of legs (account, signed amount in minor units, currency); a positive amount
credits the account (its balance grows), a negative one debits it.

IMPORTANT: the legs of a transfer sum to zero in each currency, no leg is zero, and every amount is an
integer within the configured per-transaction maximum. These rules are checked here, before anything
is sent to the database, and again inside the database function that writes the postings.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from payments.errors import AmountOutOfRange, InvalidRequest, UnbalancedTransfer
from payments.money import Currency, Money

#: Hard ceiling on one leg, whatever the configuration says: far above any real payment, far below
#: the 64-bit limit, so sums of many legs can never overflow.
ABSOLUTE_MAX_MINOR = 10**13
MAX_KEY_LENGTH = 200
MAX_LEGS = 16


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a transfer: ``amount`` minor units credited (positive) or debited (negative)."""

    account_id: int
    amount: int
    currency: Currency
    #: Credit exactly this account even if it is sharded (used to consolidate shards).
    exact: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.account_id, int) or isinstance(self.account_id, bool) or self.account_id <= 0:
            raise InvalidRequest(f"invalid account id {self.account_id!r}")
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise AmountOutOfRange(f"amount must be an integer of minor units, got {self.amount!r}")
        if self.amount == 0:
            raise AmountOutOfRange("a leg cannot move zero")
        if abs(self.amount) > ABSOLUTE_MAX_MINOR:
            raise AmountOutOfRange(f"amount {self.amount} is out of range")
        if not isinstance(self.currency, Currency):
            object.__setattr__(self, "currency", Currency.parse(str(self.currency)))

    def as_json(self) -> dict[str, Any]:
        if self.exact:
            return {"a": self.account_id, "m": self.amount, "c": self.currency.value, "x": True}
        return {"a": self.account_id, "m": self.amount, "c": self.currency.value}


def check_key(key: object) -> None:
    """An idempotency key: 1 to `MAX_KEY_LENGTH` characters, not all blank."""
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters")


def _check_legs(legs: tuple[Leg, ...]) -> None:
    if len(legs) < 2:
        raise UnbalancedTransfer("a transfer needs at least two legs")
    if len(legs) > MAX_LEGS:
        raise InvalidRequest(f"a transfer has at most {MAX_LEGS} legs")
    sums: dict[Currency, int] = defaultdict(int)
    for leg in legs:
        if not isinstance(leg, Leg):
            raise InvalidRequest(f"not a leg: {leg!r}")
        sums[leg.currency] += leg.amount
    unbalanced = {c.value: s for c, s in sums.items() if s != 0}
    if unbalanced:
        raise UnbalancedTransfer(f"legs do not sum to zero: {unbalanced}")


_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


def _frozen(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not metadata:
        return _NO_METADATA  # the common case, and immutable, so one shared copy does
    data = dict(metadata)
    # Checked with the encoder the ledger sends ops with (`payments.ledger`), not `json`: `json`
    # accepts what orjson refuses (a key that is not a string, an integer beyond 64 bits), and such
    # a request would only fail once in a batch, there failing the other operations with it.
    try:
        orjson.dumps(data)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise InvalidRequest(f"metadata must be JSON: {exc}") from None
    return MappingProxyType(data)


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Move money now. ``key`` makes it idempotent: the same key and request give the same transfer."""

    key: str
    legs: tuple[Leg, ...]
    kind: str = "transfer"
    reference: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_key(self.key)
        object.__setattr__(self, "legs", tuple(self.legs))
        _check_legs(self.legs)
        object.__setattr__(self, "metadata", _frozen(self.metadata))

    def fingerprint(self) -> str:
        """What "the same request" means for idempotency: the legs, kind and reference."""
        return _fingerprint("transfer", _legs_json(self.legs), self.kind, self.reference)

    def as_op(self) -> dict[str, Any]:
        legs = _legs_json(self.legs)
        return {"op": "transfer", "key": self.key, "hash": _fingerprint("transfer", legs, self.kind, self.reference),
                "kind": self.kind, "ref": self.reference, "meta": dict(self.metadata), "legs": legs}


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """Reserve the debits of ``legs`` now; post (apply the legs) or void (release) later, once."""

    key: str
    legs: tuple[Leg, ...]
    kind: str = "hold"
    reference: str | None = None
    expires_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_key(self.key)
        object.__setattr__(self, "legs", tuple(self.legs))
        _check_legs(self.legs)
        object.__setattr__(self, "metadata", _frozen(self.metadata))
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise InvalidRequest("a hold's expiry must carry a time zone")

    def fingerprint(self) -> str:
        return _fingerprint("hold", _legs_json(self.legs), self.kind, self.reference)

    def as_op(self) -> dict[str, Any]:
        legs = _legs_json(self.legs)
        return {"op": "hold", "key": self.key, "hash": _fingerprint("hold", legs, self.kind, self.reference),
                "kind": self.kind, "ref": self.reference, "meta": dict(self.metadata),
                "expires": self.expires_at.isoformat() if self.expires_at else None, "legs": legs}


@dataclass(frozen=True, slots=True)
class ReverseRequest:
    """Undo a transfer with a new transfer of the opposite legs (postings are never changed)."""

    key: str
    transfer_id: int
    reference: str | None = None

    def __post_init__(self) -> None:
        check_key(self.key)
        if not isinstance(self.transfer_id, int) or self.transfer_id <= 0:
            raise InvalidRequest(f"invalid transfer id {self.transfer_id!r}")

    def fingerprint(self) -> str:
        return hashlib.sha256(f"reverse:{self.transfer_id}:{self.reference}".encode()).hexdigest()

    def as_op(self) -> dict[str, Any]:
        return {"op": "reverse", "key": self.key, "hash": self.fingerprint(), "t": self.transfer_id,
                "kind": "reversal", "ref": self.reference, "meta": {"reverses": self.transfer_id}}


def _legs_json(legs: tuple[Leg, ...]) -> list[dict[str, Any]]:
    return [leg.as_json() for leg in legs]


def _fingerprint(op: str, legs: list[dict[str, Any]], kind: str, reference: str | None) -> str:
    """IMPORTANT: stored with every transfer and hold; changing how it is computed would turn a
    replay of an old request into a conflict."""
    body = json.dumps([op, kind, reference, legs], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def payment_legs(
    source: int,
    destination: int,
    amount: Money,
    *,
    fee: Money | None = None,
    fee_account: int | None = None,
) -> tuple[Leg, ...]:
    """Legs of a payment: the payer is debited amount + fee, the payee credited amount, the fee
    account credited the fee (a 3-leg transfer when there is a fee)."""
    cur = amount.currency
    if amount.minor <= 0:
        raise AmountOutOfRange("an amount must be more than zero")
    if fee is None or fee.minor == 0:
        return (Leg(source, -amount.minor, cur), Leg(destination, amount.minor, cur))
    if fee.currency is not cur:
        raise InvalidRequest("the fee must be in the payment's currency")
    if fee.minor < 0 or fee_account is None:
        raise InvalidRequest("a fee needs a fee account and cannot be negative")
    return (
        Leg(source, -(amount.minor + fee.minor), cur),
        Leg(destination, amount.minor, cur),
        Leg(fee_account, fee.minor, cur),
    )
