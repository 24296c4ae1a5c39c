"""The money movements of a payment, as ledger transfers with deterministic idempotency keys.

Each step of a payment's life moves money once, whatever number of times it is attempted (a
duplicate callback, a retried job, a recovery sweep racing a late callback): the key names the
payment and the step, so a second attempt replays the first transfer and moves nothing.

    p2p        pay:<public_id>     payer −(amount+fee), payee +amount, fee revenue +fee
    payout     debit:<public_id>   payer −(amount+fee), provider clearing +(amount+fee)
               settle:<public_id>  clearing −(amount+fee), provider settlement +amount,
                                   fee revenue +fee                               (provider success)
               unwind:<public_id>  clearing −(amount+fee), payer +(amount+fee)    (failure)
    deposit    credit:<public_id>  provider collection −amount, wallet +amount
               (an STK push, a Wave checkout, a C2B payment to our paybill, or an STK push whose
               CheckoutRequestID we never recorded: `payments.stk_orphans`)

Bill payments and till purchases (Daraja B2B) and pochi payments (B2C) are payouts: the same steps.
The fee waits in clearing with the amount and is earned only when the provider paid: fee revenue is
only ever credited by payments, so it can be split into shards (`payments.accounts.shard_account`),
and a failed payout gives the fee back from clearing, never from fee revenue.

A refund is a payment of its own (kind ``refund``, ``refund_of`` the original); its steps use the
refund's public id and depend on what it undoes:

    of a deposit       debit:<refund>     wallet −amount, provider clearing +amount    (before asking)
    (M-Pesa reversal,  return:<refund>    clearing −amount, provider collection +amount  (provider success)
     Wave refund)      unwind:<refund>    clearing −amount, wallet +amount               (failure)
    of a payout        refund:<refund>    provider settlement −amount, fee revenue −fee,
    (the money came                       payer +(amount+fee)                 (the money is back with us)
     back)
    of a p2p payment   reverse:<refund>   payee −amount, fee revenue −fee, payer +(amount+fee)

A fee given back by a refund was earned already: it is taken from whichever of the fee revenue
account and its shards hold it (`fee_give_back_legs`), since the shard a fee landed on may have
been swept into the parent since, or the parent may never have held it.

C2B money whose account reference names no wallet, and money from an unrecorded STK push whose
payer has no wallet, is parked, never refused after the fact:

    c2b                suspense:<TransID> provider collection −amount, M-Pesa suspense +amount
    stk orphan         suspense:<receipt> the same, keyed by the M-Pesa receipt

Sauti's hot accounts (fee revenue, provider collection and settlement: every payment of a kind
touches one) are split into ``hot_account_shards`` shards when first used; `payments.shard_routing`
spreads credits over them, and debits too for the accounts that may go negative. Clearing is
never sharded: it must not go negative and is debited.

IMPORTANT (DESIGN invariant 4): money leaving for a provider sits in the clearing account until the
provider's answer moves it on (settle, return) or back (unwind); nothing else touches clearing.
A payout debited before fees waited in clearing (its fee went to fee revenue at once) is settled
and unwound the way it was debited: the debit transfer's clearing posting says which.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments.accounts import (
    Account,
    AccountKind,
    account_by_code,
    account_code,
    open_account,
    shard_account,
    shard_balances,
)
from payments.errors import InvalidRequest, UnknownAccount
from payments.ledger import Ledger, TransferResult
from payments.money import Currency, Money
from payments.payment_settings import MPESA, PARKED_BY
from payments.payment_store import Payment
from payments.postings import Leg, TransferRequest, payment_legs

log = logging.getLogger(__name__)

#: Sauti's own accounts that every payment of their kind touches, split into shards on first use.
#: Not clearing: it must never go negative and is debited, and a shard of it could not take a
#: debit of money another shard holds.
HOT_KINDS = frozenset({AccountKind.FEE_REVENUE, AccountKind.PROVIDER_COLLECTION, AccountKind.PROVIDER_SETTLEMENT})
#: Sauti's accounts kept per provider and currency (`AccountBook.open_own` opens them all).
OWN_PROVIDER_KINDS = (AccountKind.PROVIDER_CLEARING, AccountKind.PROVIDER_SETTLEMENT,
                      AccountKind.PROVIDER_COLLECTION, AccountKind.SUSPENSE)
#: `provider_refs` mark of a payout whose debit put the fee in clearing with the amount.
FEE_IN_CLEARING = "fee_in_clearing"


@dataclass
class AccountBook:
    """Finds (and opens on first use) the accounts payments move money between.

    Sauti's own accounts (fees, provider clearing, settlement, collection) are looked up once and
    their ids cached; the first use ever opens one in a short transaction of its own, because a cached
    id must never name an account whose creating transaction rolled back (an empty account is
    harmless). The hot ones (`HOT_KINDS`) are split into ``hot_account_shards`` shards then, once
    (1: never); ``on_sharded`` is told, so the ledger's shard routing can use them at once.
    Wallets are found (or opened) in the caller's transaction: their user may be new in it.

    That short transaction needs a second connection while the payment holds one: a burst of first
    payments, each holding a pooled connection and waiting for one more, could leave none for it
    (every payment stalled until the pool's timeout). So `open_own` opens them all when the gateway
    or a worker starts, before any payment; should a payment still meet one unopened, one task opens
    it while the others wait for that one (`_opening`).
    """

    engine: AsyncEngine
    fee_owner: str = "sauti"
    hot_account_shards: int = 1
    on_sharded: Callable[[], None] | None = None
    _ids: dict[tuple[AccountKind, Currency, str], int] = field(default_factory=dict)
    _opening: dict[tuple[AccountKind, Currency, str], asyncio.Lock] = field(default_factory=dict)

    async def open_own(self, providers: Mapping[Currency, str]) -> None:
        """Find, and open and shard on first use ever, Sauti's own accounts in each currency, with
        the provider that pays out and collects it (``providers``): what payments will need, opened
        before any payment runs."""
        async with self.engine.connect() as conn:
            for currency, provider in providers.items():
                await self.fees(conn, currency)
                for kind in OWN_PROVIDER_KINDS:
                    await self.account(conn, kind, currency, provider)

    async def account(self, conn: AsyncConnection, kind: AccountKind, currency: Currency, owner: str) -> int:
        key = (kind, currency, owner)
        if key not in self._ids:
            found = await self._find(conn, kind, currency, owner)
            if found is None or self._wants_shards(found):
                # First use ever (or first since sharding was turned on): open and shard it apart,
                # so the id stays valid whatever the caller's transaction does next; one task at a
                # time, so a burst of first payments takes one more connection, not one each.
                async with self._opening.setdefault(key, asyncio.Lock()):
                    if key in self._ids:
                        return self._ids[key]
                    found = await self._prepare(kind, currency, owner)
            self._ids[key] = found.id
        return self._ids[key]

    @staticmethod
    async def _find(conn: AsyncConnection, kind: AccountKind, currency: Currency, owner: str) -> Account | None:
        try:
            return await account_by_code(conn, account_code(kind, currency, owner))
        except UnknownAccount:
            return None

    def _wants_shards(self, account: Account) -> bool:
        return self.hot_account_shards > 1 and account.kind in HOT_KINDS and not account.shards

    async def _prepare(self, kind: AccountKind, currency: Currency, owner: str) -> Account:
        async with self.engine.begin() as own:
            account = await open_account(own, kind, currency, owner)
            if not self._wants_shards(account):
                return account
            try:
                account = await shard_account(own, account.id, self.hot_account_shards)
            except InvalidRequest as exc:
                # Sharded meanwhile by a process configured with another count: keep its shards.
                log.warning("account %s keeps the shards it has (%s)", account.code, exc)
                return account
        log.info("hot account %s split into %d shards", account.code, len(account.shards))
        if self.on_sharded is not None:
            self.on_sharded()
        return account

    async def wallet(self, conn: AsyncConnection, user_id: int, currency: Currency) -> int:
        """The user's wallet in ``currency``: found with one SELECT; opened (in the caller's
        transaction) only when it does not exist yet."""
        return (await self.wallets(conn, (user_id,), currency))[user_id]

    async def wallets(self, conn: AsyncConnection, user_ids: tuple[int, ...], currency: Currency) -> dict[int, int]:
        """Each user's wallet id in ``currency``, all found with one SELECT; the missing ones opened
        in the caller's transaction."""
        codes = {account_code(AccountKind.CUSTOMER_WALLET, currency, user_id): user_id for user_id in user_ids}
        rows = await conn.execute(sql("SELECT code, id FROM accounts WHERE code = ANY(:codes)"),
                                  {"codes": list(codes)})
        found = {codes[row.code]: row.id for row in rows}
        for user_id in user_ids:
            if user_id not in found:
                found[user_id] = (await open_account(conn, AccountKind.CUSTOMER_WALLET, currency, user_id)).id
        return found

    async def fees(self, conn: AsyncConnection, currency: Currency) -> int:
        return await self.account(conn, AccountKind.FEE_REVENUE, currency, self.fee_owner)

    async def clearing(self, conn: AsyncConnection, provider: str, currency: Currency) -> int:
        return await self.account(conn, AccountKind.PROVIDER_CLEARING, currency, provider)

    async def settlement(self, conn: AsyncConnection, provider: str, currency: Currency) -> int:
        return await self.account(conn, AccountKind.PROVIDER_SETTLEMENT, currency, provider)

    async def collection(self, conn: AsyncConnection, provider: str, currency: Currency) -> int:
        return await self.account(conn, AccountKind.PROVIDER_COLLECTION, currency, provider)

    async def suspense(self, conn: AsyncConnection, provider: str, currency: Currency) -> int:
        """Unexplained money that came in through ``provider``, parked for an operator."""
        return await self.account(conn, AccountKind.SUSPENSE, currency, provider)

    async def fee_give_back_legs(self, conn: AsyncConnection, fee: Money) -> tuple[Leg, ...]:
        """Debit legs that take an earned ``fee`` back out of fee revenue: from whichever of the
        parent and its shards hold it, largest first, each leg exact (never re-routed). Fee revenue
        always holds every fee not given back, so the legs cover it; should a sweep move a balance
        meanwhile, the ledger refuses the transfer (`InsufficientFunds`) and nothing moves."""
        parent = await self.fees(conn, fee.currency)
        legs, left = [], fee.minor
        for account_id, held in await shard_balances(conn, parent):
            take = min(held, left)
            if take > 0:
                legs.append(Leg(account_id, -take, fee.currency, exact=True))
                left -= take
            if not left:
                break
        if left:
            legs.append(Leg(parent, -left, fee.currency, exact=True))  # short: the ledger says so
        return tuple(legs)


