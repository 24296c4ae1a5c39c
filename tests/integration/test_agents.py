"""Agents on a real PostgreSQL, with the provider sandboxes and the outbox worker running: cash-in
requests confirmed, rejected or expired; direct cash-in; cash-out holds posted or voided; float,
commission, permissions, PINs and idempotency keys; `sauti ledger check` after every test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from payments import payment_store as store
from payments.accounts import AccountKind, open_account
from payments.agent_commands import (
    CancelCashRequest,
    CashRequestClosed,
    CashRequestExpired,
    ConfirmCashRequest,
    CustomerAccountClosed,
    DirectCashIn,
    FloatTooLow,
    NotAnAgent,
    OwnAgent,
    ReceiptUsed,
    RejectCashRequest,
    RequestCashIn,
    RequestCashOut,
    TooManyPending,
    TopUpFloat,
    UnknownAgent,
    UnknownCashRequest,
)
from payments.agents import AgentService, AgentSettings, agent_by_number, register_agent
from payments.cash_requests import AgentStatus, CashRequestStatus, set_agent_status
from payments.commands import Channel, PaymentKind, Refund
from payments.errors import (
    AccountClosed,
    AccountLocked,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    WrongPin,
)
from payments.identities import PinPolicy, PinService, Role, User, get_user
from payments.ledger import Ledger, LedgerLimits
from payments.money import Currency, Money
from payments.orchestrator import Payments
from payments.payment_settings import PROVIDER_FOR
from payments.postings import Leg, TransferRequest
from payments.refunds import NotRefundable
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES, XOF = Currency.KES, Currency.XOF
PIN = "4826"
FAST = PinPolicy(argon2_time_cost=1, argon2_memory_kib=8_192, pepper="test-pepper")


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database()) as running:
        yield running


@pytest.fixture(scope="module")
def pins() -> PinService:
    return PinService(FAST)


@pytest.fixture(scope="module")
def agents(world: PaymentsWorld, pins: PinService) -> AgentService:
    return AgentService(world.payments, pins, AgentSettings())


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


def key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def receipt() -> str:
    """A provider receipt no other top-up used."""
    return f"QK{uuid.uuid4().hex[:8].upper()}"


async def customer(world: PaymentsWorld, pins: PinService, name: str = "Amina", *,
                   funds: int | None = None) -> User:
    user = await world.user(name=name)
    async with world.engine.begin() as conn:
        await pins.set_pin(conn, user.id, PIN)
    if funds:
        await world.fund(user, Money.of(funds, KES))
    return user


async def agent(world: PaymentsWorld, pins: PinService, agents: AgentService, name: str = "Duka la Mama",
                *, float_: int = 5000) -> tuple[User, str]:
    """A registered agent with a PIN and ``float_`` KES of float; returns it and its agent number."""
    user = await customer(world, pins, name="Mama Njeri")
    async with world.engine.begin() as conn:
        registered = await register_agent(conn, user.id, business_name=name)
    if float_:
        # A receipt of its own: a receipt tops up one float, once.
        await agents.top_up_float(TopUpFloat(key(), user.id, Money.of(float_, KES), reference=receipt(),
                                             operator="ops:alice"))
    return user, registered.agent_number


async def floats(world: PaymentsWorld, agent_user: User) -> tuple[Money, Money]:
    return (await world.balance(AccountKind.AGENT_FLOAT, KES, agent_user.id),
            await world.balance(AccountKind.AGENT_COMMISSION, KES, agent_user.id))


async def expense(world: PaymentsWorld) -> Money:
    return await world.balance(AccountKind.COMMISSION_EXPENSE, KES, "sauti")


async def held(world: PaymentsWorld, user: User) -> int:
    return await world.scalar("SELECT held FROM accounts WHERE code = :c", c=f"customer_wallet:{user.id}:KES")


async def receipts_of(world: PaymentsWorld, public_id: str) -> list[tuple[str, str]]:
    async with world.engine.connect() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT payload->>'to', payload->>'status' FROM outbox_jobs WHERE kind = 'sms.receipt' "
            "AND payload->>'payment' = $1 ORDER BY id", (public_id,))
        return [tuple(r) for r in rows]


# -- registration and float ------------------------------------------------------------------------


async def test_register_agent_gives_a_number_the_role_and_both_accounts(world, pins, agents):
    user = await customer(world, pins, name="Otieno")
    async with world.engine.begin() as conn:
        registered = await register_agent(conn, user.id, business_name="Otieno Shop",
                                          store_numbers=(f"{uuid.uuid4().int % 10**7:07d}",))
        assert len(registered.agent_number) == 6 and registered.agent_number.isdigit()
        assert (await get_user(conn, user.id)).has_role(Role.AGENT)
        assert registered.currency is KES and registered.name == "Otieno Shop"
        # Customers reach it by its agent number or by its store number.
        assert (await agent_by_number(conn, registered.agent_number)).user_id == user.id
        assert (await agent_by_number(conn, registered.store_numbers[0])).user_id == user.id
        assert await agent_by_number(conn, "not a number") is None
        with pytest.raises(InvalidRequest, match="already"):
            await register_agent(conn, user.id)
    other = await customer(world, pins)
    async with world.engine.begin() as conn:
        with pytest.raises(InvalidRequest, match="taken"):
            await register_agent(conn, other.id, agent_number=registered.agent_number)
    assert await agents.float_balance(user.id) == Money.zero(KES)
    assert await agents.commission_balance(user.id) == Money.zero(KES)


async def test_float_is_topped_up_from_provider_collection_once_per_key(world, pins, agents):
    user, _ = await agent(world, pins, agents, float_=0)
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")
    top_up = TopUpFloat("float-1", user.id, Money.of(20_000, KES), reference="QK99XYZ", operator="ops:bob")

    first = await agents.top_up_float(top_up)
    again = await agents.top_up_float(top_up)

    assert again.transfer_id == first.transfer_id and again.replayed
    assert await agents.float_balance(user.id) == Money.of(20_000, KES)
    assert await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") - collection_before == \
        Money.of(-20_000, KES)
    with pytest.raises(IdempotencyConflict):
        await agents.top_up_float(TopUpFloat("float-1", user.id, Money.of(30_000, KES), reference="QK99XYZ",
                                             operator="ops:bob"))
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE action = 'agent.float_topup' "
                              "AND subject = :s", s=f"user:{user.id}") == 1
    plain = await customer(world, pins)
    with pytest.raises(NotAnAgent):
        await agents.top_up_float(TopUpFloat(key(), plain.id, Money.of(100, KES), reference="x", operator="ops"))


async def test_a_receipt_tops_up_one_float_once_and_another_agent_is_refused(world, pins, agents):
    """One KES 15,000 receipt credited two floats (the transfer's key named the agent, the CLI's key is
    the receipt): a receipt now tops up one float once; its owner's retry replays."""
    njeri, _ = await agent(world, pins, agents, float_=0)
    otieno, _ = await agent(world, pins, agents, float_=0)
    paid_in = receipt()
    first = await agents.top_up_float(TopUpFloat(paid_in, njeri.id, Money.of(15_000, KES), paid_in, "ops:alice"))

    with pytest.raises(ReceiptUsed, match=paid_in) as refused:  # the same receipt for another agent
        await agents.top_up_float(TopUpFloat(paid_in, otieno.id, Money.of(15_000, KES), paid_in, "ops:alice"))
    assert isinstance(refused.value, IdempotencyConflict) and refused.value.existing_id == first.transfer_id
    with pytest.raises(ReceiptUsed):  # nor twice for the same agent under another key
        await agents.top_up_float(TopUpFloat(key(), njeri.id, Money.of(15_000, KES), paid_in, "ops:alice"))
    again = await agents.top_up_float(TopUpFloat(paid_in, njeri.id, Money.of(15_000, KES), f" {paid_in} ",
                                                 "ops:alice"))
    assert again.replayed and again.transfer_id == first.transfer_id

    # Typed in lower case (the CLI's key then differs too), it is the same receipt: refused.
    with pytest.raises(ReceiptUsed):
        await agents.top_up_float(TopUpFloat(paid_in.lower(), njeri.id, Money.of(15_000, KES), paid_in.lower(),
                                             "ops:alice"))

    assert await agents.float_balance(njeri.id) == Money.of(15_000, KES)
    assert await agents.float_balance(otieno.id) == Money.zero(KES)
    assert await world.scalar("SELECT count(*) FROM transfers WHERE kind = 'agent.float_topup' AND reference = :r",
                              r=paid_in) == 1


