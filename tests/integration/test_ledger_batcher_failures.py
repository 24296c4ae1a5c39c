"""The group-commit batcher when things go wrong: every submitted operation is answered, an operation
the batcher cannot send fails alone, and a hold resolved by an attempt whose reply was lost is not
reported to its caller as resolved by someone else."""

from __future__ import annotations

import asyncio
import socket
import uuid

import asyncpg
import pytest

from db.engine import create_engine
from payments import errors as pe
from payments import ledger as ledger_module
from payments.accounts import balance, get_account
from payments.ledger import HoldResult, Ledger, LedgerLimits, TransferBatcher
from payments.ledger_check import check_ledger
from payments.money import Currency, Money
from payments.postings import HoldRequest, TransferRequest, payment_legs
from payments.shard_routing import ShardRouter
from tests.integration.ledger_helpers import fund, new_wallet

KES = Currency.KES
LIMITS = LedgerLimits.from_major(999_999)
#: Long enough for any answer on a test database; a caller still waiting after this is stranded.
ANSWER_S = 10


def key() -> str:
    return f"batcher-{uuid.uuid4()}"


async def bal(engine, account_id: int) -> int:
    async with engine.connect() as conn:
        return (await balance(conn, account_id)).minor


async def pairs(engine, count: int) -> list[tuple[int, int]]:
    """``count`` (payer, payee) wallet pairs, each payer holding 100 KES."""
    out = []
    for _ in range(count):
        payer, payee = await new_wallet(engine), await new_wallet(engine)
        await fund(Ledger(engine, LIMITS), engine, payer, Money.of(100, KES))
        out.append((payer, payee))
    return out