@dataclass(frozen=True)
class Settlement:
    """The transfers of `settlement`'s table, written in the caller's transaction."""

    ledger: Ledger
    accounts: AccountBook

    async def pay_wallet(self, conn: AsyncConnection, payment: Payment, payee_user_id: int) -> TransferResult:
        cur = payment.amount.currency
        wallets = await self.accounts.wallets(conn, (payment.payer_user_id, payee_user_id), cur)
        legs = payment_legs(wallets[payment.payer_user_id], wallets[payee_user_id], payment.amount, fee=payment.fee,
                            fee_account=await self.accounts.fees(conn, cur))
        return await self._transfer(conn, f"pay:{payment.public_id}", legs, payment)

    async def debit_for_payout(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        """Amount and fee leave the wallet for clearing, where they wait for the provider."""
        cur, provider = payment.amount.currency, _provider(payment)
        legs = payment_legs(await self.accounts.wallet(conn, payment.payer_user_id, cur),
                            await self.accounts.clearing(conn, provider, cur), payment.total)
        return await self._transfer(conn, f"debit:{payment.public_id}", legs, payment)

    async def settle_payout(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        """The provider paid: the amount goes on to its settlement account and the fee is earned,
        both out of clearing in one transfer."""
        cur, provider = payment.amount.currency, _provider(payment)
        clearing = await self.accounts.clearing(conn, provider, cur)
        held = payment.total if await self._fee_in_clearing(conn, payment, clearing) else payment.amount
        legs = [Leg(clearing, -held.minor, cur),
                Leg(await self.accounts.settlement(conn, provider, cur), payment.amount.minor, cur)]
        if held != payment.amount:
            legs.append(Leg(await self.accounts.fees(conn, cur), payment.fee.minor, cur))
        return await self._transfer(conn, f"settle:{payment.public_id}", tuple(legs), payment)

    async def unwind_payout(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        """Give the payer back the amount and the fee, from clearing: the payment did not happen."""
        cur, provider = payment.amount.currency, _provider(payment)
        clearing = await self.accounts.clearing(conn, provider, cur)
        legs: list[Leg] = []
        if await self._fee_in_clearing(conn, payment, clearing):
            legs.append(Leg(clearing, -payment.total.minor, cur))
        else:
            # Debited before fees waited in clearing: its fee was earned at once; take it back.
            legs.append(Leg(clearing, -payment.amount.minor, cur))
            legs.extend(await self.accounts.fee_give_back_legs(conn, payment.fee))
        legs.append(Leg(await self.accounts.wallet(conn, payment.payer_user_id, cur), payment.total.minor, cur))
        return await self._transfer(conn, f"unwind:{payment.public_id}", tuple(legs), payment)

    async def _fee_in_clearing(self, conn: AsyncConnection, payment: Payment, clearing: int) -> bool:
        """Whether the payout's debit put its fee in clearing with the amount: every debit does now
        (and says so in the payment's references); one written before did not, and must be settled
        or unwound as it was debited, which its clearing posting tells."""
        if not payment.fee.minor or payment.debit_transfer_id is None or payment.provider_refs.get(FEE_IN_CLEARING):
            return True
        held = (await conn.execute(sql(
            "SELECT sum(amount) FROM postings WHERE transfer_id = :t AND account_id = :a"),
            {"t": payment.debit_transfer_id, "a": clearing})).scalar_one_or_none()
        return held is None or int(held) == payment.total.minor

    async def credit_deposit(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        """A deposit's money into the wallet: from provider collection; for money parked in suspense
        (`payments.suspense`), from suspense, under the key every release of that receipt shares."""
        cur, provider = payment.amount.currency, _provider(payment)
        wallet = await self.accounts.wallet(conn, payment.payer_user_id, cur)
        if PARKED_BY in payment.provider_refs:
            legs = payment_legs(await self.accounts.suspense(conn, provider, cur), wallet, payment.amount)
            request = TransferRequest(f"release:{payment.provider_ref}", legs, kind="deposit.release",
                                      reference=payment.public_id)
            return await self.ledger.transfer(request, conn=conn)
        legs = payment_legs(await self.accounts.collection(conn, provider, cur), wallet, payment.amount)
        return await self._transfer(conn, f"credit:{payment.public_id}", legs, payment)

    async def return_deposit(self, conn: AsyncConnection, refund: Payment) -> TransferResult:
        """A deposit's money went back to the payer's M-Pesa / Wave (reversal, refund): out of clearing,
        back into the provider collection account it came from."""
        cur, provider = refund.amount.currency, _provider(refund)
        legs = (Leg(await self.accounts.clearing(conn, provider, cur), -refund.amount.minor, cur),
                Leg(await self.accounts.collection(conn, provider, cur), refund.amount.minor, cur))
        return await self._transfer(conn, f"return:{refund.public_id}", legs, refund)

    async def credit_returned_payout(self, conn: AsyncConnection, refund: Payment, original: Payment) -> TransferResult:
        """A payout's money came back to our provider account (reversed): the payer gets back what
        the payout cost them, the fee included, as if it never happened (what `unwind_payout` does
        for a payout that failed)."""
        cur, provider = refund.amount.currency, _provider(refund)
        legs = [Leg(await self.accounts.settlement(conn, provider, cur), -original.amount.minor, cur)]
        if original.fee.minor:
            legs.extend(await self.accounts.fee_give_back_legs(conn, original.fee))
        legs.append(Leg(await self.accounts.wallet(conn, original.payer_user_id, cur), original.total.minor, cur))
        return await self._transfer(conn, f"refund:{refund.public_id}", tuple(legs), refund)

    async def reverse_wallet_payment(self, conn: AsyncConnection, refund: Payment, original: Payment) -> TransferResult:
        """Undo a wallet-to-wallet payment: the payee gives the amount back and the fee comes back
        out of fee revenue (not the mirror image of the original transfer: the fee shard it credited
        may have been swept since). Raises `InsufficientFunds` when the payee no longer holds the
        amount."""
        if original.settle_transfer_id is None or original.recipient_user_id is None:
            raise ValueError(f"payment {original.public_id} moved no money between wallets")
        cur = original.amount.currency
        wallets = await self.accounts.wallets(conn, (original.recipient_user_id, original.payer_user_id), cur)
        legs = [Leg(wallets[original.recipient_user_id], -original.amount.minor, cur)]
        if original.fee.minor:
            legs.extend(await self.accounts.fee_give_back_legs(conn, original.fee))
        legs.append(Leg(wallets[original.payer_user_id], original.total.minor, cur))
        request = TransferRequest(f"reverse:{refund.public_id}", tuple(legs), kind=f"{refund.kind}.reverse",
                                  reference=refund.public_id, metadata={"undoes": original.settle_transfer_id})
        return await self.ledger.transfer(request, conn=conn)

    async def park_in_suspense(self, conn: AsyncConnection, trans_id: str, amount: Money, *,
                               kind: str = "c2b.suspense", seen: Mapping[str, str] | None = None) -> TransferResult:
        """Money for no wallet of ours (a C2B payment, an unrecorded STK push): from provider
        collection into suspense, once per M-Pesa transaction id, until an operator finds whose it is
        (`payments.suspense`). ``seen``: what M-Pesa told of it (``account`` typed, ``payer``,
        ``payer_name``), kept with the transfer for that person."""
        cur = amount.currency
        legs = payment_legs(await self.accounts.collection(conn, MPESA, cur),
                            await self.accounts.suspense(conn, MPESA, cur), amount)
        metadata = {name: value[:60] for name, value in (seen or {}).items() if value}
        request = TransferRequest(f"suspense:{trans_id}", legs, kind=kind, reference=trans_id, metadata=metadata)
        parked = await self.ledger.transfer(request, conn=conn)
        if not parked.replayed:
            # IMPORTANT: waiting for a person from this transaction on; a release takes it out in its
            # own. Never for a replay: that money was parked (and may have been released) before.
            await wait_in_suspense(conn, trans_id, parked.transfer_id)
        return parked

    async def _transfer(self, conn: AsyncConnection, key: str, legs: tuple[Leg, ...],
                        payment: Payment) -> TransferResult:
        step = key.split(":", 1)[0]
        request = TransferRequest(key, legs, kind=f"{payment.kind}.{step}", reference=payment.public_id)
        return await self.ledger.transfer(request, conn=conn)


async def wait_in_suspense(conn: AsyncConnection, receipt: str, parking_transfer_id: int) -> None:
    """The money parked under ``receipt`` waits for a person (again: a credit M-Pesa did not confirm)."""
    await conn.execute(sql("INSERT INTO suspense_waiting (receipt, transfer_id) VALUES (:r, :t) "
                           "ON CONFLICT DO NOTHING"), {"r": receipt, "t": parking_transfer_id})


async def lock_receipt(conn: AsyncConnection, receipt: str) -> None:
    """Hold, until the transaction ends, the right to decide where an M-Pesa receipt's money goes:
    every path that books a receipt (a C2B confirmation, a booking by hand, an STK push's or an
    unrecorded push's callback) checks the others' bookings under it (`parked_receipt`, the
    payments' provider reference), so no two book one receipt."""
    await conn.execute(sql("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"mpesa-receipt:{receipt}"})


async def parked_receipt(conn: AsyncConnection, receipt: str) -> bool:
    """Whether money was parked in suspense under this M-Pesa receipt (released since or not): that
    receipt is booked, and no other payment may book it."""
    return bool(await conn.scalar(sql("SELECT 1 FROM transfers WHERE idempotency_key = :k"),
                                  {"k": f"suspense:{receipt}"}))


def _provider(payment: Payment) -> str:
    if payment.provider is None:
        raise ValueError(f"payment {payment.public_id} has no provider")
    return payment.provider
