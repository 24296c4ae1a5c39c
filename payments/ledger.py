"""The wallet ledger: transfers, holds and reversals written through one SQL function.

Every operation becomes a JSON op for `ledger_apply` (see the 0001 migration), which runs in one
round trip, locks what it touches in a global order and re-checks every rule. Two ways in:

- inside the caller's transaction (``conn=...``): the payment orchestrator records a state change, its
  postings and its outbox jobs atomically;
- on its own (no ``conn``): operations from concurrent tasks are grouped by `TransferBatcher` into one
  transaction per batch (group commit), which is how the ledger outruns one-commit-per-transfer.

Results are values (`TransferResult`, `HoldResult`); failures are the errors of `payments.errors`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments.errors import (
    AlreadyReversed,
    AmountOutOfRange,
    CurrencyMismatch,
    HoldNotPending,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    PaymentsError,
    UnknownAccount,
    UnknownTransfer,
)
from payments.fees import FeePlan
from payments.money import Currency, Money
from payments.postings import ABSOLUTE_MAX_MINOR, HoldRequest, Leg, ReverseRequest, TransferRequest
from payments.shard_routing import ShardRouter, independent

log = logging.getLogger(__name__)

_APPLY = sql("SELECT ledger_apply(CAST(:ops AS jsonb), :independent)")
_APPLY_DRIVER = "SELECT ledger_apply($1::text::jsonb, $2)"
#: What applying a batch may raise from the database or the connection to it.
_DATABASE_ERRORS = (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


@dataclass(frozen=True, slots=True)
class PostingResult:
    account_id: int
    amount: int
    balance_after: int


@dataclass(frozen=True, slots=True)
class TransferResult:
    """A written (or replayed) transfer and the balances its postings left."""

    transfer_id: int
    replayed: bool
    postings: tuple[PostingResult, ...]

    def balance_after(self, account_id: int) -> int | None:
        """The account's balance after its last posting in this transfer."""
        found = [p.balance_after for p in self.postings if p.account_id == account_id]
        return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class HoldResult:
    hold_id: int
    status: str
    replayed: bool = False
    transfer: TransferResult | None = None


@dataclass(frozen=True, slots=True)
class LedgerLimits:
    """The largest amount one leg of a transfer may credit to anyone, per currency, in minor units: a
    sanity bound under the payments' own limits, never tighter than they are (see `for_payments`)."""

    max_minor: Mapping[Currency, int]

    @classmethod
    def from_major(cls, max_major: int) -> LedgerLimits:
        """Each leg at most ``max_major`` major units: for a ledger that moves no fees with amounts."""
        return cls({c: max_major * c.minor_per_major for c in Currency})

    @classmethod
    def for_payments(cls, max_major: int, fee_plans: Iterable[FeePlan]) -> LedgerLimits:
        """The bound for the ledger payments write to: ``max_major`` is the most one payment may move
        (`ledger.max_transaction`), and a leg may carry that payment's fee with it: a payout's debit
        puts amount + fee in clearing, and a payout that failed or came back, or a wallet payment
        refunded, credits the payer amount + fee. So each currency's bound is ``max_major`` plus the
        largest fee any of ``fee_plans`` charges on it (fees only grow with the amount): every leg
        of a payment the quote accepted, and of its giving back, passes."""
        plans = tuple(fee_plans)
        bounds = {}
        for currency in Currency:
            cap = Money(max_major * currency.minor_per_major, currency)
            bounds[currency] = cap.minor + max((plan.fee_for(cap).minor for plan in plans), default=0)
        return cls(bounds)

    def check(self, request: TransferRequest | HoldRequest) -> None:
        for leg in request.legs:
            cap = self.max_minor.get(leg.currency)
            if cap is not None and leg.amount > cap:
                raise AmountOutOfRange(
                    f"{leg.amount} minor units of {leg.currency} is more than one transaction may move ({cap})")


def _postings(raw: Sequence[Sequence[int]] | None) -> tuple[PostingResult, ...]:
    return tuple(PostingResult(int(a), int(m), int(b)) for a, m, b in (raw or ()))


