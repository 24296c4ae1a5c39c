"""The money movements of a payment, as ledger transfers with deterministic idempotency keys.

Each step of a payment's life moves money once, whatever number of times it is attempted (a
duplicate callback, a retried job, a recovery sweep racing a late callback): the key names the
payment and the step, so a second attempt replays the first transfer and moves nothing.

    p2p        pay:<public_id>     payer −(amount+fee), payee +amount, fee revenue +fee
    payout     debit:<public_id>   payer −(amount+fee), provider clearing +amount, fee revenue +fee
               settle:<public_id>  clearing −amount, provider settlement +amount      (provider success)
               unwind:<public_id>  clearing −amount, fee revenue −fee, payer +(amount+fee)  (failure)
    deposit    credit:<public_id>  provider collection −amount, wallet +amount

IMPORTANT (DESIGN invariant 4): money leaving for a provider sits in the clearing account until the
provider's answer moves it on (settle) or back (unwind); nothing else touches clearing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payments.accounts import AccountKind, account_by_code, account_code, open_account
from payments.errors import UnknownAccount
from payments.ledger import Ledger, TransferResult
from payments.money import Currency
from payments.payment_store import Payment
from payments.postings import Leg, TransferRequest, payment_legs


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

    async def _transfer(self, conn: AsyncConnection, key: str, legs: tuple[Leg, ...],
                        payment: Payment) -> TransferResult:
        step = key.split(":", 1)[0]
        request = TransferRequest(key, legs, kind=f"{payment.kind}.{step}", reference=payment.public_id)
        return await self.ledger.transfer(request, conn=conn)


def _provider(payment: Payment) -> str:
    if payment.provider is None:
        raise ValueError(f"payment {payment.public_id} has no provider")
    return payment.provider
