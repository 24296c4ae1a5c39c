"""Operator reads benchmark: how long a payment's whole record (`payments.payment_records.payment_record`,
what ``GET /v1/ops/payments/{id}`` and the dashboard's payment page read), a number's payments
(`search_payments` by phone), the suspense page (`payments.suspense`: the newest money parked for
no wallet, and how much waits) and reconciliation's read of an hour's M-Pesa payments
(`payments.reconcile.our_payments`: those made in the hour and those its statement names) take as the
tables grow, beside the cheapest read there is, one payment by its public id
(`payment_store.get_payment`), measured in the same run on the same database.

For each size, the tables first get that many payments' worth of history in bulk, one a second
(payments, a third of them M-Pesa payouts with a receipt, with
their transitions, a ledger transfer each with two postings, two SMS jobs each, a provider callback
for every fourth, an audit line for every hundredth, and money parked in suspense for every
thousandth, half of it released since), then real p2p payments are made through `Payments.handle`
between funded users, and those are read back, one at a time, ``--samples`` times each way. If a
read scanned a table rather than following its indexes, its time would grow with the size while the
anchor's stays put: the ratio says.

    python -m bench.ops [--sizes 20000,1000000] [--samples 400] [--real 200]

Uses $DATABASE_URL's server when set, else the embedded PostgreSQL under var/bench-pg; creates (and
drops) its own database there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.ledger import ROOT, admin
from bench.local_servers import log
from db.embedded import start_embedded
from db.engine import async_url, create_engine
from db.migrate import upgrade
from payments import payment_store as store
from payments import suspense
from payments.accounts import AccountKind, open_account
from payments.commands import Channel, SendToWallet
from payments.identities import register_user
from payments.ledger import Ledger, LedgerLimits
from payments.money import Currency, Money
from payments.orchestrator import Payments
from payments.payment_records import PaymentFilter, payment_record, search_payments
from payments.postings import TransferRequest, payment_legs
from payments.reconcile import our_payments

KES = Currency.KES

# One statement per table, each row derived from generate_series: payment i is pay_<26 chars of i>.
_HISTORY = [
    """INSERT INTO users (phone, display_name)
       SELECT '+2547' || lpad(g::text, 8, '0'), 'History ' || g
         FROM generate_series(CAST(:u0 AS bigint), CAST(:u1 AS bigint)) g""",
    """INSERT INTO payments (public_id, payer_user_id, idempotency_key, request_hash, kind, channel, amount, fee,
                             currency, recipient_phone, status, provider, provider_refs, created_at, updated_at,
                             finished_at)
       SELECT 'pay_h' || lpad(g::text, 25, '0'),
              (SELECT id FROM users WHERE phone = '+2547' || lpad((1 + g % :users)::text, 8, '0')),
              'history-' || g, 'h', CASE WHEN g % 3 = 0 THEN 'withdraw' ELSE 'p2p' END, 'ussd', 100 + g % 5000, 2,
              'KES', '+2547' || lpad((1 + (g * 7919) % :users)::text, 8, '0'), 'succeeded',
              CASE WHEN g % 3 = 0 THEN 'mpesa' END,
              CASE WHEN g % 3 = 0 THEN jsonb_build_object('receipt', 'HIST' || g) ELSE '{}' END,
              CAST(:t0 AS timestamptz) - make_interval(secs => g), now(), now()
         FROM generate_series(CAST(:p0 AS bigint), CAST(:p1 AS bigint)) g""",
    """INSERT INTO payment_events (payment_id, from_status, to_status, cause)
       SELECT id, s.f, s.t, 'history' FROM payments p
              CROSS JOIN (VALUES (NULL, 'created'), ('created', 'succeeded')) AS s(f, t)
        WHERE p.idempotency_key LIKE 'history-%' AND p.id > :last_id""",
    """INSERT INTO transfers (idempotency_key, request_hash, kind, reference)
       SELECT 'pay:' || public_id, 'h', 'p2p.pay', public_id FROM payments
        WHERE idempotency_key LIKE 'history-%' AND id > :last_id""",
    """INSERT INTO postings (transfer_id, account_id, amount, currency, balance_after)
       SELECT t.id, 1, s.sign * 100, 'KES', 0 FROM transfers t CROSS JOIN (VALUES (-1), (1)) AS s(sign)
        WHERE t.request_hash = 'h' AND t.id > :last_transfer""",
    """INSERT INTO outbox_jobs (kind, payload, status, attempts, finished_at)
       SELECT 'sms.receipt', jsonb_build_object('payment', public_id, 'to', s.side), 'done', 1, now()
         FROM payments CROSS JOIN (VALUES ('payer'), ('payee')) AS s(side)
        WHERE idempotency_key LIKE 'history-%' AND id > :last_id""",
    """INSERT INTO provider_events (provider, event_key, kind, payment_id)
       SELECT 'mpesa', public_id, 'b2c_result', id FROM payments
        WHERE idempotency_key LIKE 'history-%' AND id > :last_id AND id % 4 = 0""",
    # Every thousandth a paybill payment for no wallet, parked in suspense; half of those released since.
    """INSERT INTO transfers (idempotency_key, request_hash, kind, reference)
       SELECT s.prefix || 'HIST' || g, 'hs', s.kind, 'HIST' || g
         FROM generate_series(CAST(:p0 AS bigint), CAST(:p1 AS bigint)) g
              CROSS JOIN (VALUES ('suspense:', 'c2b.suspense', 1000), ('release:', 'suspense.return', 2000))
                         AS s(prefix, kind, every)
        WHERE g % s.every = 0""",
    """INSERT INTO postings (transfer_id, account_id, amount, currency, balance_after)
       SELECT t.id, 1, s.sign * 100, 'KES', 0 FROM transfers t CROSS JOIN (VALUES (-1), (1)) AS s(sign)
        WHERE t.request_hash = 'hs' AND t.id > :last_transfer""",
    """INSERT INTO suspense_waiting (receipt, transfer_id, parked_at)
       SELECT t.reference, t.id, t.created_at FROM transfers t
        WHERE t.request_hash = 'hs' AND t.id > :last_transfer AND t.idempotency_key LIKE 'suspense:%'
          AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.idempotency_key = 'release:' || t.reference)""",
    """INSERT INTO audit_log (actor, action, subject)
       SELECT 'history', 'refund', public_id FROM payments
        WHERE idempotency_key LIKE 'history-%' AND id > :last_id AND id % 100 = 0""",
]


async def add_history(engine, done: int, upto: int, t0: datetime) -> None:
    """Grow the history from ``done`` payments to ``upto``, backwards in time: payment ``g`` was
    made ``g`` seconds before ``t0``, so the hours just before ``t0`` hold the same payments at
    every size."""
    users = max(upto // 20, 10)
    async with engine.begin() as conn:
        last_id = await conn.scalar(text("SELECT coalesce(max(id), 0) FROM payments"))
        last_transfer = await conn.scalar(text("SELECT coalesce(max(id), 0) FROM transfers"))
        have_users = await conn.scalar(text("SELECT count(*) FROM users WHERE display_name LIKE 'History %'"))
        params = {"u0": have_users + 1, "u1": users, "users": users, "p0": done + 1, "p1": upto, "t0": t0,
                  "last_id": last_id, "last_transfer": last_transfer}
        for statement in _HISTORY:
            await conn.execute(text(statement), params)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


async def real_payments(engine, ledger: Ledger, count: int, tag: str) -> list[str]:
    """``count`` p2p payments through the orchestrator between funded users; their public ids."""
    payments = Payments(engine, ledger)
    users = []
    async with engine.begin() as conn:
        source = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, KES, "mpesa")).id
        for i in range(20):
            user = await register_user(conn, f"+25479{tag}{i:05d}", display_name=f"Real {i}", kyc_tier=3)
            wallet = (await open_account(conn, AccountKind.CUSTOMER_WALLET, KES, user.id)).id
            await ledger.transfer(TransferRequest(f"bench-ops-fund-{user.id}", payment_legs(
                source, wallet, Money.of(500_000, KES)), kind="deposit"), conn=conn)
            users.append(user)
    made = []
    for i in range(count):
        payer, payee = users[i % 20], users[(i * 7 + 1) % 20]
        if payer is payee:
            payee = users[(i + 1) % 20]
        paid = await payments.handle(SendToWallet(f"bench-ops-{tag}-{i}", payer.id, Money.of(50 + i, KES),
                                                  Channel.USSD, recipient_phone=payee.phone))
        made.append(paid.public_id)
    return made


async def timed(samples: int, read: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(samples):
        start = time.perf_counter()
        await read(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(conn, ids: list[str], samples: int, rng: random.Random, t0: datetime) -> tuple[float, ...]:
    """Medians and p99s (ms): by id (the anchor, measured before and after the others), the record,
    the payer's number's payments, the suspense page (its 50 newest waiting and their count), and
    reconciliation's read of the M-Pesa payments of an hour (the second before ``t0``: made in it,
    or named by its statement's receipts)."""
    found = {public_id: await store.get_payment(conn, public_id) for public_id in ids}
    phones = [(await conn.execute(text("SELECT phone FROM users WHERE id = :u"),
                                  {"u": found[i].payer_user_id})).scalar() for i in ids]
    picks = [rng.randrange(len(ids)) for _ in range(samples)]
    for i in range(min(samples, 50)):  # warm-up: each statement prepared on this connection, pages cached
        await payment_record(conn, found[ids[picks[i]]])
        await search_payments(conn, PaymentFilter(phone=phones[picks[i]]), limit=50)
    anchor = await timed(samples, lambda i: store.get_payment(conn, ids[picks[i]]))
    record = await timed(samples, lambda i: payment_record(conn, found[ids[picks[i]]]))
    search = await timed(samples, lambda i: search_payments(conn, PaymentFilter(phone=phones[picks[i]]), limit=50))

    async def suspense_page(i: int) -> None:
        await suspense.parked_money(conn, open_only=True, limit=50)
        await suspense.open_total(conn)

    await timed(min(samples, 50), suspense_page)  # warm-up
    parked = await timed(samples, suspense_page)

    end = t0 - timedelta(hours=1)
    start = end - timedelta(hours=1)
    receipts = list((await conn.execute(text(
        "SELECT provider_refs ->> 'receipt' FROM payments WHERE provider = 'mpesa' AND created_at >= :s "
        "AND created_at < :e"), {"s": start, "e": end})).scalars())

    async def hour(i: int) -> None:
        assert len(await our_payments(conn, "mpesa", start, end, receipts)) == len(receipts)

    hours = max(samples // 10, 5)  # each reads a thousand and more payments
    await timed(3, hour)  # warm-up
    reconciled = await timed(hours, hour)
    anchor += await timed(samples, lambda i: store.get_payment(conn, ids[picks[i]]))
    return (statistics.median(anchor), statistics.median(record), p(record, 0.99), statistics.median(search),
            p(search, 0.99), statistics.median(parked), p(parked, 0.99), statistics.median(reconciled),
            p(reconciled, 0.99), len(receipts))


async def main(args: argparse.Namespace) -> None:
    server = os.environ.get("DATABASE_URL")
    server_url = async_url(server) if server else start_embedded(ROOT / "var" / "bench-pg", "postgres")
    name = f"sauti_bench_ops_{uuid.uuid4().hex[:8]}"
    await admin(server_url, f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=4)
    rows = []
    t0 = datetime.now(UTC)  # the history ends here, going back a payment a second
    try:
        await upgrade(engine)
        ledger = Ledger(engine, LedgerLimits.from_major(999_999))
        done = 0
        for size in args.sizes:
            log(f"history: {done:,} -> {size:,} payments (bulk)…")
            started = time.perf_counter()
            await add_history(engine, done, size, t0)
            done = size
            log(f"  {time.perf_counter() - started:.0f} s; {args.real} real payments…")
            ids = await real_payments(engine, ledger, args.real, tag=f"{len(rows):02d}")
            async with engine.connect() as conn:
                rows.append((size, *await measure(conn, ids, args.samples, random.Random(size), t0)))
            log(f"  by id {rows[-1][1]:.3f} ms, record {rows[-1][2]:.3f} ms, phone search {rows[-1][4]:.3f} ms, "
                f"suspense page {rows[-1][6]:.3f} ms, reconciling an hour {rows[-1][8]:.1f} ms (medians)")
    finally:
        await engine.dispose()
        await admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\nOperator reads, {args.samples} of each per size, one at a time (ms; ratio: median over the anchor's):")
    print(f"{'payments':>10}  {'by id (anchor)':>14}  {'record p50':>10}  {'p99':>7}  {'ratio':>6}  "
          f"{'phone search p50':>16}  {'p99':>7}  {'ratio':>6}  {'suspense page p50':>17}  {'p99':>7}  {'ratio':>6}  "
          f"{'reconcile an hour p50':>21}  {'p99':>7}  {'ratio':>6}  {'receipts':>8}")
    for size, one, rec50, rec99, s50, s99, park50, park99, hour50, hour99, receipts in rows:
        print(f"{size:>10,}  {one:>14.3f}  {rec50:>10.3f}  {rec99:>7.3f}  {rec50 / one:>6.1f}  "
              f"{s50:>16.3f}  {s99:>7.3f}  {s50 / one:>6.1f}  {park50:>17.3f}  {park99:>7.3f}  {park50 / one:>6.1f}  "
              f"{hour50:>21.2f}  {hour99:>7.2f}  {hour50 / one:>6.0f}  {receipts:>8,}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[20_000, 1_000_000],
                        help="payments of history before each measurement (growing)")
    parser.add_argument("--samples", type=int, default=400, help="reads of each kind per size")
    parser.add_argument("--real", type=int, default=200, help="real payments made (and read) per size")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
