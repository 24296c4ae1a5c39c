"""What callers ask of `payments.agents.AgentService`, and what it answers: the commands (small
immutable values with imperative names, each with the caller's idempotency key, checked when built),
their results, and the errors it raises, each with a stable ``code`` and a sentence a person can act on.
A PIN is never part of a command: it is passed beside it, checked first, and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from payments.cash_requests import CashRequest, CashRequestStatus, PendingLine
from payments.commands import Channel, channel_of, check_amount
from payments.errors import AccountClosed, IdempotencyConflict, InvalidRequest, PaymentsError
from payments.money import Money
from payments.payment_store import Payment
from payments.postings import check_key

# -- errors ----------------------------------------------------------------------------------------


class NotAnAgent(PaymentsError):
    """The caller is not an active agent: only agents serve cash-ins and cash-outs."""

    code = "not_an_agent"


class UnknownAgent(PaymentsError):
    """No active agent has that agent (or store) number."""

    code = "unknown_agent"


class OwnAgent(InvalidRequest):
    """An agent cannot cash in to, or cash out from, itself."""

    code = "own_agent"


class UnknownCashRequest(PaymentsError):
    """No such request for this caller (another agent's request is as unknown as a missing one)."""

    code = "unknown_cash_request"


class CashRequestClosed(PaymentsError):
    """The request is no longer pending: confirmed, rejected, cancelled or expired."""

    code = "cash_request_closed"

    def __init__(self, request: CashRequest) -> None:
        super().__init__(f"request {request.code} is already {request.status}")
        self.request = request


class CashRequestExpired(CashRequestClosed):
    code = "cash_request_expired"


#: The reason recorded on a cash-in request closed because its customer's account closed before the
#: agent confirmed it (no one resolved it: ``resolved_by_user_id`` is None).
CUSTOMER_CLOSED_REASON = "the customer's account is closed"


class CustomerAccountClosed(CashRequestClosed, AccountClosed):
    """The customer's account closed after they raised the cash-in: nothing is paid into it (as a
    direct cash-in to it is refused), and the request is closed (rejected)."""

    code = "account_closed"

    def __init__(self, request: CashRequest) -> None:
        PaymentsError.__init__(self, f"{CUSTOMER_CLOSED_REASON}: request {request.code} is closed, nothing moved")
        self.request = request


def closed_error(request: CashRequest) -> CashRequestClosed:
    """The refusal for acting on a request that is no longer pending: `CashRequestExpired` when it
    expired (whether this call or an earlier one found it lapsed), `CustomerAccountClosed` when a
    confirmation found the customer's account closed (this call or an earlier one: a retry gets the
    same answer), else `CashRequestClosed`."""
    if request.status is CashRequestStatus.EXPIRED:
        return CashRequestExpired(request)
    if (request.status is CashRequestStatus.REJECTED and request.resolved_by_user_id is None
            and request.reason == CUSTOMER_CLOSED_REASON):
        return CustomerAccountClosed(request)
    return CashRequestClosed(request)


class FloatTooLow(PaymentsError):
    """The agent's float cannot cover the cash-in; nothing moved."""

    code = "float_too_low"

    def __init__(self, available: Money, needed: Money) -> None:
        super().__init__(f"your float ({available}) is less than the {needed} this cash-in needs; top it up first")
        self.available, self.needed = available, needed


class TooManyPending(PaymentsError):
    code = "too_many_pending"


class ReceiptUsed(IdempotencyConflict):
    """A float top-up's receipt already credited a float (another agent's, or this agent's under
    another key): money paid in once is credited once. A conflict, as a key used for another request."""

    code = "receipt_used"

    def __init__(self, receipt: str, transfer_id: int, *, agent_user_id: int) -> None:
        PaymentsError.__init__(self, f"receipt {receipt!r} already topped up the float of user {agent_user_id} "
                                     f"(transfer {transfer_id}): a receipt credits one float, once")
        self.key, self.existing_id, self.agent_user_id = receipt, transfer_id, agent_user_id


# -- commands and results --------------------------------------------------------------------------


def agent_number_text(value: object) -> str:
    """An agent or store number as typed: digits only."""
    typed = value.strip() if isinstance(value, str) else ""
    if not typed.isascii() or not typed.isdigit() or not 4 <= len(typed) <= 10:
        raise InvalidRequest("an agent number is 4 to 10 digits")
    return typed


@dataclass(frozen=True)
class _CustomerCashRequest:
    """A customer's request to the agent ``agent_number`` for ``amount``."""

    idempotency_key: str
    customer_user_id: int
    agent_number: str
    amount: Money
    channel: Channel = Channel.USSD

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        check_amount(self.amount)
        object.__setattr__(self, "agent_number", agent_number_text(self.agent_number))
        object.__setattr__(self, "channel", channel_of(self.channel))


@dataclass(frozen=True)
class RequestCashIn(_CustomerCashRequest):
    """A customer will hand cash to the agent ``agent_number`` for ``amount`` in their wallet."""


@dataclass(frozen=True)
class RequestCashOut(_CustomerCashRequest):
    """A customer wants ``amount`` in cash from the agent ``agent_number`` (confirmed with their PIN)."""


@dataclass(frozen=True)
class DirectCashIn:
    """The agent takes cash from the customer at ``customer_phone`` and credits their wallet at once."""

    idempotency_key: str
    agent_user_id: int
    customer_phone: str
    amount: Money
    channel: Channel = Channel.USSD

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        check_amount(self.amount)
        if not isinstance(self.customer_phone, str) or not self.customer_phone.strip():
            raise InvalidRequest("the customer's phone number is needed")
        object.__setattr__(self, "channel", channel_of(self.channel))


@dataclass(frozen=True)
class ConfirmCashRequest:
    """The agent confirms a pending request (cash taken in, or handed out)."""

    idempotency_key: str
    agent_user_id: int
    request_id: str
    channel: Channel = Channel.USSD

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        object.__setattr__(self, "channel", channel_of(self.channel))


@dataclass(frozen=True)
class RejectCashRequest:
    """The agent turns a pending request down (no cash changed hands)."""

    idempotency_key: str
    agent_user_id: int
    request_id: str
    reason: str = ""

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        if not isinstance(self.reason, str) or len(self.reason) > 200:
            raise InvalidRequest("a reason is at most 200 characters")


@dataclass(frozen=True)
class CancelCashRequest:
    """The customer withdraws their own pending request."""

    idempotency_key: str
    customer_user_id: int
    request_id: str

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)


