"""Agents: registering them, their float and commission, and cash-in / cash-out at their counter.

An agent is a user with the ``agent`` role and an **agent number** (what customers type), optionally
store numbers for its outlets, an agent float account (e-money the agent sells and buys against
cash; never negative) and an agent commission account (what it earns). The flows:

- **Float top-up** (an operator): the agent paid Sauti real money (into our M-Pesa / Wave business
  account, like any deposit); the float is credited from that provider's **collection** account, the
  account that mirrors money received at the provider (`top_up_float`, audit-logged).
- **Cash-in**: the customer raises a request (agent number, amount) → pending until it expires
  (``request_expiry_s``); the agent lists its pending requests with each customer's registered name,
  takes the cash and confirms with its PIN → ONE transfer: float → customer wallet (amount), and
  commission (``cash_in_commission_bp`` of the amount) → the agent's commission account, paid from
  Sauti's ``commission_expense`` account. Or the agent rejects it. **Direct cash-in**: the agent
  types the customer's number and the amount and confirms with its PIN at once.
- **Cash-out**: the customer asks (agent number, amount, PIN) → a ledger HOLD on the wallet for
  amount + fee (the fee from the customer's plan, as for any payment) and a ``cash_out`` payment
  pending; the agent hands the cash and confirms with its PIN → the hold is posted: wallet → float
  (amount), fee → fee revenue, commission (``cash_out_commission_bp``) → the agent from commission
  expense. Rejected, cancelled or expired: the hold is voided and the payment fails; the wallet is whole.

A payment's payer is the side whose e-money leaves: the agent for a cash-in (the customer is its
recipient), the customer for a cash-out (the agent is its recipient); its ``agent_number`` is set.

IMPORTANT: an agent never serves itself (no commission for moving its own money; the database
refuses it too). Only the named agent sees and serves a request, and only an active agent confirms.
Every command carries an idempotency key (same key, same request: the same result; another request:
`IdempotencyConflict`). Each money movement is recorded, with its payment row, its events and its SMS
receipts (outbox jobs ``sms.receipt``), in the transaction that moves it. PINs are checked in a
transaction of their own first (a wrong one is counted even though nothing else happens), and
never stored. Expired requests are closed by `AgentService.expire_requests`, which the gateway runs
periodically; a confirmation arriving after the expiry closes the request itself.

The commands, results and errors are in `payments.agent_commands`; the tables in
`payments.cash_requests`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import autocommit
from db.sql import sql
from payments import cash_requests as cr
from payments import payment_store as store
from payments.accounts import AccountKind, account_by_code, account_code, balance_by_code, open_account
from payments.agent_commands import (
    CUSTOMER_CLOSED_REASON,
    CancelCashRequest,
    CashRequestExpired,
    CashResult,
    CommissionEarned,
    ConfirmCashRequest,
    DirectCashIn,
    FloatTooLow,
    NotAnAgent,
    OwnAgent,
    PendingPage,
    ReceiptUsed,
    RejectCashRequest,
    RequestCashIn,
    RequestCashOut,
    TooManyPending,
    TopUpFloat,
    UnknownAgent,
    UnknownCashRequest,
    agent_number_text,
    closed_error,
    commission_of,
)
from payments.cash_requests import Agent, AgentStatus, CashRequest, CashRequestStatus
from payments.commands import PaymentKind
from payments.errors import (
    AccountClosed,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    UnknownAccount,
    UnknownUser,
)
from payments.fees import Quote
from payments.identities import PinService, Role, User, UserStatus, audit, find_user_by_phone, get_user
from payments.ledger import TransferResult
from payments.local_time import day_and_month_start
from payments.money import Currency, Money
from payments.orchestrator import Payments
from payments.payment_settings import PROVIDER_FOR
from payments.payment_store import Payment
from payments.phones import InvalidPhoneNumber, parse_msisdn, region_of, wallet_currency
from payments.postings import HoldRequest, Leg, TransferRequest
from payments.states import PaymentStatus

log = logging.getLogger(__name__)

S = PaymentStatus
R = CashRequestStatus

#: The ledger kind of a float top-up's transfer (its ``reference``: the receipt of the money paid in).
_FLOAT_TOPUP = "agent.float_topup"



# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentSettings:
    """The ``agents:`` section of the settings (same names)."""

    #: Commission on a cash-in, in basis points of the amount (200 = 2 %, as the seeds' hosts earn).
    cash_in_commission_bp: int = 200
    #: Commission on a cash-out (50 = 0.5 %): less than the customer's fee on any plan but the
    #: cheapest, so a cash-out does not cost Sauti more than it earns.
    cash_out_commission_bp: int = 50
    #: How long a customer's request waits for the agent.
    request_expiry_s: float = 1800.0
    #: Requests a customer may have open at once (all agents together).
    max_pending_per_customer: int = 3
    #: Digits of the agent numbers `register_agent` makes up.
    agent_number_digits: int = 6
    #: How often `sweep_expired_requests` closes lapsed requests (releasing cash-outs' holds).
    sweep_interval_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("cash_in_commission_bp", "cash_out_commission_bp"):
            if not 0 <= getattr(self, name) <= 10_000:
                raise ValueError(f"agents.{name} is 0 to 10000 basis points")
        if self.request_expiry_s <= 0 or self.max_pending_per_customer < 1:
            raise ValueError("agents.request_expiry_s and max_pending_per_customer must be positive")
        if self.sweep_interval_s <= 0:
            raise ValueError("agents.sweep_interval_s must be positive")
        if not 4 <= self.agent_number_digits <= 10:
            raise ValueError("agents.agent_number_digits is 4 to 10")


# -- registration ----------------------------------------------------------------------------------


async def register_agent(
    conn: AsyncConnection, user_id: int, *, agent_number: str | None = None, business_name: str = "",
    store_numbers: tuple[str, ...] = (), currency: Currency | None = None, number_digits: int = 6,
) -> Agent:
    """Make a registered user an agent, in the caller's transaction: the ``agent`` role, an agent
    number (the one given, else a free random one of ``number_digits`` digits), store numbers, and
    the float and commission accounts in the currency of the user's country (or ``currency``).
    Raises `InvalidRequest` when the user is an agent already or a number is taken."""
    user = await get_user(conn, user_id)
    if user.status is UserStatus.CLOSED:
        raise AccountClosed("a closed account cannot become an agent")
    name = business_name.strip() if isinstance(business_name, str) else ""
    if len(name) > 60 or not name.isprintable():
        raise InvalidRequest("a business name is at most 60 printable characters")
    cur = currency or wallet_currency(user.phone)
    if cur is None:
        raise InvalidRequest("agents serve Kenya, Senegal and Côte d'Ivoire")
    if await cr.agent_by_user(conn, user_id) is not None:
        raise InvalidRequest(f"user {user_id} is an agent already")
    if agent_number is not None:
        number = agent_number_text(agent_number)
        if not await _insert_agent(conn, user_id, number, name, cur):
            raise InvalidRequest(f"agent number {number} is taken")
    else:
        for _ in range(20):
            number = f"{secrets.randbelow(9 * 10 ** (number_digits - 1)) + 10 ** (number_digits - 1)}"
            if await _insert_agent(conn, user_id, number, name, cur):
                break
        else:
            raise InvalidRequest(f"no free {number_digits}-digit agent number found; give one")
    for store_number in store_numbers:
        typed = agent_number_text(store_number)
        taken = await cr.agent_by_number(conn, typed)
        if (taken is not None and taken.user_id != user_id) or not await cr.insert_store(conn, user_id, typed):
            raise InvalidRequest(f"store number {typed} is taken")
    await conn.execute(sql(
        "UPDATE users SET roles = array_append(roles, 'agent'), updated_at = now() "
        "WHERE id = :u AND NOT ('agent' = ANY(roles))"), {"u": user_id})
    await open_account(conn, AccountKind.AGENT_FLOAT, cur, user_id)
    await open_account(conn, AccountKind.AGENT_COMMISSION, cur, user_id)
    await audit(conn, actor="system", action="agent.registered", subject=f"user:{user_id}",
                details={"agent_number": number, "currency": cur.value})
    agent = await cr.agent_by_user(conn, user_id)
    assert agent is not None
    return agent


async def _insert_agent(conn: AsyncConnection, user_id: int, number: str, name: str, cur: Currency) -> bool:
    # Customers type agent and store numbers in the same box: an agent number may not be a store's.
    if await cr.agent_by_number(conn, number) is not None:
        return False
    return await cr.insert_agent(conn, user_id, number, name, cur)


async def agent_by_number(conn: AsyncConnection, number: str) -> Agent | None:
    """The agent customers reach by this agent (or store) number, whatever its status."""
    try:
        return await cr.agent_by_number(conn, agent_number_text(number))
    except InvalidRequest:
        return None


# -- the service -------------------------------------------------------------------------------------


class AgentService:
    """Cash-in and cash-out at agents (see the module's docstring). Built on the orchestrator's
    parts: its engine, ledger, account book, fee quotes and receipts."""

    def __init__(self, payments: Payments, pins: PinService, settings: AgentSettings | None = None) -> None:
        self.payments = payments
        self.engine = payments.engine
        self.ledger = payments.ledger
        self.accounts = payments.accounts
        self.pins = pins
        self.settings = settings or AgentSettings()

    # -- operators -------------------------------------------------------------------------------

    async def top_up_float(self, cmd: TopUpFloat) -> TransferResult:
        """Credit the agent's float from the provider collection account of its currency (the agent
        paid that much into our M-Pesa / Wave account). The same key again replays; the receipt
        (``reference``) credits one float once: used again under another key, for this agent or
        another, it is refused (`ReceiptUsed`)."""
        # Receipts are upper case (M-Pesa's "SKT4XYZ123", Wave's ids): "skt4xyz123" typed is the same
        # payment in, and must find the top-up that booked it.
        receipt = cmd.reference.strip().upper()
        async with self.engine.begin() as conn:
            agent = await cr.agent_by_user(conn, cmd.agent_user_id)
            if agent is None:
                raise NotAnAgent(f"user {cmd.agent_user_id} is not an agent")
            cur = cmd.amount.currency
            if cur is not agent.currency:
                raise InvalidRequest(f"this agent's float is in {agent.currency.value}, not {cur.value}")
            key = f"float:{agent.user_id}:{cmd.idempotency_key}"
            await _check_receipt_unused(conn, key, receipt)
            source = await self.accounts.collection(conn, PROVIDER_FOR[cur], cur)
            float_id = (await open_account(conn, AccountKind.AGENT_FLOAT, cur, agent.user_id)).id
            request = TransferRequest(
                key, (Leg(source, -cmd.amount.minor, cur), Leg(float_id, cmd.amount.minor, cur)),
                kind=_FLOAT_TOPUP, reference=receipt, metadata={"operator": cmd.operator})
            moved = await self.ledger.transfer(request, conn=conn)
            if not moved.replayed:
                await audit(conn, actor=cmd.operator, action="agent.float_topup", subject=f"user:{agent.user_id}",
                            details={"amount": cmd.amount.minor, "currency": cur.value,
                                     "reference": receipt, "transfer": moved.transfer_id})
            return moved

    # -- customers -------------------------------------------------------------------------------

    async def request_cash_in(self, cmd: RequestCashIn) -> CashResult:
        """Raise a cash-in request at an agent: pending until the agent confirms it (nothing moves now)."""
        async with self.engine.begin() as conn:
            customer = await self._lock_user(conn, cmd.customer_user_id)
            digest = cr.request_hash(PaymentKind.CASH_IN, agent=cmd.agent_number, amount=cmd.amount.minor,
                                     currency=cmd.amount.currency.value)
            if (replay := await self._replay(conn, customer.id, cmd.idempotency_key, digest)) is not None:
                return replay
            agent = await self._serving_agent(conn, cmd.agent_number, customer, cmd.amount)
            # Deposits are limited per transaction only (what one may spend is limited, not what comes in).
            self.payments.settings.limits.check(cmd.amount, kyc_tier=customer.kyc_tier,
                                                spent_today=Money.zero(cmd.amount.currency))
            await self._check_open_requests(conn, customer.id)
            request = await cr.insert_request(conn, cr.NewCashRequest(
                cr.new_request_id(), PaymentKind.CASH_IN, cmd.channel.value, customer.id, agent.user_id, cmd.amount,
                Money.zero(cmd.amount.currency), commission_of(cmd.amount, self.settings.cash_in_commission_bp),
                customer.id, cmd.idempotency_key, digest, self.settings.request_expiry_s))
            assert request is not None  # the requester's row lock makes the key ours
            return CashResult(request, None)

    async def request_cash_out(self, cmd: RequestCashOut, *, pin: str) -> CashResult:
        """Raise a cash-out request: amount + fee held on the wallet now, and a ``cash_out`` payment
        pending. Raises `InsufficientFunds` (nothing written) when the wallet cannot cover it."""
        await self.verify_pin(cmd.customer_user_id, pin)
        async with self.engine.begin() as conn:
            customer = await self._lock_user(conn, cmd.customer_user_id)
            digest = cr.request_hash(PaymentKind.CASH_OUT, agent=cmd.agent_number, amount=cmd.amount.minor,
                                     currency=cmd.amount.currency.value)
            if (replay := await self._replay(conn, customer.id, cmd.idempotency_key, digest)) is not None:
                return replay
            agent = await self._serving_agent(conn, cmd.agent_number, customer, cmd.amount)
            await self._check_open_requests(conn, customer.id)
            # The fee and the limits, as for any payment the customer makes (plan, daily total by KYC tier),
            # read on this connection: a second one taken while this one holds the customer's row starved
            # the pool when as many cash-outs as it has connections came at once (each waiting for another).
            priced = await self.payments.quote_in(conn, customer, cmd.amount, PaymentKind.CASH_OUT)
            commission = commission_of(cmd.amount, self.settings.cash_out_commission_bp)
            public_id = cr.new_request_id()
            payment = await store.insert_payment(conn, store.NewPayment(
                payer_user_id=customer.id, idempotency_key=f"cash_out:{public_id}", request_hash=digest,
                kind=PaymentKind.CASH_OUT.value, channel=cmd.channel.value, amount=cmd.amount, fee=priced.fee,
                recipient_user_id=agent.user_id, recipient_phone=agent.phone), cause=f"command:{cmd.channel.value}")
            assert payment is not None  # the key is made of a fresh request id
            await cr.note_agent_on_payment(conn, payment.id, agent.agent_number)
            legs = await self._cash_out_legs(conn, customer.id, agent.user_id, cmd.amount, priced.fee, commission)
            held = await self.ledger.hold(HoldRequest(
                f"cash_out:{public_id}", legs, kind=PaymentKind.CASH_OUT.value, reference=payment.public_id,
                expires_at=await self._expiry(conn), metadata={"cash_request": public_id}), conn=conn)
            payment = await store.transition(conn, payment, S.PENDING, cause="held_for_agent",
                                             refs={"cash_request": public_id, "hold": held.hold_id})
            request = await cr.insert_request(conn, cr.NewCashRequest(
                public_id, PaymentKind.CASH_OUT, cmd.channel.value, customer.id, agent.user_id, cmd.amount, priced.fee,
                commission, customer.id, cmd.idempotency_key, digest, self.settings.request_expiry_s,
                hold_id=held.hold_id, payment_id=payment.id))
            assert request is not None
            return CashResult(request, payment)

    async def find_agent(self, number: str) -> Agent | None:
        """The active agent customers reach at this agent (or store) number, or None."""
        async with self.engine.connect() as conn:
            agent = await agent_by_number(conn, number)
        return agent if agent is not None and agent.status is AgentStatus.ACTIVE else None

    async def quote_cash_out(self, customer_user_id: int, agent_number: str, amount: Money) -> tuple[Agent, Quote]:
        """The agent and what a cash-out there would cost (fee, total), checked as `request_cash_out`
        checks it (agent, currency, limits), for the one confirmation screen. Moves nothing."""
        async with self.engine.connect() as conn:
            customer = await get_user(conn, customer_user_id)
            if customer.status is UserStatus.CLOSED:
                raise AccountClosed("this account is closed")
            agent = await self._serving_agent(conn, agent_number_text(agent_number), customer, amount)
        priced = await self.payments.quote(customer.id, amount, recipient_user_id=agent.user_id,
                                           kind=PaymentKind.CASH_OUT)
        return agent, priced

    async def wallet_available(self, user_id: int, currency: Currency) -> Money:
        """What the customer's wallet can spend now (its balance less what pending holds reserve)."""
        async with self.engine.connect() as conn:
            try:
                return (await account_by_code(conn, account_code(AccountKind.CUSTOMER_WALLET, currency,
                                                                 user_id))).available
            except UnknownAccount:
                return Money.zero(currency)

    async def check_direct_cash_in(self, agent_user_id: int, customer_phone: str, amount: Money) -> User:
        """The customer a direct cash-in would credit, checked as `direct_cash_in` checks it (not
        the agent itself, a wallet of the agent's currency, the limits, a float that covers it)."""
        async with self.engine.connect() as conn:
            agent = await self._active_agent(conn, await get_user(conn, agent_user_id))
            customer = await self._direct_customer(conn, agent, customer_phone, amount)
        available = await self._balance(AccountKind.AGENT_FLOAT, agent)
        if available < amount:
            raise FloatTooLow(available, amount)
        return customer

    async def cancel(self, cmd: CancelCashRequest) -> CashResult:
        """The customer withdraws their pending request (a cash-out's hold is released)."""
        return await self._close(cmd.request_id, R.CANCELLED, by_user_id=cmd.customer_user_id,
                                 key=cmd.idempotency_key, as_customer=True, reason="cancelled by the customer")

    async def pending_of_customer(self, customer_user_id: int) -> list[CashRequest]:
        async with self.engine.connect() as conn:
            return await cr.pending_of_customer(conn, customer_user_id)

    # -- agents ----------------------------------------------------------------------------------

    async def direct_cash_in(self, cmd: DirectCashIn, *, pin: str) -> CashResult:
        """The agent credits a customer's wallet from its float at once (the cash is in its hand).
        Raises `FloatTooLow` (nothing written) when the float cannot cover it."""
        await self.verify_pin(cmd.agent_user_id, pin)
        async with self.engine.begin() as conn:
            agent = await self._active_agent(conn, await self._lock_user(conn, cmd.agent_user_id))
            try:
                phone = parse_msisdn(cmd.customer_phone, region_of(agent.phone))
            except InvalidPhoneNumber as exc:
                raise InvalidRequest(str(exc)) from None
            digest = cr.request_hash(PaymentKind.CASH_IN, customer=phone, amount=cmd.amount.minor,
                                     currency=cmd.amount.currency.value, direct=True)
            if (replay := await self._replay(conn, agent.user_id, cmd.idempotency_key, digest)) is not None:
                return replay
            customer = await self._direct_customer(conn, agent, phone, cmd.amount)
            request = await cr.insert_request(conn, cr.NewCashRequest(
                cr.new_request_id(), PaymentKind.CASH_IN, cmd.channel.value, customer.id, agent.user_id,
                cmd.amount, Money.zero(cmd.amount.currency),
                commission_of(cmd.amount, self.settings.cash_in_commission_bp), agent.user_id,
                cmd.idempotency_key, digest, self.settings.request_expiry_s))
            assert request is not None  # the requester's row lock makes the key ours
            payment = await self._pay_cash_in(conn, request, agent)
            request = await cr.resolve(conn, request, R.CONFIRMED, by_user_id=agent.user_id, payment_id=payment.id)
            return CashResult(request, payment)

    async def confirm(self, cmd: ConfirmCashRequest, *, pin: str) -> CashResult:
        """The agent confirms a pending request: a cash-in moves float → wallet (and the commission),
        a cash-out posts its hold. Exactly once, however many times or ways it is sent."""
        await self.verify_pin(cmd.agent_user_id, pin)
        closed: CashRequest | None = None
        try:
            async with self.engine.begin() as conn:
                request, is_lapsed, agent = await self._lock_for_agent(conn, cmd.request_id, cmd.agent_user_id)
                if (replay := await self._resolution_replay(conn, request, agent.user_id, cmd.idempotency_key,
                                                            R.CONFIRMED)) is not None:
                    return replay
                if request.status is not R.PENDING:
                    raise closed_error(request)
                if agent.status is not AgentStatus.ACTIVE:
                    raise NotAnAgent("this agent is suspended")
                if is_lapsed:
                    closed = await self._lapse(conn, request)
                elif request.kind is PaymentKind.CASH_IN and await self._customer_closed(conn, request):
                    # Raised before the account closed: nothing may be paid into it now (a direct
                    # cash-in to it is refused). Closed by no one, without the agent's key, so that a
                    # retry finds it closed and gets the same refusal (`closed_error`).
                    closed = await cr.resolve(conn, request, R.REJECTED, by_user_id=None,
                                              reason=CUSTOMER_CLOSED_REASON)
                elif request.kind is PaymentKind.CASH_IN:
                    payment = await self._pay_cash_in(conn, request, agent)
                    request = await cr.resolve(conn, request, R.CONFIRMED, by_user_id=agent.user_id,
                                               key=cmd.idempotency_key, payment_id=payment.id)
                    return CashResult(request, payment)
                else:
                    done = await self._post_cash_out(conn, request, agent, cmd.idempotency_key)
                    if isinstance(done, CashResult):
                        return done
                    closed = done
        except IntegrityError as exc:
            # The resolution key was used meanwhile, by this agent, to resolve another request.
            raise _key_taken(exc, cmd.idempotency_key) from None
        # Committed: the request is closed (expired, its hold if any released; or its customer's
        # account closed), nothing moved.
        assert closed is not None
        raise closed_error(closed)

    async def reject(self, cmd: RejectCashRequest) -> CashResult:
        """The agent turns a pending request down (a cash-out's hold is released)."""
        return await self._close(cmd.request_id, R.REJECTED, by_user_id=cmd.agent_user_id, key=cmd.idempotency_key,
                                 as_customer=False, reason=cmd.reason.strip() or "rejected by the agent")

    async def pending_for_agent(self, agent_user_id: int, kind: PaymentKind = PaymentKind.CASH_IN, *,
                                limit: int = 5, before: int | None = None) -> PendingPage:
        """The agent's open requests of ``kind``, newest first, a page at a time."""
        if kind not in (PaymentKind.CASH_IN, PaymentKind.CASH_OUT) or not 1 <= limit <= 100:
            raise InvalidRequest("list cash_in or cash_out requests, 1 to 100 at a time")
        async with self.engine.connect() as conn:
            await self._active_agent(conn, await get_user(conn, agent_user_id))
            lines = await cr.pending_for_agent(conn, agent_user_id, kind, limit=limit + 1, before_id=before)
        more = len(lines) > limit
        lines = lines[:limit]
        return PendingPage(lines, lines[-1].request.id if more else None)

    async def float_balance(self, agent_user_id: int) -> Money:
        agent = await self._agent(agent_user_id)
        return await self._balance(AccountKind.AGENT_FLOAT, agent)

    async def commission_balance(self, agent_user_id: int) -> Money:
        agent = await self._agent(agent_user_id)
        return await self._balance(AccountKind.AGENT_COMMISSION, agent)

    async def commission_earned(self, agent_user_id: int, *, now: datetime | None = None) -> CommissionEarned:
        """Commission credited today, this month (the agent's local calendar) and ever."""
        agent = await self._agent(agent_user_id)
        cur = agent.currency
        day_start, month_start = day_and_month_start(agent.phone, now)
        async with self.engine.connect() as conn:
            try:
                account = await account_by_code(conn, account_code(AccountKind.AGENT_COMMISSION, cur, agent.user_id))
            except UnknownAccount:
                return CommissionEarned(Money.zero(cur), Money.zero(cur), Money.zero(cur))
            today, month, ever = await cr.commission_credits(conn, account.id, day_start=day_start,
                                                             month_start=month_start)
        return CommissionEarned(Money(today, cur), Money(month, cur), Money(ever, cur))

    # -- the sweep -------------------------------------------------------------------------------

    async def expire_requests(self, *, limit: int = 500) -> int:
        """Close pending requests whose expiry passed (a cash-out's hold released, its payment
        failed, the customer told); returns how many. Each in a transaction of its own, so run it
        from any number of processes."""
        async with self.engine.connect() as conn:
            ids = await cr.lapsed_ids(conn, limit=limit)
        closed = 0
        for request_id in ids:
            async with self.engine.begin() as conn:
                found = await cr.get_request_by_id(conn, request_id, lock=True)
                assert found is not None
                request, is_lapsed = found
                if request.status is R.PENDING and is_lapsed:  # else resolved meanwhile
                    await self._lapse(conn, request)
                    closed += 1
        return closed

    async def sweep_expired_requests(self, stop: asyncio.Event) -> None:
        """`expire_requests` now, then every ``sweep_interval_s`` until ``stop`` is set (the gateway
        runs it for its lifetime). A round that fails is logged and the next one runs as planned."""
        while not stop.is_set():
            try:
                closed = await self.expire_requests()
            except Exception:
                log.exception("agents: expiring cash requests failed; next round in %gs",
                              self.settings.sweep_interval_s)
            else:
                if closed:
                    log.info("agents: %d cash requests expired", closed)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.sweep_interval_s)
            except TimeoutError:
                pass

    # -- steps -----------------------------------------------------------------------------------

    async def verify_pin(self, user_id: int, pin: str) -> None:
        """Check a PIN in transactions of its own (`PinService.check`: the count and the lock-out
        are committed); raises `WrongPin` / `AccountLocked`."""
        await self.pins.check(self.engine, user_id, pin)

    async def _lock_user(self, conn: AsyncConnection, user_id: int) -> User:
        """The user, with their row locked: one command of theirs at a time, so an idempotency key
        is checked and used atomically and the open-request count holds."""
        # NO KEY UPDATE, not UPDATE: it queues this user's commands all the same, but does not block
        # the KEY SHARE lock another transaction's foreign key takes on the row (a customer's request
        # naming this agent while the agent's direct cash-in names that customer): FOR UPDATE made
        # those two wait for each other, a deadlock.
        found = (await conn.execute(sql("SELECT id FROM users WHERE id = :u FOR NO KEY UPDATE"),
                                    {"u": user_id})).first()
        if found is None:
            raise UnknownUser(f"no user {user_id}")
        user = await get_user(conn, user_id)
        if user.status is UserStatus.CLOSED:
            raise AccountClosed("this account is closed")
        return user

    async def _serving_agent(self, conn: AsyncConnection, number: str, customer: User, amount: Money) -> Agent:
        agent = await cr.agent_by_number(conn, number)
        if agent is None or agent.status is not AgentStatus.ACTIVE:
            raise UnknownAgent(f"no agent has the number {number}")
        if agent.user_id == customer.id:
            raise OwnAgent("an agent cannot serve itself: ask another agent")
        self._check_currency(agent, amount)
        self._check_customer_country(agent, customer.phone)
        return agent

    async def _direct_customer(self, conn: AsyncConnection, agent: Agent, typed_phone: str, amount: Money) -> User:
        try:
            phone = parse_msisdn(typed_phone, region_of(agent.phone))
        except InvalidPhoneNumber as exc:
            raise InvalidRequest(str(exc)) from None
        if phone == agent.phone:
            raise OwnAgent("an agent cannot cash in to itself")
        self._check_customer_country(agent, phone)
        customer = await find_user_by_phone(conn, phone)
        if customer is None:
            raise UnknownUser(f"{phone} has no Sauti wallet")
        if customer.status is UserStatus.CLOSED:
            raise AccountClosed("the customer's account is closed")
        self._check_currency(agent, amount)
        # Deposits are limited per transaction only (what one may spend is limited, not what comes in).
        self.payments.settings.limits.check(amount, kyc_tier=customer.kyc_tier, spent_today=Money.zero(amount.currency))
        return customer

    @staticmethod
    def _check_currency(agent: Agent, amount: Money) -> None:
        if amount.currency is not agent.currency:
            raise InvalidRequest(f"this agent deals in {agent.currency.value}, not {amount.currency.value}")

    @staticmethod
    def _check_customer_country(agent: Agent, customer_phone: str) -> None:
        """A customer's wallet is in their number's currency (`wallet_currency`, as every payment
        checks it): an agent of another country would credit (or debit) a wallet in its own currency
        that the customer's menu never shows."""
        if wallet_currency(customer_phone) is not agent.currency:
            raise InvalidRequest(f"{customer_phone} holds no {agent.currency.value} wallet: "
                                 "an agent serves customers of its own country")

    async def _active_agent(self, conn: AsyncConnection, user: User) -> Agent:
        agent = await cr.agent_by_user(conn, user.id)
        if agent is None or not user.has_role(Role.AGENT):
            raise NotAnAgent("only agents can do this")
        if agent.status is not AgentStatus.ACTIVE or user.status is UserStatus.CLOSED:
            raise NotAnAgent("this agent is suspended")
        return agent

    async def _agent(self, user_id: int) -> Agent:
        async with self.engine.connect() as conn:
            return await self._active_agent(conn, await get_user(conn, user_id))

    async def _balance(self, kind: AccountKind, agent: Agent) -> Money:
        async with autocommit(self.engine).connect() as conn:
            try:
                return await balance_by_code(conn, account_code(kind, agent.currency, agent.user_id))
            except UnknownAccount:
                return Money.zero(agent.currency)

    async def _replay(self, conn: AsyncConnection, requester: int, key: str, digest: str) -> CashResult | None:
        existing = await cr.find_by_key(conn, requester, key)
        if existing is None:
            return None
        if existing.request_hash != digest:
            raise IdempotencyConflict(key, existing.id)
        return CashResult(existing, await self._payment_of(conn, existing), replayed=True)

    async def _resolution_replay(self, conn: AsyncConnection, request: CashRequest, resolver: int, key: str,
                                 status: CashRequestStatus) -> CashResult | None:
        """The result of an earlier resolution with this key: this very one again (a replay), or
        `IdempotencyConflict` when the key resolved something else."""
        earlier = await cr.find_by_resolution_key(conn, resolver, key)
        if earlier is None:
            return None
        if earlier.id != request.id or earlier.status is not status:
            raise IdempotencyConflict(key, earlier.id)
        return CashResult(earlier, await self._payment_of(conn, earlier), replayed=True)

    async def _check_open_requests(self, conn: AsyncConnection, customer_id: int) -> None:
        limit = self.settings.max_pending_per_customer
        if await cr.pending_count(conn, customer_id) >= limit:
            raise TooManyPending(f"you have {limit} requests waiting for an agent; finish or cancel one first")

    async def _payment_of(self, conn: AsyncConnection, request: CashRequest) -> Payment | None:
        if request.payment_id is None:
            return None
        return await store.get_payment_by_id(conn, request.payment_id)

    async def _expiry(self, conn: AsyncConnection) -> datetime:
        """When a request raised now expires, by the database's clock (the hold expires with it)."""
        return (await conn.execute(sql("SELECT now() + make_interval(secs => :s)"),
                                   {"s": float(self.settings.request_expiry_s)})).scalar_one()

    async def _lock_for_agent(self, conn: AsyncConnection, public_id: str,
                              agent_user_id: int) -> tuple[CashRequest, bool, Agent]:
        found = await cr.get_request(conn, public_id.strip() if isinstance(public_id, str) else "", lock=True)
        user = await get_user(conn, agent_user_id)
        agent = await cr.agent_by_user(conn, agent_user_id)
        if agent is None or not user.has_role(Role.AGENT):
            raise NotAnAgent("only agents can do this")
        if found is None or found[0].agent_user_id != agent_user_id:
            raise UnknownCashRequest("no such request for you")
        return found[0], found[1], agent

    async def _cash_out_legs(self, conn: AsyncConnection, customer_id: int, agent_id: int, amount: Money,
                             fee: Money, commission: Money) -> tuple[Leg, ...]:
        cur = amount.currency
        legs = [Leg(await self.accounts.wallet(conn, customer_id, cur), -(amount + fee).minor, cur),
                Leg((await open_account(conn, AccountKind.AGENT_FLOAT, cur, agent_id)).id, amount.minor, cur)]
        if fee.minor:
            legs.append(Leg(await self.accounts.fees(conn, cur), fee.minor, cur))
        legs.extend(await self._commission_legs(conn, agent_id, commission))
        return tuple(legs)

    async def _commission_legs(self, conn: AsyncConnection, agent_id: int, commission: Money) -> list[Leg]:
        if not commission.minor:
            return []
        cur = commission.currency
        expense = await self.accounts.account(conn, AccountKind.COMMISSION_EXPENSE, cur, self.accounts.fee_owner)
        earned = (await open_account(conn, AccountKind.AGENT_COMMISSION, cur, agent_id)).id
        return [Leg(expense, -commission.minor, cur), Leg(earned, commission.minor, cur)]

    async def _pay_cash_in(self, conn: AsyncConnection, request: CashRequest, agent: Agent) -> Payment:
        """The cash-in's payment (paid by the agent), its receipts and its ONE transfer: float → wallet,
        commission expense → the agent's commission. `FloatTooLow` when the float is short."""
        cur = request.amount.currency
        payment = await store.insert_payment(conn, store.NewPayment(
            payer_user_id=agent.user_id, idempotency_key=f"cash_in:{request.public_id}",
            request_hash=request.request_hash, kind=PaymentKind.CASH_IN.value, channel=request.channel,
            amount=request.amount, fee=Money.zero(cur), recipient_user_id=request.customer_user_id,
            recipient_phone=(await get_user(conn, request.customer_user_id)).phone),
            cause=f"agent_confirmed:{request.channel}")
        assert payment is not None  # the request's row lock makes its payment key ours
        await cr.note_agent_on_payment(conn, payment.id, agent.agent_number)
        float_id = (await open_account(conn, AccountKind.AGENT_FLOAT, cur, agent.user_id)).id
        legs = (Leg(float_id, -request.amount.minor, cur),
                Leg(await self.accounts.wallet(conn, request.customer_user_id, cur), request.amount.minor, cur),
                *await self._commission_legs(conn, agent.user_id, request.commission))
        # The receipts before the money, which locks the commission expense account (every cash-in
        # pays from it) until the commit; a short float raises and rolls them back with the rest.
        await self.payments.resolver.receipts(conn, payment, "payer", "payee", status=S.SUCCEEDED)
        try:
            moved = await self.ledger.transfer(TransferRequest(
                f"cash_in:{request.public_id}", legs, kind=PaymentKind.CASH_IN.value, reference=payment.public_id,
                metadata={"cash_request": request.public_id}), conn=conn)
        except InsufficientFunds as exc:
            available = Money(exc.available, cur) if exc.available is not None else await self._balance(
                AccountKind.AGENT_FLOAT, agent)
            raise FloatTooLow(available, request.amount) from None
        return await store.transition(conn, payment, S.SUCCEEDED, cause="agent_confirmed",
                                      refs={"cash_request": request.public_id},
                                      debit_transfer_id=moved.transfer_id, settle_transfer_id=moved.transfer_id)

    async def _post_cash_out(self, conn: AsyncConnection, request: CashRequest, agent: Agent,
                             key: str) -> CashResult | CashRequest:
        """Post the cash-out's hold and succeed its payment; the request closed as expired (to
        report once committed) when the hold was released meanwhile."""
        assert request.hold_id is not None and request.payment_id is not None
        payment = await store.get_payment_by_id(conn, request.payment_id, lock=True)
        assert payment is not None
        try:
            posted = await self.ledger.post_hold(request.hold_id, conn=conn)
        except HoldNotPending:
            # Voided by the ledger's own expiry sweep (the hold expires with the request).
            return await self._lapse(conn, request)
        assert posted.transfer is not None
        transfer_id = posted.transfer.transfer_id
        payment = await store.transition(conn, payment, S.SUCCEEDED, cause="agent_confirmed",
                                         debit_transfer_id=transfer_id, settle_transfer_id=transfer_id)
        request = await cr.resolve(conn, request, R.CONFIRMED, by_user_id=agent.user_id, key=key)
        await self.payments.resolver.receipts(conn, payment, "payer", "payee")
        return CashResult(request, payment)

    @staticmethod
    async def _customer_closed(conn: AsyncConnection, request: CashRequest) -> bool:
        return (await get_user(conn, request.customer_user_id)).status is UserStatus.CLOSED

    async def _lapse(self, conn: AsyncConnection, request: CashRequest) -> CashRequest:
        return await self._release(conn, request, R.EXPIRED, by_user_id=None, key=None,
                                   reason="expired before the agent confirmed it")

    async def _release(self, conn: AsyncConnection, request: CashRequest, status: CashRequestStatus, *,
                       by_user_id: int | None, key: str | None, reason: str) -> CashRequest:
        """Close a pending request that moved no money: a cash-out's hold voided and its payment
        failed (the customer told by SMS)."""
        if request.kind is PaymentKind.CASH_OUT:
            assert request.hold_id is not None and request.payment_id is not None
            try:
                await self.ledger.void_hold(request.hold_id, conn=conn)
            except HoldNotPending as exc:
                if exc.status != "voided":
                    raise  # posted: never reached, the request would say confirmed
            payment = await store.get_payment_by_id(conn, request.payment_id, lock=True)
            assert payment is not None
            if payment.status is S.PENDING:
                payment = await store.transition(conn, payment, S.FAILED, cause=f"cash_request_{status.value}",
                                                 error_code=f"cash_out_{status.value}", error_message=reason)
                await self.payments.resolver.receipts(conn, payment, "payer")
        return await cr.resolve(conn, request, status, by_user_id=by_user_id, key=key, reason=reason)

    async def _close(self, public_id: str, status: CashRequestStatus, *, by_user_id: int, key: str,
                     as_customer: bool, reason: str) -> CashResult:
        lapsed: CashRequest | None = None
        try:
            async with self.engine.begin() as conn:
                found = await cr.get_request(conn, public_id.strip() if isinstance(public_id, str) else "",
                                             lock=True)
                if as_customer:
                    if found is None or found[0].customer_user_id != by_user_id:
                        raise UnknownCashRequest("no such request of yours")
                    request, is_lapsed = found
                else:
                    request, is_lapsed, _ = await self._lock_for_agent(conn, public_id, by_user_id)
                if (replay := await self._resolution_replay(conn, request, by_user_id, key, status)) is not None:
                    return replay
                if request.status is not R.PENDING:
                    raise closed_error(request)
                if is_lapsed:
                    lapsed = await self._lapse(conn, request)
                else:
                    request = await self._release(conn, request, status, by_user_id=by_user_id, key=key,
                                                  reason=reason[:200])
                    return CashResult(request, await self._payment_of(conn, request))
        except IntegrityError as exc:
            raise _key_taken(exc, key) from None
        raise CashRequestExpired(lapsed)