def _interpret(op: Mapping[str, Any], result: Mapping[str, Any]) -> TransferResult | HoldResult:
    """Turn one `ledger_apply` result into a value, or raise the error it reports."""
    status = result["s"]
    if status in ("ok", "replayed"):
        replayed = status == "replayed"
        if "h" in result:
            transfer = None
            if "t" in result and result.get("p") is not None:
                transfer = TransferResult(result["t"], replayed, _postings(result["p"]))
            return HoldResult(result["h"], result["status"], replayed, transfer)
        return TransferResult(result["t"], replayed, _postings(result["p"]))
    if status == "conflict":
        raise IdempotencyConflict(op["key"], result.get("t") or result.get("h"))
    if status == "insufficient_funds":
        raise InsufficientFunds(result["account"], result.get("available"), result.get("needed"))
    if status == "unknown_account":
        raise UnknownAccount(result["account"])
    if status == "currency_mismatch":
        raise CurrencyMismatch(result["account"], result["expected"], result["got"])
    if status in ("hold_posted", "hold_voided", "unknown_hold"):
        raise HoldNotPending(int(result["h"]), status.removeprefix("hold_").replace("unknown_hold", "unknown"),
                             result.get("t"))
    if status == "unknown_transfer":
        raise UnknownTransfer(f"no transfer {result['t']} to reverse")
    if status == "already_reversed":
        raise AlreadyReversed(op["t"], result.get("t"))
    raise PaymentsError(f"unexpected ledger result {result!r}")


def _error_from_database(exc: Exception) -> PaymentsError:
    """A database error raised while applying one op (a backstop fired): as a domain error."""
    message = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    if "accounts_no_overdraft" in message:
        return InsufficientFunds(0)
    return PaymentsError(f"the ledger refused the operation: {message.splitlines()[0]}")


def _encode_op(op: Mapping[str, Any]) -> bytes:
    """One op as JSON; `InvalidRequest` when the encoder refuses it (metadata with a key that is not
    a string: only a bug could send one, requests refuse such metadata when they are built)."""
    try:
        return orjson.dumps(op)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise InvalidRequest(f"the ledger cannot encode this operation: {exc}") from None


def _encode(ops: Sequence[Mapping[str, Any]]) -> str:
    """Ops as the JSON array `ledger_apply` takes, each encoded on its own (see `_encode_op`)."""
    return _join([_encode_op(op) for op in ops])


def _join(encoded: Sequence[bytes]) -> str:
    return (b"[" + b",".join(encoded) + b"]").decode()


def _decode(raw: Any) -> list[dict[str, Any]]:
    return orjson.loads(raw) if isinstance(raw, str | bytes) else raw