async def test_one_receipt_sent_for_two_agents_at_once_tops_up_one(world, pins, agents):
    both = [(await agent(world, pins, agents, float_=0))[0] for _ in range(2)]
    paid_in = receipt()
    answers = await asyncio.gather(*(agents.top_up_float(TopUpFloat(
        paid_in, who.id, Money.of(1_000, KES), paid_in, "ops:alice")) for who in both), return_exceptions=True)

    assert sorted(type(a).__name__ for a in answers) == ["ReceiptUsed", "TransferResult"]
    assert sum([await agents.float_balance(who.id) for who in both], Money.zero(KES)) == Money.of(1_000, KES)


async def test_top_ups_recorded_before_receipts_were_checked_still_replay(world, pins, agents):
    """Top-ups keep their transfer key (the agent and the caller's key), so those recorded before the
    receipt check, even two agents' under one receipt, replay on a retry rather than credit again."""
    njeri, _ = await agent(world, pins, agents, float_=0)
    otieno, _ = await agent(world, pins, agents, float_=0)
    paid_in = receipt()
    async with world.engine.begin() as conn:  # as the old code recorded them: one receipt, both floats
        source = await world.payments.accounts.collection(conn, PROVIDER_FOR[KES], KES)
        for who in (njeri, otieno):
            float_id = (await open_account(conn, AccountKind.AGENT_FLOAT, KES, who.id)).id
            await world.ledger.transfer(TransferRequest(
                f"float:{who.id}:{paid_in}", (Leg(source, -500_000, KES), Leg(float_id, 500_000, KES)),
                kind="agent.float_topup", reference=paid_in, metadata={"operator": "ops:alice"}), conn=conn)

    for who in (njeri, otieno):
        again = await agents.top_up_float(TopUpFloat(paid_in, who.id, Money.of(5_000, KES), paid_in, "ops:alice"))
        assert again.replayed
        assert await agents.float_balance(who.id) == Money.of(5_000, KES)
    with pytest.raises(ReceiptUsed):
        await agents.top_up_float(TopUpFloat(key(), njeri.id, Money.of(5_000, KES), paid_in, "ops:alice"))


