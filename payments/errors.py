"""Domain errors of payments/, as data: each carries what a caller needs to explain it to a person.
The gateway maps them to HTTP answers and screens in one place."""

from __future__ import annotations


class PaymentsError(Exception):
    """Base of every error payments/ raises on purpose. `code` is stable and machine-readable."""

    code = "payments_error"


class InvalidRequest(PaymentsError):
    """A request that can never succeed as written (bad amount, unbalanced legs, bad key…)."""

    code = "invalid_request"


class AmountOutOfRange(InvalidRequest):
    code = "amount_out_of_range"


class UnbalancedTransfer(InvalidRequest):
    code = "unbalanced_transfer"


class RecipientCurrencyMismatch(InvalidRequest):
    """A wallet payment in a currency the recipient's wallet does not hold. A wallet holds its
    number's country's currency (`payments.phones.wallet_currency`): KES paid to a Senegalese
    number would open a KES wallet its owner's menus never show."""

    code = "recipient_currency_mismatch"

    def __init__(self, phone: str, wallet_currency: str | None, got: str) -> None:
        holds = f"holds {wallet_currency}" if wallet_currency else "is of a country Sauti does not serve"
        super().__init__(f"the wallet of {phone} {holds}: it cannot receive {got}")
        self.phone, self.wallet_currency, self.got = phone, wallet_currency, got


class UnknownAccount(PaymentsError):
    code = "unknown_account"

    def __init__(self, account_id: int | str) -> None:
        super().__init__(f"no account {account_id}")
        self.account_id = account_id


class CurrencyMismatch(PaymentsError):
    code = "currency_mismatch"

    def __init__(self, account_id: int, expected: str, got: str) -> None:
        super().__init__(f"account {account_id} holds {expected}, not {got}")
        self.account_id, self.expected, self.got = account_id, expected, got


class InsufficientFunds(PaymentsError):
    code = "insufficient_funds"

    def __init__(self, account_id: int, available: int | None = None, needed: int | None = None) -> None:
        detail = f" (available {available}, needed {needed} minor units)" if available is not None else ""
        super().__init__(f"insufficient funds in account {account_id}{detail}")
        self.account_id, self.available, self.needed = account_id, available, needed


class IdempotencyConflict(PaymentsError):
    """The key was already used for a different request."""

    code = "idempotency_conflict"

    def __init__(self, key: str, existing_id: int | None) -> None:
        super().__init__(f"idempotency key {key!r} was already used for a different request")
        self.key, self.existing_id = key, existing_id


class HoldNotPending(PaymentsError):
    """A hold can be posted or voided once; this one is already resolved (or never existed)."""

    code = "hold_not_pending"

    def __init__(self, hold_id: int, status: str, transfer_id: int | None = None) -> None:
        super().__init__(f"hold {hold_id} is {status}, not pending")
        self.hold_id, self.status, self.transfer_id = hold_id, status, transfer_id


class UnknownTransfer(PaymentsError):
    code = "unknown_transfer"


class AlreadyReversed(PaymentsError):
    code = "already_reversed"

    def __init__(self, transfer_id: int, reversal_id: int | None) -> None:
        super().__init__(f"transfer {transfer_id} was already reversed by transfer {reversal_id}")
        self.transfer_id, self.reversal_id = transfer_id, reversal_id


class UnknownUser(PaymentsError):
    code = "unknown_user"


class UserExists(PaymentsError):
    code = "user_exists"


class InvalidPin(InvalidRequest):
    code = "invalid_pin"


class WrongPin(PaymentsError):
    code = "wrong_pin"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong PIN; {attempts_left} attempt(s) left before the account is locked")
        self.attempts_left = attempts_left


class AccountLocked(PaymentsError):
    code = "account_locked"

    def __init__(self, until) -> None:
        super().__init__(f"account locked until {until:%Y-%m-%d %H:%M} UTC after too many wrong PINs")
        self.until = until


class AccountClosed(PaymentsError):
    code = "account_closed"


class PinNotSet(PaymentsError):
    code = "pin_not_set"