async def apply_ops(conn: AsyncConnection, ops: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run ops through `ledger_apply` on ``conn`` (in its transaction); one raw result per op."""
    params = {"ops": _encode(ops), "independent": independent(ops)}
    return _decode((await conn.execute(_APPLY, params)).scalar_one())


async def apply_ops_atomically(engine: AsyncEngine, ops: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run ops as one transaction of their own, in a single round trip (see `_apply_on_driver`)."""
    async with engine.connect() as conn:
        driver = await _driver(conn)
        try:
            return await _apply_on_driver(driver, ops)
        except _DATABASE_ERRORS:
            await _drop_if_closed(conn, driver)
            raise


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a pooled SQLAlchemy connection."""
    return (await conn.get_raw_connection()).driver_connection


async def _drop_if_closed(conn: AsyncConnection, driver: Any) -> None:
    """After a failure: a connection the server closed is invalidated, so the pool does not hand it
    out again."""
    if driver.is_closed():
        await conn.invalidate()


async def _apply_on_driver(driver: Any, ops: Sequence[Mapping[str, Any]],
                           encoded: str | None = None) -> list[dict[str, Any]]:
    """A lone statement outside an explicit transaction is its own atomic transaction in PostgreSQL,
    so the driver runs ``SELECT ledger_apply(...)`` directly: no BEGIN and COMMIT round trips, which
    at one commit per batch are most of the cost. ``encoded``: the ops already encoded (a batcher
    encodes each op on its own first, so that one it cannot encode fails alone)."""
    return _decode(await driver.fetchval(_APPLY_DRIVER, _encode(ops) if encoded is None else encoded,
                                         independent(ops)))


#: Ops waiting in a `TransferBatcher`, each with the future its submitter awaits.
_Batch = list[tuple[dict[str, Any], asyncio.Future]]


class TransferBatcher:
    """Group commit: ops submitted concurrently are applied together, one transaction per batch.

    At most ``pipelines`` batches are in flight; while they commit, new ops queue and form the next
    batch. If a batch fails as a whole (a database backstop fired), each of its ops is retried alone
    so only the faulty one fails. IMPORTANT: idempotency is unaffected: it is enforced per op by the
    database, whichever batch an op lands in.
    """

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 64, pipelines: int = 1) -> None:
        self._engine = engine
        self._max_batch = max(1, max_batch)
        self._pipelines = max(1, pipelines)
        self._pending: _Batch = []
        self._active = 0
        self._drains = 0
        #: Shared with the `Ledger` this batcher serves: one cached shard list per process.
        self.shards = ShardRouter(engine)

    async def submit(self, op: dict[str, Any]) -> dict[str, Any]:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((op, fut))
        if self._active < self._pipelines:
            self._active += 1
            self._drains += 1
            asyncio.get_running_loop().create_task(self._drain(self._drains))
        return await fut

    async def _drain(self, slot: int) -> None:
        # The ops this drain took off the queue and has not answered yet.
        in_hand: _Batch = []
        try:
            # Let every task that is ready this tick enqueue before the first batch is cut.
            await asyncio.sleep(0)
            while self._pending:
                failed: _Batch | None = None
                lost = False
                # Before taking a connection: the router may need one of its own to load the lists.
                await self.shards.refresh_if_due()
                # One pooled connection for a run of batches: checking one out per batch cost about
                # as much Python time as building the batch's requests.
                async with self._engine.connect() as conn:
                    driver = await _driver(conn)
                    while self._pending and self.shards.fresh:
                        # Share what is waiting among the batches being cut now, so that concurrent
                        # pipelines (connections, cores) each take part instead of one taking all.
                        size = min(self._max_batch, -(-len(self._pending) // self._active))
                        in_hand = self._pending[:size]
                        del self._pending[:size]
                        failed = await self._run(in_hand, slot, driver)
                        if failed is not None:
                            # Closed: the batch may have committed before its reply was lost.
                            lost = driver.is_closed()
                            await _drop_if_closed(conn, driver)
                            break
                        in_hand = []
                        # The tasks this batch answered run now and queue their next ops, which
                        # then go out on the same connection instead of a new drain's.
                        await asyncio.sleep(0)
                if failed is not None:
                    await self._one_by_one(failed, slot, lost=lost)
                    in_hand = []
        except BaseException as exc:
            # Whatever escaped (the database unreachable, a bug, a cancellation): no caller may wait
            # for ever on a future nobody will settle. The ops in hand fail with it, and so do the
            # queued ones unless another drain is still running (it takes them when it loops).
            stranded = list(in_hand)
            if self._active == 1:
                stranded += self._pending
                self._pending.clear()
            for _, fut in stranded:
                _settle(fut, error=exc)
            if not isinstance(exc, Exception):
                raise
            log.error("ledger batcher failed; %d waiting operation(s) failed with it", len(stranded), exc_info=exc)
        finally:
            self._active -= 1

    async def _run(self, batch: _Batch, slot: int, driver: Any) -> _Batch | None:
        """Apply one batch and settle its futures. A batch that failed as a whole is returned (less
        any op that could not be encoded, which already failed alone), for `_one_by_one`, unless it
        was one op on a connection still open: then the op failed."""
        try:
            sent: _Batch = []
            ops, encoded = [], []
            for op, fut in batch:
                # Each pipeline credits its own shard of a hot account, so concurrent batches do not
                # queue on one row.
                routed = self.shards.route_cached(op, slot=slot)
                try:
                    encoded.append(_encode_op(routed))
                except InvalidRequest as exc:
                    _settle(fut, error=exc)  # alone: the other ops of the batch go ahead
                    continue
                sent.append((op, fut))
                ops.append(routed)
            if not sent:
                return None
            results = await _apply_on_driver(driver, ops, _join(encoded))
        except _DATABASE_ERRORS as exc:
            if len(sent) == 1 and not driver.is_closed():
                _settle(sent[0][1], error=exc)
                return None
            log.warning("ledger batch of %d failed (%s); applying its ops one by one", len(sent), exc)
            return sent
        except BaseException as exc:
            for _, fut in batch:
                _settle(fut, error=exc)
            raise
        for (_, fut), result in zip(sent, results, strict=True):
            _settle(fut, result=result)
        return None

    async def _one_by_one(self, batch: _Batch, slot: int, *, lost: bool = False) -> None:
        """Apply each op of a failed batch alone, so only a faulty op fails. IMPORTANT: a lost
        connection (``lost``) may have committed the batch or not; applying its ops again is safe,
        because an op whose key was written replays instead of writing twice, and a hold this batch
        resolved answers as resolved (`_resolution_replayed`)."""
        for n, (op, fut) in enumerate(batch):
            try:
                (result,) = await apply_ops_atomically(self._engine, [await self.shards.route(op, slot=slot)])
                if lost:
                    result = await _resolution_replayed(self._engine, op, result) or result
            except (*_DATABASE_ERRORS, InvalidRequest) as exc:
                _settle(fut, error=exc)  # this op's own failure
            except BaseException as exc:
                # Not this op's doing (a bug, a cancellation): answer every op left before raising.
                for _, left in batch[n:]:
                    _settle(left, error=exc)
                raise
            else:
                _settle(fut, result=result)


#: The hold resolutions, each with what `ledger_apply` answers when the hold was already so resolved.
_ALREADY_RESOLVED = {"post_hold": "hold_posted", "void_hold": "hold_voided"}


async def _resolution_replayed(engine: AsyncEngine, op: Mapping[str, Any],
                               result: Mapping[str, Any]) -> dict[str, Any] | None:
    """A post (void) retried after its batch's connection was lost, which finds its hold posted
    (voided): the hold is resolved as this call asked, exactly once, and the lost attempt may well be
    what resolved it; answered as a replay (with the posting transfer), not `HoldNotPending`, which
    would tell the caller that its post did not happen. None for any other result.

    Only after a lost connection: there, whether this call or a concurrent one of the same kind
    resolved the hold cannot be told, and both are told it is done; the money moved once either way.
    A hold resolved the other way (a post finding it voided) is still `HoldNotPending`."""
    if result.get("s") != _ALREADY_RESOLVED.get(op.get("op")):
        return None
    replay = {"s": "replayed", "h": result["h"], "status": result["s"].removeprefix("hold_")}
    if result.get("t") is not None:
        async with engine.connect() as conn:
            postings = (await conn.execute(sql("SELECT ledger_postings_of(:t)"), {"t": result["t"]})).scalar_one()
        replay |= {"t": result["t"], "p": _decode(postings)}
    return replay


def _settle(fut: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if fut.done():
        return
    if isinstance(error, asyncio.CancelledError):
        fut.cancel()
    elif error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class Ledger:
    """The ledger's Python face. Pass ``conn`` to write inside an open transaction."""

    def __init__(self, engine: AsyncEngine, limits: LedgerLimits, *, batcher: TransferBatcher | None = None) -> None:
        self.engine = engine
        self.limits = limits
        self._batcher = batcher
        # The batcher's router when there is one: one cached shard list, loaded and refreshed once.
        self._shards = batcher.shards if batcher is not None else ShardRouter(engine)

    def forget_shards(self) -> None:
        """Reload the shard lists before the next operation: an account was just sharded, and
        spreading its writes need not wait for the router's next refresh."""
        self._shards.forget()

    async def _apply(self, op: dict[str, Any], conn: AsyncConnection | None) -> TransferResult | HoldResult:
        try:
            if conn is not None or self._batcher is None:
                # Ops on their own connections spread over shards; the batcher routes its batches.
                op = await self._shards.route(op, spread=True, conn=conn)
            if conn is not None:
                (result,) = await apply_ops(conn, [op])
            elif self._batcher is not None:
                result = await self._batcher.submit(op)
            else:
                (result,) = await apply_ops_atomically(self.engine, [op])
        except (DBAPIError, asyncpg.PostgresError) as exc:
            raise _error_from_database(exc) from exc
        return _interpret(op, result)

    async def transfer(self, request: TransferRequest, *, conn: AsyncConnection | None = None) -> TransferResult:
        self.limits.check(request)
        result = await self._apply(request.as_op(), conn)
        assert isinstance(result, TransferResult)
        return result

    async def hold(self, request: HoldRequest, *, conn: AsyncConnection | None = None) -> HoldResult:
        self.limits.check(request)
        result = await self._apply(request.as_op(), conn)
        assert isinstance(result, HoldResult)
        return result

    async def post_hold(self, hold_id: int, *, conn: AsyncConnection | None = None) -> HoldResult:
        """Apply a pending hold's legs, exactly once. `HoldNotPending` if the hold is not pending, except
        when a batched post is retried after its connection was lost and finds the hold posted: then
        it answers posted, as a replay (see `_resolution_replayed`)."""
        result = await self._apply({"op": "post_hold", "hold": hold_id}, conn)
        assert isinstance(result, HoldResult)
        return result

    async def void_hold(self, hold_id: int, *, conn: AsyncConnection | None = None) -> HoldResult:
        """Release a pending hold's reservation, exactly once (`HoldNotPending` as for `post_hold`)."""
        result = await self._apply({"op": "void_hold", "hold": hold_id}, conn)
        assert isinstance(result, HoldResult)
        return result

    async def reverse(self, request: ReverseRequest, *, conn: AsyncConnection | None = None) -> TransferResult:
        result = await self._apply(request.as_op(), conn)
        assert isinstance(result, TransferResult)
        return result

    async def consolidate_shards(self, parent_id: int) -> list[TransferResult]:
        """Sweep each shard's balance back into its parent account (one transfer per shard), so the
        parent alone shows the total. A shard that may go negative (provider collection or
        settlement, debited through its shards) and is below zero is swept the other way: the
        parent covers it.

        One transaction, which first locks the parent and its shards: a concurrent sweep of the same
        account waits for it, then reads the balances it left (zero), so no shard's money moves
        twice. A sweep is no payment: `LedgerLimits` does not cap it (a busy account's shard may
        hold more than one payment may move); a leg's own ceiling does, and a shard beyond it is
        swept in part, the rest by the next sweep."""
        results = []
        async with self.engine.begin() as conn:
            # By primary key, from the parent's list of shards (`shard_of` has no index). Locked in
            # id order, the parent first (its shards were opened after it), as `ledger_apply` locks,
            # so a sweep and a payment cannot deadlock; locked rows are read as last committed.
            rows = (await conn.execute(sql(
                "SELECT id, balance, currency FROM accounts "
                "WHERE id = :p OR id IN (SELECT unnest(shards) FROM accounts WHERE id = :p) "
                "ORDER BY id FOR UPDATE"), {"p": parent_id})).all()
            for shard_id, balance, currency in rows:
                if shard_id == parent_id or balance == 0:
                    continue
                amount = max(-ABSOLUTE_MAX_MINOR, min(balance, ABSOLUTE_MAX_MINOR))
                # The parent's leg is exact: routing would send it back to a shard (a credit, or a
                # debit of a parent that may go negative). A shard's own leg is never routed.
                legs = (Leg(shard_id, -amount, Currency(currency)),
                        Leg(parent_id, amount, Currency(currency), exact=True))
                # The key names the shard and its balance: a retry after a crash replays, a later
                # sweep (new balance) is a new transfer.
                key = f"consolidate:{shard_id}:{amount}:{await self._last_posting(conn, shard_id)}"
                # Not `transfer`: no `LedgerLimits` check (see above).
                result = await self._apply(TransferRequest(key, legs, kind="consolidation").as_op(), conn)
                assert isinstance(result, TransferResult)
                results.append(result)
        return results

    @staticmethod
    async def _last_posting(conn: AsyncConnection, account_id: int) -> int:
        return (await conn.execute(sql("SELECT coalesce(max(id), 0) FROM postings WHERE account_id = :a"),
                                   {"a": account_id})).scalar_one()

    async def void_expired_holds(self, *, limit: int = 500) -> int:
        """Void pending holds past their expiry; returns how many this call voided."""
        async with self.engine.connect() as conn:
            ids = (await conn.execute(sql(
                "SELECT id FROM holds WHERE status = 'pending' AND expires_at < now() ORDER BY id LIMIT :n"),
                {"n": limit})).scalars().all()
        voided = 0
        for hold_id in ids:
            try:
                await self.void_hold(hold_id)
                voided += 1
            except HoldNotPending:
                pass  # posted or voided meanwhile by someone else: nothing to do
        return voided