# -- cash-in ---------------------------------------------------------------------------------------


async def test_cash_in_request_confirmed_moves_float_pays_commission_and_texts_both(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=5000)
    amina = await customer(world, pins, name="Amina Wanjiru")
    expense_before = await expense(world)

    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(1000, KES)))
    assert raised.request.status is CashRequestStatus.PENDING and raised.payment is None
    assert raised.request.commission == Money.of(20, KES)  # 2 %
    assert timedelta(minutes=29) < raised.request.expires_at - raised.request.created_at <= timedelta(minutes=30)
    assert await world.wallet(amina) == Money.zero(KES)  # nothing moves before the agent confirms

    page = await agents.pending_for_agent(agent_user.id)
    assert [(line.request.public_id, line.customer_name) for line in page.lines] == \
        [(raised.request.public_id, "Amina Wanjiru")]

    done = await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)

    payment = done.payment
    assert done.request.status is CashRequestStatus.CONFIRMED and payment is not None
    assert (payment.kind, payment.status, payment.payer_user_id, payment.recipient_user_id) == \
        ("cash_in", PaymentStatus.SUCCEEDED, agent_user.id, amina.id)
    assert payment.fee == Money.zero(KES)
    assert await world.scalar("SELECT agent_number FROM payments WHERE id = :i", i=payment.id) == number
    assert await world.wallet(amina) == Money.of(1000, KES)
    assert await floats(world, agent_user) == (Money.of(4000, KES), Money.of(20, KES))
    assert await expense(world) - expense_before == Money.of(-20, KES)
    # ONE transfer: float and commission expense out, wallet and commission in.
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 1
    assert await world.scalar("SELECT count(*) FROM postings WHERE transfer_id = :t",
                              t=payment.settle_transfer_id) == 4
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    assert [e.to_status for e in events] == [PaymentStatus.CREATED, PaymentStatus.SUCCEEDED]
    assert (await agents.pending_for_agent(agent_user.id)).lines == []

    # Both receipts were enqueued with the money; the worker sends them.
    assert await receipts_of(world, payment.public_id) == [("payer", "succeeded"), ("payee", "succeeded")]
    await world.worker.drain()
    sent = {m.to: m.message for m in world.sandboxes.africastalking.messages}
    assert "received KES 1,000 from Mama Njeri" in sent[amina.phone]
    assert "KES 1,000" in sent[agent_user.phone] and "succeeded" in sent[agent_user.phone]


async def test_agent_rejects_a_cash_in_request_and_nothing_moves(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=1000)
    amina = await customer(world, pins)
    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(300, KES)))

    reject = RejectCashRequest(key(), agent_user.id, raised.request.public_id, reason="no cash seen")
    rejected = await agents.reject(reject)
    assert rejected.request.status is CashRequestStatus.REJECTED and rejected.request.reason == "no cash seen"
    assert (await agents.reject(reject)).replayed  # the same key again: the same answer

    with pytest.raises(CashRequestClosed, match="rejected"):
        await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    assert await world.wallet(amina) == Money.zero(KES)
    assert await floats(world, agent_user) == (Money.of(1000, KES), Money.zero(KES))
    assert await world.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :a", a=agent_user.id) == 0


async def test_a_cash_in_request_expires_and_can_no_longer_be_confirmed(world, pins):
    quick = AgentService(world.payments, pins, AgentSettings(request_expiry_s=0.3))
    agent_user, number = await agent(world, pins, quick, float_=1000)
    amina, baraka = await customer(world, pins), await customer(world, pins)
    late = await quick.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(100, KES)))
    swept = await quick.request_cash_in(RequestCashIn(key(), baraka.id, number, Money.of(200, KES)))
    await asyncio.sleep(0.5)

    assert (await quick.pending_for_agent(agent_user.id)).lines == []
    with pytest.raises(CashRequestExpired):
        await quick.confirm(ConfirmCashRequest(key(), agent_user.id, late.request.public_id), pin=PIN)
    assert await quick.expire_requests() >= 1
    for raised in (late, swept):
        status = await world.scalar("SELECT status FROM cash_requests WHERE public_id = :p", p=raised.request.public_id)
        assert status == "expired"
        # Expired is what the agent is told, whether its confirmation or the sweep found it lapsed.
        with pytest.raises(CashRequestExpired, match="already expired"):
            await quick.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    assert await world.wallet(amina) == await world.wallet(baraka) == Money.zero(KES)
    assert await floats(world, agent_user) == (Money.of(1000, KES), Money.zero(KES))