async def answers(*calls) -> list:
    """Each call's result or exception; fails the test if any caller is never answered."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    _, pending = await asyncio.wait(tasks, timeout=ANSWER_S)
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} of {len(tasks)} callers were never answered"
    return [task.exception() or task.result() for task in tasks]


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metadata_the_batcher_cannot_encode_is_refused_when_the_request_is_built():
    # json.dumps accepts a non-string key (it writes "1"); the batcher's encoder does not.
    with pytest.raises(pe.InvalidRequest):
        TransferRequest(key(), payment_legs(1, 2, Money.of(1, KES)), metadata={1: "x"})
    with pytest.raises(pe.InvalidRequest):
        HoldRequest(key(), payment_legs(1, 2, Money.of(1, KES)), metadata={"n": 2**70})


async def test_an_op_the_batcher_cannot_encode_fails_alone_and_later_ops_are_still_answered(engine):
    batcher = TransferBatcher(engine, max_batch=2)
    wallets = await pairs(engine, 4)
    ops = [TransferRequest(key(), payment_legs(payer, payee, Money.of(10, KES))).as_op() for payer, payee in wallets]
    # Only a bug could send this (the request refuses such metadata): it shares the first batch.
    ops[0]["meta"] = {1: "x"}
    outcomes = await answers(*(batcher.submit(op) for op in ops))
    assert isinstance(outcomes[0], pe.InvalidRequest)
    assert [o["s"] for o in outcomes[1:]] == ["ok", "ok", "ok"]
    assert (await bal(engine, wallets[0][0]), await bal(engine, wallets[0][1])) == (10_000, 0)
    for payer, payee in wallets[1:]:
        assert (await bal(engine, payer), await bal(engine, payee)) == (9_000, 1_000)


def _unbalanced_op(source: int, destination: int) -> dict:
    """An op the database refuses (its legs do not balance), failing its batch as a whole, so that its
    batch is applied op by op."""
    return {"op": "transfer", "key": key(), "hash": "unbalanced", "kind": "p2p", "ref": None, "meta": {},
            "legs": [{"a": source, "m": -500, "c": "KES"}, {"a": destination, "m": 400, "c": "KES"}]}


async def test_an_unexpected_error_while_retrying_op_by_op_answers_every_caller(engine, monkeypatch):
    batcher = TransferBatcher(engine, max_batch=4)
    wallets = await pairs(engine, 6)
    good = [TransferRequest(key(), payment_legs(payer, payee, Money.of(10, KES))).as_op() for payer, payee in wallets]

    async def broken(engine, ops):
        raise RuntimeError("provoked: the op-by-op retry broke")

    monkeypatch.setattr(ledger_module, "apply_ops_atomically", broken)
    # The first batch (3 good ops and a malformed one) fails as a whole; its op-by-op retry breaks,
    # with two more ops queued behind it.
    outcomes = await answers(*(batcher.submit(op) for op in [*good[:3], _unbalanced_op(*wallets[5]), *good[3:5]]))
    assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes

    monkeypatch.undo()
    # The batcher still serves: a new drain starts for the next op.
    (after,) = await answers(batcher.submit(good[5]))
    assert after["s"] == "ok"


async def test_an_unreachable_database_fails_every_batched_caller_instead_of_stranding_them(engine):
    unreachable = create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/sauti", pool_size=1)
    try:
        requests = [TransferRequest(key(), payment_legs(1, 2, Money.of(1, KES))) for _ in range(5)]

        # The shard router cannot load its lists (its refresh needs a connection of its own).
        ledger = Ledger(unreachable, LIMITS, batcher=TransferBatcher(unreachable, max_batch=2))
        outcomes = await answers(*(ledger.transfer(r) for r in requests))
        assert all(isinstance(o, Exception) for o in outcomes), outcomes

        # The router has its lists; the batch's own connection cannot be had.
        batcher = TransferBatcher(unreachable, max_batch=2)
        batcher.shards = ShardRouter(engine)
        await batcher.shards.refresh_if_due()
        ledger = Ledger(unreachable, LIMITS, batcher=batcher)
        outcomes = await answers(*(ledger.transfer(r) for r in requests))
        assert all(isinstance(o, Exception) for o in outcomes), outcomes
        # And again: a failed drain leaves the batcher able to answer.
        outcomes = await answers(ledger.transfer(requests[0]))
        assert isinstance(outcomes[0], Exception)
    finally:
        await unreachable.dispose()


def _lose_the_reply(monkeypatch, before=None):
    """The first batch's connection dies with the batch sent: after it committed (the default), or,
    with ``before``, without applying it, ``before`` having run first (someone else's move)."""
    real = ledger_module._apply_on_driver
    calls = 0

    async def flaky(driver, ops, *args):
        nonlocal calls
        calls += 1
        if calls > 1:
            return await real(driver, ops, *args)
        if before is None:
            await real(driver, ops, *args)  # committed: only the reply is lost
        else:
            await before()
        driver.terminate()
        raise asyncpg.ConnectionDoesNotExistError("provoked: connection was closed in the middle of operation")

    monkeypatch.setattr(ledger_module, "_apply_on_driver", flaky)


async def _held(engine, amount: int) -> tuple[Ledger, int, int, HoldResult]:
    ledger = Ledger(engine, LIMITS, batcher=TransferBatcher(engine))
    payer, payee = (await pairs(engine, 1))[0]
    hold = await ledger.hold(HoldRequest(key(), payment_legs(payer, payee, Money.of(amount, KES))))
    return ledger, payer, payee, hold


async def test_a_post_hold_whose_reply_was_lost_after_it_committed_answers_posted(engine, monkeypatch):
    ledger, payer, payee, hold = await _held(engine, 10)
    _lose_the_reply(monkeypatch)
    posted = await ledger.post_hold(hold.hold_id)
    monkeypatch.undo()
    assert posted.hold_id == hold.hold_id and posted.status == "posted" and posted.replayed
    assert posted.transfer is not None
    assert posted.transfer.balance_after(payer) == 9_000 and posted.transfer.balance_after(payee) == 1_000
    assert (await bal(engine, payer), await bal(engine, payee)) == (9_000, 1_000)
    # Posted once: a later post is still refused, naming the same transfer.
    with pytest.raises(pe.HoldNotPending) as again:
        await ledger.post_hold(hold.hold_id)
    assert again.value.transfer_id == posted.transfer.transfer_id
    assert (await check_ledger(engine)).ok


async def test_a_void_hold_whose_reply_was_lost_after_it_committed_answers_voided(engine, monkeypatch):
    ledger, payer, payee, hold = await _held(engine, 10)
    _lose_the_reply(monkeypatch)
    voided = await ledger.void_hold(hold.hold_id)
    monkeypatch.undo()
    assert voided.hold_id == hold.hold_id and voided.status == "voided" and voided.replayed
    async with engine.connect() as conn:
        assert (await get_account(conn, payer)).held == 0
    assert (await bal(engine, payer), await bal(engine, payee)) == (10_000, 0)


async def test_a_lost_post_hold_that_finds_the_hold_voided_still_fails(engine, monkeypatch):
    ledger, payer, payee, hold = await _held(engine, 10)
    # Someone else voids the hold; the post's connection dies before it ran.
    _lose_the_reply(monkeypatch, before=lambda: Ledger(engine, LIMITS).void_hold(hold.hold_id))
    with pytest.raises(pe.HoldNotPending) as refused:
        await ledger.post_hold(hold.hold_id)
    assert refused.value.status == "voided"
    assert (await bal(engine, payer), await bal(engine, payee)) == (10_000, 0)