async def _check_receipt_unused(conn: AsyncConnection, key: str, receipt: str) -> None:
    """Refuse (`ReceiptUsed`) a float top-up whose receipt another top-up booked: one payment in
    credits one float, once. The transfer's key keeps its form (the agent and the caller's key) so
    that top-ups recorded before this check still replay; the receipt is checked beside it, under a
    lock on the receipt until the commit, so two top-ups of one receipt at once are one after the
    other. A top-up under this very key is this one again: the ledger replays it (or refuses another
    amount), even where an older one booked the receipt for another agent before this check existed."""
    await conn.execute(sql("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"float-receipt:{receipt}"})
    # A top-up booked before receipts were upper-cased kept the case it was typed in: lower case is
    # looked for too (through the reference's index, as the upper case is).
    earlier = (await conn.execute(sql(
        "SELECT id, idempotency_key FROM transfers WHERE kind = :kind "
        "AND (idempotency_key = :key OR reference = :r OR reference = lower(:r)) "
        "ORDER BY idempotency_key = :key DESC, id LIMIT 1"), {"kind": _FLOAT_TOPUP, "key": key, "r": receipt})).first()
    if earlier is not None and earlier.idempotency_key != key:
        raise ReceiptUsed(receipt, earlier.id, agent_user_id=int(earlier.idempotency_key.split(":", 2)[1]))


def _key_taken(exc: IntegrityError, key: str) -> Exception:
    """A resolution key used concurrently for another request is a conflict; any other integrity
    error is a bug, raised as it is."""
    if "cash_requests_resolution_key" in str(exc.orig):
        return IdempotencyConflict(key, None)
    return exc