async def test_a_cash_in_request_is_not_paid_into_an_account_closed_since(world, pins, agents):
    """A request raised before the customer's account closed was still paid into it on confirmation
    (a direct cash-in to it is refused): the confirmation now closes the request and moves nothing."""
    agent_user, number = await agent(world, pins, agents, float_=5000)
    amina = await customer(world, pins)
    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(1000, KES)))
    async with world.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE users SET status = 'closed' WHERE id = $1", (amina.id,))

    confirm = ConfirmCashRequest(key(), agent_user.id, raised.request.public_id)
    for _ in range(2):  # a retry gets the same answer
        with pytest.raises(CustomerAccountClosed, match="account is closed") as refused:
            await agents.confirm(confirm, pin=PIN)
        assert isinstance(refused.value, AccountClosed) and refused.value.code == "account_closed"
    with pytest.raises(CustomerAccountClosed):  # closed for every caller
        await agents.reject(RejectCashRequest(key(), agent_user.id, raised.request.public_id))

    request = refused.value.request
    assert request.status is CashRequestStatus.REJECTED and request.payment_id is None
    assert request.resolved_by_user_id is None and request.reason == "the customer's account is closed"
    assert await world.wallet(amina) == Money.zero(KES)
    assert await floats(world, agent_user) == (Money.of(5000, KES), Money.zero(KES))
    assert await world.scalar("SELECT count(*) FROM payments WHERE recipient_user_id = :c", c=amina.id) == 0
    assert (await agents.pending_for_agent(agent_user.id)).lines == []


async def test_direct_cash_in_by_the_agent_with_its_pin(world, pins, agents):
    agent_user, _ = await agent(world, pins, agents, float_=3000)
    baraka = await customer(world, pins, name="Baraka")
    typed = "0" + baraka.phone.removeprefix("+254")  # as the agent types it: 07...
    direct = DirectCashIn("direct-1", agent_user.id, typed, Money.of(2500, KES), Channel.USSD)

    done = await agents.direct_cash_in(direct, pin=PIN)
    again = await agents.direct_cash_in(direct, pin=PIN)

    assert done.request.status is CashRequestStatus.CONFIRMED and done.payment is not None
    assert done.payment.status is PaymentStatus.SUCCEEDED and done.payment.channel == "ussd"
    assert again.replayed and again.payment is not None and again.payment.public_id == done.payment.public_id
    assert await world.wallet(baraka) == Money.of(2500, KES)
    assert await floats(world, agent_user) == (Money.of(500, KES), Money.of(50, KES))
    with pytest.raises(IdempotencyConflict):
        await agents.direct_cash_in(DirectCashIn("direct-1", agent_user.id, typed, Money.of(100, KES)), pin=PIN)
    with pytest.raises(InvalidRequest):
        await agents.direct_cash_in(DirectCashIn(key(), agent_user.id, "12", Money.of(100, KES)), pin=PIN)


async def test_an_agent_never_cashes_in_to_itself(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=1000)

    with pytest.raises(OwnAgent):  # as a customer, at its own number
        await agents.request_cash_in(RequestCashIn(key(), agent_user.id, number, Money.of(100, KES)))
    with pytest.raises(OwnAgent):  # directly, to its own phone
        await agents.direct_cash_in(DirectCashIn(key(), agent_user.id, agent_user.phone, Money.of(100, KES)),
                                    pin=PIN)
    await world.fund(agent_user, Money.of(500, KES))
    with pytest.raises(OwnAgent):  # nor cash out from itself (its own commission for its own money)
        await agents.request_cash_out(RequestCashOut(key(), agent_user.id, number, Money.of(100, KES)), pin=PIN)

    assert await world.scalar("SELECT count(*) FROM cash_requests WHERE agent_user_id = :a", a=agent_user.id) == 0
    assert await floats(world, agent_user) == (Money.of(1000, KES), Money.zero(KES))
    assert await world.wallet(agent_user) == Money.of(500, KES)