@dataclass(frozen=True)
class TopUpFloat:
    """An operator credits an agent's float with money the agent paid in (``reference``: the
    provider's receipt or the bank slip it came with)."""

    idempotency_key: str
    agent_user_id: int
    amount: Money
    reference: str
    operator: str

    def __post_init__(self) -> None:
        check_key(self.idempotency_key)
        check_amount(self.amount)
        for name in ("reference", "operator"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 100:
                raise InvalidRequest(f"a float top-up needs a {name} (at most 100 characters)")


@dataclass(frozen=True)
class CashResult:
    """A request as it stands, and the payment that moved (or holds) its money, if any."""

    request: CashRequest
    payment: Payment | None
    #: True when this call changed nothing: the same key and request were seen before.
    replayed: bool = False


@dataclass(frozen=True)
class PendingPage:
    lines: list[PendingLine]
    #: Pass as ``before`` for the next (older) page; None on the last page.
    next_before: int | None


@dataclass(frozen=True)
class CommissionEarned:
    today: Money
    this_month: Money
    all_time: Money


def commission_of(amount: Money, basis_points: int) -> Money:
    """``basis_points`` of ``amount``, rounded down to the minor unit (a commission is never more
    than its rate)."""
    return Money(amount.minor * basis_points // 10_000, amount.currency)
