"""Hot-account shard routing: a credit to a sharded account goes to one of its shards, and so does
a debit of one that may go negative.

Every paid transfer credits the same fee-revenue account, every deposit debits the same provider
collection account and every payout credits the same provider settlement account; as one row each
would serialise all writers. `payments.accounts.shard_account` splits such an account into shards,
and this router rewrites each leg on it to a shard before the op reaches the database. Credits may
land on any shard. Debits may only where a shard can go negative (collection, settlement, suspense:
the accounts that mirror the outside world); the debits of any other sharded account (fee revenue,
given back by a refund) name their shards themselves, as exact legs. Which shard: one fixed per
router for each of a batcher's pipelines (its batches follow each other, so they need no spreading,
and one shard row per batch is the cheapest), the next in turn for ops that run on their own
connections at once: such an op holds its shard's lock until its transaction commits, and taking
them in turn keeps concurrent ops on different shards where random picks would often collide.

Why here and not in SQL: rewriting each batch's JSON inside `ledger_apply` cost as much as checking
its balances. A shard list never changes once set, so a cached copy is safe; an account sharded
after the copy was taken is used whole until the next refresh (every ``refresh_s``, or at once after
`forget`), which is correct, only hotter. A leg marked exact (``"x"``: consolidation, a fee given
back) is left alone.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_SHARDED = text("SELECT id, shards, may_go_negative FROM accounts WHERE shards IS NOT NULL")


@dataclass(frozen=True, slots=True)
class _Sharded:
    """A sharded account as the router needs it: its shards, and whether they may take debits
    (they may go negative)."""

    shards: tuple[int, ...]
    takes_debits: bool


class ShardRouter:
    def __init__(self, engine: AsyncEngine, *, refresh_s: float = 30.0) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._shards: Mapping[int, _Sharded] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._slot = random.randrange(1 << 30)
        # Each process starts at its own place, so that routers in several processes spread too.
        self._turn = itertools.count(random.randrange(1 << 30))

    def forget(self) -> None:
        """Reload the shard lists before the next op (an account was just sharded)."""
        self._loaded_at = float("-inf")

    async def _current(self, conn: AsyncConnection | None) -> Mapping[int, _Sharded]:
        if self.fresh:
            return self._shards
        async with self._lock:
            if not self.fresh:
                # On the caller's connection when it has one: a second one could wait on a full pool.
                if conn is not None:
                    rows = (await conn.execute(_SHARDED)).all()
                else:
                    async with self._engine.connect() as own:
                        rows = (await own.execute(_SHARDED)).all()
                self._shards = {row.id: _Sharded(tuple(row.shards), row.may_go_negative) for row in rows}
                self._loaded_at = time.monotonic()
        return self._shards

    @property
    def fresh(self) -> bool:
        """Whether `route_cached` may route with the list in hand (it is not due for a refresh)."""
        return time.monotonic() - self._loaded_at < self._refresh_s

    async def refresh_if_due(self) -> None:
        """Load the shard lists if they are due, on a connection of the router's own."""
        await self._current(None)

    async def route(self, op: dict[str, Any], *, spread: bool = False, slot: int = 0,
                    conn: AsyncConnection | None = None) -> dict[str, Any]:
        """``op`` with its legs on sharded accounts moved to a shard (the op itself if none): every
        credit, and the debits of accounts that may go negative; the next in turn when ``spread``,
        else the one for ``slot`` (a batcher's pipeline)."""
        if not op.get("legs"):
            return op
        await self._current(conn)
        return self.route_cached(op, spread=spread, slot=slot)

    def route_cached(self, op: dict[str, Any], *, spread: bool = False, slot: int = 0) -> dict[str, Any]:
        """`route` with the shard lists in hand, whatever their age (see `fresh`): for a batcher,
        which holds a connection while it routes and must not wait for a second one."""
        legs = op.get("legs")
        shards = self._shards
        if not legs or not shards:
            return op
        routed = None
        for n, leg in enumerate(legs):
            sharded = shards.get(leg["a"])
            if sharded is not None and "x" not in leg and (leg["m"] > 0 or sharded.takes_debits):
                targets = sharded.shards
                index = (next(self._turn) if spread else self._slot + slot) % len(targets)
                if routed is None:
                    routed = list(legs)
                routed[n] = {**leg, "a": targets[index]}
        return op if routed is None else {**op, "legs": routed}


def independent(ops: list[Mapping[str, Any]]) -> bool:
    """True when a batch can be checked set-wise without looking at the accounts first: all plain
    transfers, distinct keys, and no account that one op takes money from is touched by another op
    (whose balance check would otherwise depend on the order). Only a hint: if it were wrong, the
    database's non-negative CHECK would fail the batch and its ops would be retried one by one."""
    if len(ops) < 2:
        return False
    keys: set[str] = set()
    touched: dict[int, int] = {}
    debited: set[int] = set()
    for op in ops:
        if op.get("op") != "transfer" or op["key"] in keys:
            return False
        keys.add(op["key"])
        net: dict[int, int] = {}
        for leg in op["legs"]:
            net[leg["a"]] = net.get(leg["a"], 0) + leg["m"]
        for account, amount in net.items():
            touched[account] = touched.get(account, 0) + 1
            if amount < 0:
                debited.add(account)
    return all(touched[a] == 1 for a in debited)
