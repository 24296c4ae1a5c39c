"""The sandbox provider's own books: every completed transaction, as the provider would list it.

Reconciliation compares our ledger against a provider's statement; the sandbox keeps one so that
comparison can be tested (Daraja: ``GET /_sandbox/statement``; Wave: ``GET /v1/transactions``).
Amounts are integers in minor units, signed from the provider account's point of view: money in
is positive.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class UnknownAccount(KeyError):
    pass


@dataclass(frozen=True, slots=True)
class BookEntry:
    transaction_id: str
    kind: str  # stk_push, c2b, b2c, b2b, reversal, checkout_payment, payout, refund, payout_reversal
    account: str
    amount_minor: int
    fee_minor: int
    currency: str
    party: str
    at: datetime
    status: str  # completed, reversed, refunded
    balance_after_minor: int
    #: The request's own id: CheckoutRequestID, OriginatorConversationID, session or payout id.
    reference: str | None = None
    client_reference: str | None = None
    counterparty_name: str | None = None
    #: For a reversal or refund: the transaction it undoes.
    reverses: str | None = None

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["at"] = self.at.isoformat()
        return row


class Books:
    """Balances per account and the append-only list of entries that moved them."""

    def __init__(self, currency: str, opening_minor: dict[str, int]) -> None:
        self.currency = currency
        self._balances = dict(opening_minor)
        self._entries: list[BookEntry] = []

    def balance(self, account: str) -> int:
        try:
            return self._balances[account]
        except KeyError:
            raise UnknownAccount(account) from None

    def record(
        self,
        *,
        transaction_id: str,
        kind: str,
        account: str,
        amount_minor: int,
        party: str,
        at: datetime,
        fee_minor: int = 0,
        reference: str | None = None,
        client_reference: str | None = None,
        counterparty_name: str | None = None,
        reverses: str | None = None,
    ) -> BookEntry:
        """Append an entry; the account moves by ``amount_minor - fee_minor``."""
        after = self.balance(account) + amount_minor - fee_minor
        self._balances[account] = after
        entry = BookEntry(
            transaction_id=transaction_id,
            kind=kind,
            account=account,
            amount_minor=amount_minor,
            fee_minor=fee_minor,
            currency=self.currency,
            party=party,
            at=at,
            status="completed",
            balance_after_minor=after,
            reference=reference,
            client_reference=client_reference,
            counterparty_name=counterparty_name,
            reverses=reverses,
        )
        self._entries.append(entry)
        return entry

    def find(self, transaction_id: str) -> BookEntry | None:
        return next((e for e in self._entries if e.transaction_id == transaction_id), None)

    def find_by_reference(self, reference: str) -> BookEntry | None:
        """The entry a request made, by the request's own id (OriginatorConversationID, …)."""
        return next((e for e in self._entries if e.reference == reference), None)

    def mark(self, transaction_id: str, status: str) -> None:
        """Change an entry's status (reversed, refunded); its amount never changes."""
        for index, entry in enumerate(self._entries):
            if entry.transaction_id == transaction_id:
                self._entries[index] = dataclasses.replace(entry, status=status)
                return
        raise KeyError(transaction_id)

    def entries(self, start: datetime | None = None, end: datetime | None = None) -> list[BookEntry]:
        """Entries with ``start <= at < end``, oldest first."""
        return [e for e in self._entries if (start is None or e.at >= start) and (end is None or e.at < end)]