async def test_an_agent_serves_only_customers_of_its_own_country(world, pins, agents):
    """A Kenyan agent cashed KES in to a Senegalese number: float and commission moved, and a KES
    wallet her menu never shows was opened. Refused now, as any payment to a wallet in another
    currency; so is a Senegalese customer's request at a Kenyan agent."""
    agent_user, number = await agent(world, pins, agents, float_=5000)
    awa = await world.user(XOF, name="Awa Diop")
    async with world.engine.begin() as conn:
        await pins.set_pin(conn, awa.id, PIN)
    await world.fund(awa, Money.of(5000, XOF))

    with pytest.raises(InvalidRequest, match="own country"):
        await agents.check_direct_cash_in(agent_user.id, awa.phone, Money.of(1000, KES))
    with pytest.raises(InvalidRequest, match="own country"):
        await agents.direct_cash_in(DirectCashIn(key(), agent_user.id, awa.phone, Money.of(1000, KES)), pin=PIN)
    with pytest.raises(InvalidRequest, match="own country"):
        await agents.request_cash_in(RequestCashIn(key(), awa.id, number, Money.of(1000, KES)))
    with pytest.raises(InvalidRequest):
        await agents.request_cash_out(RequestCashOut(key(), awa.id, number, Money.of(1000, XOF)), pin=PIN)

    assert await world.scalar("SELECT count(*) FROM accounts WHERE owner_user_id = :u AND currency = 'KES'",
                              u=awa.id) == 0
    assert await world.scalar("SELECT count(*) FROM cash_requests WHERE customer_user_id = :u", u=awa.id) == 0
    assert await floats(world, agent_user) == (Money.of(5000, KES), Money.zero(KES))
    assert await world.balance(AccountKind.CUSTOMER_WALLET, XOF, awa.id) == Money.of(5000, XOF)


async def test_a_float_too_low_is_refused_clearly_and_moves_nothing(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=100)
    amina = await customer(world, pins)
    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(500, KES)))

    with pytest.raises(FloatTooLow) as refused:
        await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    assert (refused.value.available, refused.value.needed) == (Money.of(100, KES), Money.of(500, KES))
    assert "top it up" in str(refused.value)
    with pytest.raises(FloatTooLow):
        await agents.direct_cash_in(DirectCashIn(key(), agent_user.id, amina.phone, Money.of(500, KES)), pin=PIN)

    assert await world.wallet(amina) == Money.zero(KES)
    assert await floats(world, agent_user) == (Money.of(100, KES), Money.zero(KES))
    assert await world.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :a", a=agent_user.id) == 0
    # The customer's request still waits: once the float is topped up, the same confirmation goes through.
    assert [line.request.public_id for line in (await agents.pending_for_agent(agent_user.id)).lines] == \
        [raised.request.public_id]
    await agents.top_up_float(TopUpFloat(key(), agent_user.id, Money.of(1000, KES), reference="R2", operator="ops"))
    done = await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    assert done.payment is not None and done.payment.status is PaymentStatus.SUCCEEDED
    assert await world.wallet(amina) == Money.of(500, KES)


# -- cash-out --------------------------------------------------------------------------------------


async def test_cash_out_holds_amount_and_fee_then_the_agents_confirmation_posts_it(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=0)
    chebet = await customer(world, pins, name="Chebet", funds=2000)
    fees_before, expense_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti"), await expense(world)

    raised = await agents.request_cash_out(RequestCashOut(key(), chebet.id, number, Money.of(1000, KES)), pin=PIN)

    pending = raised.payment
    assert pending is not None and (pending.kind, pending.status) == ("cash_out", PaymentStatus.PENDING)
    assert raised.request.fee == pending.fee == Money.of(10, KES)  # the basic plan's 1 %
    assert raised.request.commission == Money.of(5, KES)  # 0.5 %
    assert await world.wallet(chebet) == Money.of(2000, KES)  # held, not moved
    assert await held(world, chebet) == 101_000  # amount + fee, in cents
    assert await world.scalar("SELECT agent_number FROM payments WHERE id = :i", i=pending.id) == number

    page = await agents.pending_for_agent(agent_user.id, PaymentKind.CASH_OUT)
    assert [(line.request.public_id, line.customer_name) for line in page.lines] == [
        (raised.request.public_id, "Chebet")]
    assert (await agents.pending_for_agent(agent_user.id, PaymentKind.CASH_IN)).lines == []

    done = await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)

    assert done.payment is not None and done.payment.status is PaymentStatus.SUCCEEDED
    assert done.payment.settle_transfer_id is not None
    assert await world.wallet(chebet) == Money.of(990, KES) and await held(world, chebet) == 0
    assert await floats(world, agent_user) == (Money.of(1000, KES), Money.of(5, KES))
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") - fees_before == Money.of(10, KES)
    assert await expense(world) - expense_before == Money.of(-5, KES)
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, done.payment.id)
    assert [e.to_status for e in events] == [PaymentStatus.CREATED, PaymentStatus.PENDING, PaymentStatus.SUCCEEDED]
    assert await receipts_of(world, done.payment.public_id) == [("payer", "succeeded"), ("payee", "succeeded")]
    await world.worker.drain()
    sent = {m.to: m.message for m in world.sandboxes.africastalking.messages}
    assert "received KES 1,000 from Chebet" in sent[agent_user.phone]
    assert "KES 1,000" in sent[chebet.phone] and "Fee KES 10" in sent[chebet.phone]


