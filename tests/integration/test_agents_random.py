"""Agents at random, at once: seeded random cash-in and cash-out requests, confirmations (some of
another agent's requests, some of closed ones), rejections, cancellations, direct cash-ins, float
top-ups, sends between customers and expiry sweeps, twelve at a time, a fifth of them sent twice at
the same moment; requests expire within the run. Nothing tells the test what any one operation
should do. When all is done and every request is closed:

- every operation either did its work or was refused with a `PaymentsError` (nothing else);
- a command sent twice at once gave one result at most (a copy may be refused: between the two,
  another operation may have closed a request or freed a slot);
- every confirmed request has exactly one succeeded payment, every other request none that succeeded
  (a cash-out's payment failed, its hold voided), and no wallet holds anything;
- every wallet, float and commission account holds what a model computed from the succeeded
  payments says (commissions at the configured rates), and the ledger's invariants hold.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from payments.accounts import AccountKind
from payments.agent_commands import (
    CancelCashRequest,
    ConfirmCashRequest,
    DirectCashIn,
    RejectCashRequest,
    RequestCashIn,
    RequestCashOut,
    TopUpFloat,
    commission_of,
)
from payments.agents import AgentService, AgentSettings, register_agent
from payments.commands import Channel, SendToWallet
from payments.errors import PaymentsError
from payments.identities import PinService
from payments.money import Currency, Money
from tests.integration.payments_helpers import PaymentsWorld, payments_world
from tests.integration.test_agents import FAST, PIN, customer, key

KES = Currency.KES
SETTINGS = AgentSettings(request_expiry_s=2.0, max_pending_per_customer=3)
OPERATIONS, AT_ONCE = 360, 12
#: Another seed explores other mixes: SAUTI_AGENTS_SEED=7 pytest tests/integration/test_agents_random.py
SEED = int(os.environ.get("SAUTI_AGENTS_SEED", "20261130"))


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database()) as running:
        yield running


async def answer(work: Awaitable[Any]) -> str:
    """What an operation came to: the id of what it made, or the code of its refusal."""
    try:
        done = await work
    except PaymentsError as refused:
        return f"refused:{refused.code}"
    request = getattr(done, "request", None)
    if request is not None:
        return f"request:{request.public_id}"
    payment = getattr(done, "payment", None) or done
    return f"done:{getattr(payment, 'public_id', None) or getattr(payment, 'transfer_id', '')}"


@pytest.mark.slow
async def test_agents_at_random_keep_every_account_as_the_payments_say(world: PaymentsWorld):
    rng = random.Random(SEED)
    pins = PinService(FAST)
    agents = AgentService(world.payments, pins, SETTINGS)
    customers = [await customer(world, pins, funds=2_000) for _ in range(6)]
    agent_users = [await customer(world, pins, "Duka", funds=500) for _ in range(3)]
    numbers: dict[int, str] = {}
    for user in agent_users:
        async with world.engine.begin() as conn:
            numbers[user.id] = (await register_agent(conn, user.id, business_name=f"Duka {user.id}")).agent_number
    topped: dict[int, int] = {user.id: 0 for user in agent_users}
    counted: set[str] = set()
    for user in agent_users[:2]:  # the third starts with no float
        await agents.top_up_float(TopUpFloat(key(), user.id, Money.of(3_000, KES), f"QK{user.id}", "ops:test"))
        topped[user.id] += 300_000
    people = customers + agent_users
    start = {user.id: await world.wallet(user) for user in people}

    async def some_request(rng: random.Random, agent_id: int | None = None) -> str:
        """A request to act on: mostly an open one (of this agent when named), else any."""
        rows = await world.rows("SELECT public_id, status, agent_user_id FROM cash_requests ORDER BY id")
        if not rows:
            return "CR-NONE"
        open_ones = [r for r in rows if r.status == "pending" and agent_id in (None, r.agent_user_id)]
        return rng.choice(open_ones if open_ones and rng.random() < 0.8 else rows).public_id

    def amount(rng: random.Random) -> Money:
        return Money.of(rng.choice([rng.randint(10, 400), rng.randint(10, 400), 5_000]), KES)

    async def operation(rng: random.Random) -> Callable[[], Awaitable[str]]:
        """One random operation, chosen now, as a thunk that can be run twice at once."""
        someone, agent_user = rng.choice(customers), rng.choice(agent_users)
        number = numbers[agent_user.id]
        match rng.randrange(10):
            case 0 | 1:
                cmd = RequestCashIn(key(), someone.id, number, amount(rng))
                return lambda: answer(agents.request_cash_in(cmd))
            case 2 | 3:
                cmd_out = RequestCashOut(key(), someone.id, number, amount(rng))
                return lambda: answer(agents.request_cash_out(cmd_out, pin=PIN))
            case 4 | 5:
                mine = rng.random() < 0.85
                confirm = ConfirmCashRequest(key(), agent_user.id, await some_request(rng, agent_user.id if mine
                                                                                        else None))
                return lambda: answer(agents.confirm(confirm, pin=PIN))
            case 6:
                reject = RejectCashRequest(key(), agent_user.id, await some_request(rng, agent_user.id), "no cash")
                return lambda: answer(agents.reject(reject))
            case 7:
                cancel = CancelCashRequest(key(), someone.id, await some_request(rng))
                return lambda: answer(agents.cancel(cancel))
            case 8:
                direct = DirectCashIn(key(), agent_user.id, rng.choice(people).phone, amount(rng))
                return lambda: answer(agents.direct_cash_in(direct, pin=PIN))
            case _:
                match rng.randrange(3):
                    case 0:
                        # Its own receipt, as the CLI's default key (a receipt tops up one float, once).
                        top_up_key = key()
                        top_up = TopUpFloat(top_up_key, agent_user.id, Money.of(rng.randint(100, 1_000), KES),
                                            top_up_key, "ops:test")

                        async def topping() -> str:
                            done = await answer(agents.top_up_float(top_up))
                            if done.startswith("done:") and top_up.idempotency_key not in counted:
                                counted.add(top_up.idempotency_key)  # sent twice, it tops up once
                                topped[agent_user.id] += top_up.amount.minor
                            return done
                        return topping
                    case 1:
                        other = rng.choice([p for p in people if p.id != someone.id])
                        send = SendToWallet(key(), someone.id, amount(rng), Channel.USSD, recipient_user_id=other.id)
                        return lambda: answer(world.payments.handle(send))
                    case _:
                        return lambda: answer(agents.expire_requests())

    async def twice_or_once(thunk: Callable[[], Awaitable[str]], times: int) -> None:
        answers = await asyncio.gather(*[thunk() for _ in range(times)])
        # One result at most. A refusal beside it is no second result: the copies are served one
        # after the other, and between them another operation may close a request or free a slot.
        assert len({a for a in answers if not a.startswith("refused:")}) <= 1, f"sent {times} times: {answers}"

    for _ in range(0, OPERATIONS, AT_ONCE):
        batch = [await operation(rng) for _ in range(AT_ONCE)]
        await asyncio.gather(*[twice_or_once(thunk, 2 if rng.random() < 0.2 else 1) for thunk in batch])
        await asyncio.sleep(rng.choice([0, 0, 0.1, 0.4]))  # requests age; some expire

    # Every request closed: what is still open expires.
    await asyncio.sleep(SETTINGS.request_expiry_s + 0.1)
    await agents.expire_requests()
    statuses = {r.status for r in await world.rows("SELECT status FROM cash_requests")}
    assert "pending" not in statuses and {"confirmed", "expired"} <= statuses, statuses

    # Requests and their payments agree; nothing is held.
    for request in await world.rows(
            "SELECT r.public_id, r.kind, r.status, r.payment_id, p.status AS paid FROM cash_requests r "
            "LEFT JOIN payments p ON p.id = r.payment_id"):
        if request.status == "confirmed":
            assert request.paid == "succeeded", request
        else:
            assert request.paid in (None, "failed"), request
    assert await world.scalar("SELECT coalesce(sum(held), 0) FROM accounts") == 0

    # Every account as the succeeded payments say.
    wallets = dict(start)
    floats = {user.id: topped[user.id] for user in agent_users}
    commissions = {user.id: 0 for user in agent_users}
    for row in await world.rows("SELECT kind, payer_user_id, recipient_user_id, amount, fee FROM payments "
                                "WHERE status = 'succeeded'"):
        money = Money(row.amount, KES)
        if row.kind == "cash_in":  # the agent's float pays the customer
            floats[row.payer_user_id] -= row.amount
            wallets[row.recipient_user_id] += money
            commissions[row.payer_user_id] += commission_of(money, SETTINGS.cash_in_commission_bp).minor
        elif row.kind == "cash_out":  # the customer's wallet pays the agent's float, and the fee
            wallets[row.payer_user_id] -= Money(row.amount + row.fee, KES)
            floats[row.recipient_user_id] += row.amount
            commissions[row.recipient_user_id] += commission_of(money, SETTINGS.cash_out_commission_bp).minor
        else:
            assert row.kind == "p2p", row
            wallets[row.payer_user_id] -= Money(row.amount + row.fee, KES)
            wallets[row.recipient_user_id] += money
    for user in people:
        assert await world.wallet(user) == wallets[user.id], user.phone
    for user in agent_users:
        assert await world.balance(AccountKind.AGENT_FLOAT, KES, user.id) == Money(floats[user.id], KES)
        assert await world.balance(AccountKind.AGENT_COMMISSION, KES, user.id) == Money(commissions[user.id], KES)
    kinds = {r.kind for r in await world.rows("SELECT DISTINCT kind FROM payments WHERE status = 'succeeded'")}
    assert kinds >= {"cash_in", "cash_out", "p2p"}, kinds
    await world.assert_ledger_ok()
