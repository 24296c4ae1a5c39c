"""The money movements of a payment, as ledger transfers with deterministic idempotency keys.

Each step of a payment's life moves money once, whatever number of times it is attempted (a
duplicate callback, a retried job, a recovery sweep racing a late callback): the key names the
payment and the step, so a second attempt replays the first transfer and moves nothing.

    p2p        pay:<public_id>     payer −(amount+fee), payee +amount, fee revenue +fee
    payout     debit:<public_id>   payer −(amount+fee), provider clearing +amount, fee revenue +fee
               settle:<public_id>  clearing −amount, provider settlement +amount      (provider success)
               unwind:<public_id>  clearing −amount, fee revenue −fee, payer +(amount+fee)  (failure)
    deposit    credit:<public_id>  provider collection −amount, wallet +amount
               (an STK push, a Wave checkout, or a C2B payment to our paybill)

Bill payments and till purchases (Daraja B2B) and pochi payments (B2C) are payouts: the same steps.

A refund is a payment of its own (kind ``refund``, ``refund_of`` the original); its steps use the
refund's public id and depend on what it undoes:

    of a deposit       debit:<refund>     wallet −amount, provider clearing +amount    (before asking)
    (M-Pesa reversal,  return:<refund>    clearing −amount, provider collection +amount  (provider success)
     Wave refund)      unwind:<refund>    clearing −amount, wallet +amount               (failure)
    of a payout        refund:<refund>    provider settlement −amount, fee revenue −fee,
    (the money came                       payer +(amount+fee)                 (the money is back with us)
     back)
    of a p2p payment   reverse:<refund>   the opposite legs of pay:<original>  (`Ledger.reverse`)

C2B money whose account reference names no wallet is parked, never refused after the fact:

    c2b                suspense:<TransID> provider collection −amount, M-Pesa suspense +amount

IMPORTANT (DESIGN invariant 4): money leaving for a provider sits in the clearing account until the
provider's answer moves it on (settle, return) or back (unwind); nothing else touches clearing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payments.accounts import AccountKind, account_by_code, account_code, open_account
from payments.errors import UnknownAccount
from payments.ledger import Ledger, TransferResult
from payments.money import Currency, Money
from payments.payment_settings import MPESA
from payments.payment_store import Payment
from payments.postings import Leg, ReverseRequest, TransferRequest, payment_legs


@dataclass
class AccountBook:
    """Finds (and opens on first use) the accounts payments move money between.

    Sauti's own accounts (fees, provider clearing, settlement, collection) are looked up once and
    their ids cached; the first use ever opens one in a short transaction of its own, because a cached
    id must never name an account whose creating transaction rolled back (an empty account is
    harmless). Wallets are opened (or found) in the caller's transaction: their user may be new in it.
    """

    engine: AsyncEngine
    fee_owner: str = "sauti"
    _ids: dict[tuple[AccountKind, Currency, str], int] = field(default_factory=dict)

    async def account(self, conn: AsyncConnection, kind: AccountKind, currency: Currency, owner: str) -> int:
        key = (kind, currency, owner)
        if key not in self._ids:
            try:
                self._ids[key] = (await account_by_code(conn, account_code(kind, currency, owner))).id
            except UnknownAccount:
                # First use ever: open it apart, so the id stays valid whatever the caller's
                # transaction does next.
                async with self.engine.begin() as own:
                    self._ids[key] = (await open_account(own, kind, currency, owner)).id
        return self._ids[key]

    async def wallet(self, conn: AsyncConnection, user_id: int, currency: Currency) -> int:
        return (await open_account(conn, AccountKind.CUSTOMER_WALLET, currency, user_id)).id

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


@dataclass(frozen=True)
class Settlement:
    """The transfers of `settlement`'s table, written in the caller's transaction."""

    ledger: Ledger
    accounts: AccountBook

    async def pay_wallet(self, conn: AsyncConnection, payment: Payment, payee_user_id: int) -> TransferResult:
        cur = payment.amount.currency
        legs = payment_legs(await self.accounts.wallet(conn, payment.payer_user_id, cur),
                            await self.accounts.wallet(conn, payee_user_id, cur), payment.amount,
                            fee=payment.fee, fee_account=await self.accounts.fees(conn, cur))
        return await self._transfer(conn, f"pay:{payment.public_id}", legs, payment)

    async def debit_for_payout(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        cur, provider = payment.amount.currency, _provider(payment)
        legs = payment_legs(await self.accounts.wallet(conn, payment.payer_user_id, cur),
                            await self.accounts.clearing(conn, provider, cur), payment.amount,
                            fee=payment.fee, fee_account=await self.accounts.fees(conn, cur))
        return await self._transfer(conn, f"debit:{payment.public_id}", legs, payment)

    async def settle_payout(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        cur, provider = payment.amount.currency, _provider(payment)
        legs = (Leg(await self.accounts.clearing(conn, provider, cur), -payment.amount.minor, cur),
                Leg(await self.accounts.settlement(conn, provider, cur), payment.amount.minor, cur))
        return await self._transfer(conn, f"settle:{payment.public_id}", legs, payment)

    async def unwind_payout(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        """Give the payer back the amount and the fee: the payment did not happen."""
        cur, provider = payment.amount.currency, _provider(payment)
        legs = [Leg(await self.accounts.clearing(conn, provider, cur), -payment.amount.minor, cur)]
        if payment.fee.minor:
            legs.append(Leg(await self.accounts.fees(conn, cur), -payment.fee.minor, cur))
        legs.append(Leg(await self.accounts.wallet(conn, payment.payer_user_id, cur), payment.total.minor, cur))
        return await self._transfer(conn, f"unwind:{payment.public_id}", tuple(legs), payment)

    async def credit_deposit(self, conn: AsyncConnection, payment: Payment) -> TransferResult:
        cur, provider = payment.amount.currency, _provider(payment)
        legs = payment_legs(await self.accounts.collection(conn, provider, cur),
                            await self.accounts.wallet(conn, payment.payer_user_id, cur), payment.amount)
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
            legs.append(Leg(await self.accounts.fees(conn, cur), -original.fee.minor, cur))
        legs.append(Leg(await self.accounts.wallet(conn, original.payer_user_id, cur), original.total.minor, cur))
        return await self._transfer(conn, f"refund:{refund.public_id}", tuple(legs), refund)

    async def reverse_wallet_payment(self, conn: AsyncConnection, refund: Payment, original: Payment) -> TransferResult:
        """Undo a wallet-to-wallet payment with the opposite of its transfer (fee included). Raises
        `InsufficientFunds` when the recipient no longer holds the amount."""
        if original.settle_transfer_id is None:
            raise ValueError(f"payment {original.public_id} moved no money")
        request = ReverseRequest(f"reverse:{refund.public_id}", original.settle_transfer_id,
                                 reference=refund.public_id)
        return await self.ledger.reverse(request, conn=conn)

    async def park_in_suspense(self, conn: AsyncConnection, trans_id: str, amount: Money) -> TransferResult:
        """C2B money for no wallet of ours: from provider collection into suspense, once per TransID,
        until an operator finds whose it is."""
        cur = amount.currency
        legs = payment_legs(await self.accounts.collection(conn, MPESA, cur),
                            await self.accounts.suspense(conn, MPESA, cur), amount)
        request = TransferRequest(f"suspense:{trans_id}", legs, kind="c2b.suspense", reference=trans_id)
        return await self.ledger.transfer(request, conn=conn)

    async def _transfer(self, conn: AsyncConnection, key: str, legs: tuple[Leg, ...],
                        payment: Payment) -> TransferResult:
        step = key.split(":", 1)[0]
        request = TransferRequest(key, legs, kind=f"{payment.kind}.{step}", reference=payment.public_id)
        return await self.ledger.transfer(request, conn=conn)


def _provider(payment: Payment) -> str:
    if payment.provider is None:
        raise ValueError(f"payment {payment.public_id} has no provider")
    return payment.provider