async def test_more_cash_outs_at_once_than_the_pool_has_connections_all_go_through(world, pins, agents):
    """A cash-out priced itself on a second pooled connection while its first held the customer's
    row: as many at once as the pool has connections each held one and waited for another, until
    the pool timed out. Priced on its own connection now, each needs one at a time."""
    _, number = await agent(world, pins, agents, float_=0)
    people = [await customer(world, pins, name=f"Mteja {n}", funds=1000) for n in range(4)]
    small = create_async_engine(world.engine.url, pool_size=2, max_overflow=0, pool_timeout=5)
    try:
        service = AgentService(Payments(small, Ledger(small, LedgerLimits.from_major(999_999))), pins)
        answers = await asyncio.gather(*(service.request_cash_out(RequestCashOut(
            key(), person.id, number, Money.of(100, KES)), pin=PIN) for person in people), return_exceptions=True)
    finally:
        await small.dispose()

    assert [type(a).__name__ for a in answers] == ["CashResult"] * len(people), answers
    for person, done in zip(people, answers, strict=True):
        assert done.payment.status is PaymentStatus.PENDING
        assert await held(world, person) == (done.request.amount + done.request.fee).minor


async def test_a_rejected_or_cancelled_cash_out_voids_the_hold_and_the_wallet_is_whole(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=0)
    chebet = await customer(world, pins, funds=2000)
    for close in ("reject", "cancel"):
        raised = await agents.request_cash_out(RequestCashOut(key(), chebet.id, number, Money.of(500, KES)),
                                               pin=PIN)
        assert await held(world, chebet) == 50_500
        if close == "reject":
            closed = await agents.reject(RejectCashRequest(key(), agent_user.id, raised.request.public_id))
        else:
            with pytest.raises(UnknownCashRequest):  # only its customer may cancel it
                await agents.cancel(CancelCashRequest(key(), agent_user.id, raised.request.public_id))
            closed = await agents.cancel(CancelCashRequest(key(), chebet.id, raised.request.public_id))
        assert closed.payment is not None and closed.payment.status is PaymentStatus.FAILED
        assert closed.payment.error_code == ("cash_out_rejected" if close == "reject" else "cash_out_cancelled")
        assert await held(world, chebet) == 0
        assert await world.wallet(chebet) == Money.of(2000, KES)
        assert await world.scalar("SELECT status FROM holds WHERE id = :h", h=raised.request.hold_id) == "voided"
        assert await receipts_of(world, closed.payment.public_id) == [("payer", "failed")]
    assert await floats(world, agent_user) == (Money.zero(KES), Money.zero(KES))


async def test_an_expired_cash_out_is_swept_and_its_hold_voided(world, pins):
    quick = AgentService(world.payments, pins, AgentSettings(request_expiry_s=0.3))
    agent_user, number = await agent(world, pins, quick, float_=0)
    chebet = await customer(world, pins, funds=1000)
    raised = await quick.request_cash_out(RequestCashOut(key(), chebet.id, number, Money.of(400, KES)), pin=PIN)
    assert await held(world, chebet) == 40_400
    await asyncio.sleep(0.5)

    assert await quick.expire_requests() >= 1

    assert await world.scalar("SELECT status FROM cash_requests WHERE id = :i", i=raised.request.id) == "expired"
    assert await held(world, chebet) == 0 and await world.wallet(chebet) == Money.of(1000, KES)
    payment = await world.payment(raised.payment.public_id)
    assert (payment.status, payment.error_code) == (PaymentStatus.FAILED, "cash_out_expired")
    with pytest.raises(CashRequestClosed, match="expired"):
        await quick.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    assert await floats(world, agent_user) == (Money.zero(KES), Money.zero(KES))


async def test_the_gateways_sweep_releases_lapsed_cash_outs_until_stopped(world, pins):
    quick = AgentService(world.payments, pins, AgentSettings(request_expiry_s=0.2, sweep_interval_s=0.05))
    _, number = await agent(world, pins, quick, float_=0)
    chebet = await customer(world, pins, funds=300)
    raised = await quick.request_cash_out(RequestCashOut(key(), chebet.id, number, Money.of(100, KES)), pin=PIN)
    stop = asyncio.Event()
    sweep = asyncio.create_task(quick.sweep_expired_requests(stop))
    try:
        for _ in range(100):
            if await world.scalar("SELECT status FROM cash_requests WHERE id = :i", i=raised.request.id) != "pending":
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(sweep, timeout=5)
    assert await world.scalar("SELECT status FROM cash_requests WHERE id = :i", i=raised.request.id) == "expired"
    assert await held(world, chebet) == 0 and await world.wallet(chebet) == Money.of(300, KES)


async def test_a_customer_with_too_little_money_cannot_raise_a_cash_out(world, pins, agents):
    _, number = await agent(world, pins, agents, float_=0)
    chebet = await customer(world, pins, funds=500)

    with pytest.raises(InsufficientFunds):  # 500 + 5 fee > 500
        await agents.request_cash_out(RequestCashOut(key(), chebet.id, number, Money.of(500, KES)), pin=PIN)

    assert await world.scalar("SELECT count(*) FROM cash_requests WHERE customer_user_id = :c", c=chebet.id) == 0
    assert await world.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :c", c=chebet.id) == 0
    assert await held(world, chebet) == 0 and await world.wallet(chebet) == Money.of(500, KES)


# -- PINs, permissions, idempotency, pages -----------------------------------------------------------


async def test_a_wrong_pin_moves_nothing_and_counts_towards_the_lock(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=1000)
    amina = await customer(world, pins, funds=1000)
    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(100, KES)))

    with pytest.raises(WrongPin) as wrong:
        await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin="9173")
    assert wrong.value.attempts_left == 2
    with pytest.raises(WrongPin):
        await agents.request_cash_out(RequestCashOut(key(), amina.id, number, Money.of(100, KES)), pin="0000")
    assert await held(world, amina) == 0
    assert await world.scalar("SELECT status FROM cash_requests WHERE id = :i", i=raised.request.id) == "pending"
    assert await floats(world, agent_user) == (Money.of(1000, KES), Money.zero(KES))

    for _ in range(2):
        with pytest.raises((WrongPin, AccountLocked)):
            await agents.direct_cash_in(DirectCashIn(key(), agent_user.id, amina.phone, Money.of(100, KES)),
                                        pin="9173")
    with pytest.raises(AccountLocked):  # locked now: even the right PIN waits
        await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    assert await floats(world, agent_user) == (Money.of(1000, KES), Money.zero(KES))


async def test_only_the_named_agent_sees_and_serves_its_requests(world, pins, agents):
    first, number = await agent(world, pins, agents, float_=1000)
    second, _ = await agent(world, pins, agents, name="Kiosk B", float_=1000)
    plain = await customer(world, pins)
    amina = await customer(world, pins)
    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(100, KES)))

    assert (await agents.pending_for_agent(second.id)).lines == []
    with pytest.raises(UnknownCashRequest):
        await agents.confirm(ConfirmCashRequest(key(), second.id, raised.request.public_id), pin=PIN)
    with pytest.raises(UnknownCashRequest):
        await agents.reject(RejectCashRequest(key(), second.id, raised.request.public_id))
    with pytest.raises(NotAnAgent):
        await agents.confirm(ConfirmCashRequest(key(), plain.id, raised.request.public_id), pin=PIN)
    with pytest.raises(NotAnAgent):
        await agents.pending_for_agent(plain.id)
    with pytest.raises(UnknownCashRequest):
        await agents.confirm(ConfirmCashRequest(key(), first.id, "cr_nothing"), pin=PIN)

    # A suspended agent is not offered to customers and serves nothing.
    async with world.engine.begin() as conn:
        await set_agent_status(conn, first.id, AgentStatus.SUSPENDED)
    with pytest.raises(UnknownAgent):
        await agents.request_cash_in(RequestCashIn(key(), plain.id, number, Money.of(100, KES)))
    with pytest.raises(NotAnAgent):
        await agents.confirm(ConfirmCashRequest(key(), first.id, raised.request.public_id), pin=PIN)
    with pytest.raises(UnknownAgent):
        await agents.request_cash_in(RequestCashIn(key(), plain.id, "000001", Money.of(100, KES)))
    assert await world.wallet(amina) == Money.zero(KES)


async def test_concurrent_confirmations_of_one_request_make_exactly_one_transfer(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=1000)
    amina = await customer(world, pins)
    raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(400, KES)))
    shared = ConfirmCashRequest("confirm-shared", agent_user.id, raised.request.public_id)
    attempts = [shared] * 4 + [ConfirmCashRequest(key(), agent_user.id, raised.request.public_id) for _ in range(4)]

    results = await asyncio.gather(*(agents.confirm(a, pin=PIN) for a in attempts), return_exceptions=True)

    confirmed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, CashRequestClosed) for r in refused), refused
    assert len({r.payment.public_id for r in confirmed}) == 1
    assert sum(not r.replayed for r in confirmed) == 1
    assert await world.scalar("SELECT count(*) FROM transfers WHERE idempotency_key = :k",
                              k=f"cash_in:{raised.request.public_id}") == 1
    assert await world.wallet(amina) == Money.of(400, KES)
    assert await floats(world, agent_user) == (Money.of(600, KES), Money.of(8, KES))


async def test_a_customers_requests_and_the_agents_direct_cash_ins_at_once_never_deadlock(world, pins):
    # Each locks its own user row and names the other in a foreign key (which locks the other's row
    # KEY SHARE): with FOR UPDATE on the own row, the two waited for each other.
    agents = AgentService(world.payments, pins, AgentSettings(max_pending_per_customer=100))
    agent_user, number = await agent(world, pins, agents, float_=5000)
    amina = await customer(world, pins)
    work = []
    for _ in range(20):
        work += [agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(10, KES))),
                 agents.direct_cash_in(DirectCashIn(key(), agent_user.id, amina.phone, Money.of(10, KES)), pin=PIN)]
    results = await asyncio.gather(*work, return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert await world.wallet(amina) == Money.of(200, KES)


async def test_idempotency_keys_replay_the_same_request_and_refuse_another(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=2000)
    amina = await customer(world, pins)
    ask = RequestCashIn("cash-in-1", amina.id, number, Money.of(300, KES))

    first = await agents.request_cash_in(ask)
    again = await agents.request_cash_in(RequestCashIn("cash-in-1", amina.id, number, Money.of(300, KES),
                                                       Channel.API))
    assert again.replayed and again.request.public_id == first.request.public_id
    with pytest.raises(IdempotencyConflict):
        await agents.request_cash_in(RequestCashIn("cash-in-1", amina.id, number, Money.of(301, KES)))

    other = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(50, KES)))
    confirm = ConfirmCashRequest("confirm-1", agent_user.id, first.request.public_id)
    done = await agents.confirm(confirm, pin=PIN)
    replay = await agents.confirm(confirm, pin=PIN)
    assert replay.replayed and replay.payment.public_id == done.payment.public_id
    with pytest.raises(IdempotencyConflict):  # the key confirmed another request
        await agents.confirm(ConfirmCashRequest("confirm-1", agent_user.id, other.request.public_id), pin=PIN)
    with pytest.raises(IdempotencyConflict):  # ... or the same request another way
        await agents.reject(RejectCashRequest("confirm-1", agent_user.id, first.request.public_id))
    assert await world.wallet(amina) == Money.of(300, KES)
    assert await world.scalar("SELECT status FROM cash_requests WHERE id = :i", i=other.request.id) == "pending"


async def test_a_customer_has_a_few_requests_open_at_most(world, pins, agents):
    _, number = await agent(world, pins, agents, float_=0)
    amina = await customer(world, pins)
    for _ in range(3):
        await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(10, KES)))
    with pytest.raises(TooManyPending):
        await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(10, KES)))
    open_requests = await agents.pending_of_customer(amina.id)
    assert len(open_requests) == 3
    await agents.cancel(CancelCashRequest(key(), amina.id, open_requests[0].public_id))
    await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(10, KES)))


async def test_pending_requests_come_newest_first_a_page_at_a_time(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=0)
    raised = []
    for n in range(7):
        person = await customer(world, pins, name=f"Customer {n}")
        raised.append((await agents.request_cash_in(RequestCashIn(key(), person.id, number,
                                                                  Money.of(100 + n, KES)))).request)

    seen, before, pages = [], None, 0
    while True:
        page = await agents.pending_for_agent(agent_user.id, limit=3, before=before)
        pages += 1
        seen.extend((line.customer_name, line.request.amount) for line in page.lines)
        if page.next_before is None:
            break
        before = page.next_before
    assert pages == 3
    assert seen == [(f"Customer {n}", Money.of(100 + n, KES)) for n in reversed(range(7))]
    with pytest.raises(InvalidRequest):
        await agents.pending_for_agent(agent_user.id, PaymentKind.P2P)


async def test_commission_earned_today_this_month_and_ever(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=10_000)
    for amount in (1000, 2500):
        person = await customer(world, pins)
        raised = await agents.request_cash_in(RequestCashIn(key(), person.id, number, Money.of(amount, KES)))
        await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)

    earned = await agents.commission_earned(agent_user.id)
    assert earned.today == earned.this_month == earned.all_time == Money.of(70, KES)
    next_month = datetime.now(UTC) + timedelta(days=32)
    later = await agents.commission_earned(agent_user.id, now=next_month)
    assert (later.today, later.this_month, later.all_time) == (Money.zero(KES), Money.zero(KES), Money.of(70, KES))
    assert await agents.float_balance(agent_user.id) == Money.of(6500, KES)


async def test_cash_payments_are_not_refunded_and_cash_ins_do_not_spend_the_agents_allowance(world, pins, agents):
    agent_user, number = await agent(world, pins, agents, float_=100_000)
    amina = await customer(world, pins)
    done = None
    for _ in range(3):
        raised = await agents.request_cash_in(RequestCashIn(key(), amina.id, number, Money.of(30_000, KES)))
        done = await agents.confirm(ConfirmCashRequest(key(), agent_user.id, raised.request.public_id), pin=PIN)
    # 90,000 of cash-ins today: the agent's own (tier 0: 70,000 a day) payments are untouched by them.
    await world.fund(agent_user, Money.of(1000, KES))
    quoted = await world.payments.quote(agent_user.id, Money.of(500, KES), recipient_user_id=amina.id)
    assert quoted.fee == Money.of(5, KES)
    with pytest.raises(NotRefundable):
        await world.payments.handle(Refund("undo-cash-in", done.payment.public_id, reason="customer asked"))
    assert await world.wallet(amina) == Money.of(90_000, KES)
    assert await world.wallet(agent_user) == Money.of(1000, KES)
