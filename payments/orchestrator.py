"""The payment orchestrator: commands in, ledger transfers and outbox jobs out, provider results back.

One pipeline per payment kind, each readable top to bottom:

- p2p (`SendToWallet`, or `SendToPhone` to a number with a wallet): ONE transaction records the
  payment, moves the money (3-leg transfer with the fee), marks it succeeded and enqueues the SMS
  receipts.
- payout (`SendToPhone` to a number without a wallet, `Withdraw`): ONE transaction records the payment,
  moves amount + fee from the wallet into provider clearing, marks it pending and
  enqueues the provider job (`mpesa.b2c` for KES, `wave.payout` for XOF). The job sends it with our
  `public_id` as the provider's idempotency id; the result (callback, webhook, Wave's answer or a
  status query) settles clearing to the provider's settlement account and the fee to fee revenue,
  or unwinds both to the payer.
- deposit (`Deposit`): ONE transaction records the payment and enqueues `mpesa.stk_push` (KES) or
  `wave.checkout` (XOF). The STK callback, confirmed by an STK query when `confirm_stk_with_query`
  (Daraja signs nothing), or Wave's verified `checkout.session.*` webhook credits the wallet from
  provider collection. The callback of a push whose id was never recorded (its job died after
  Daraja took it, and pushed again) is kept, confirmed and credited once (`payments.stk_orphans`).
- merchant payments (`PayBill`, `BuyGoods`: M-Pesa B2B, job `mpesa.b2b`; `PayPochi`: B2C to the
  merchant's pochi number, job `mpesa.b2c`): payouts, KES only, with the paybill / account number /
  till on the payment row. The B2B Result (by callback, found by its ConversationID) settles or unwinds.
- C2B (`on_c2b_validation`, `on_c2b_confirmation`): a customer paying our paybill from the phone menu
  with their wallet's phone number as the account number (`payments.c2b`).
- refund (`Refund`): undoes a succeeded payment, by a provider reversal / refund or in the ledger
  (`payments.refunds`).

IMPORTANT: every money movement is a ledger transfer with a key derived from the payment
(`payments.settlement`), every external effect is an outbox job written in the transaction of the
state change that needs it, and every delivery from a provider is recorded in `provider_events`
in the transaction that applies it, so duplicates and late or out-of-order deliveries change nothing.
`recover_stuck` resolves payments whose result never came, by asking the provider (for M-Pesa
payouts, reversals and C2B payments: a transaction status query, answered by `on_status_result`).

This module holds the commands and is the service's face (`Payments`); the parts it composes:
`payments.provider_jobs` (outbox handlers), `payments.provider_results` (callbacks, webhooks,
recovery), `payments.resolution` (applying a verdict once), `payments.settlement` (the transfers),
`payments.payment_store` (the tables).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import autocommit
from payments import payment_store as store
from payments import review
from payments.c2b import C2BReceiver
from payments.commands import (
    BuyGoods,
    Command,
    Deposit,
    PayBill,
    PaymentKind,
    PayPochi,
    Refund,
    SendToPhone,
    SendToWallet,
    Withdraw,
)
from payments.contacts import count_send
from payments.errors import (
    AccountClosed,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    RecipientCurrencyMismatch,
    UnknownUser,
)
from payments.fees import FeePlan, Quote, quote
from payments.identities import User, UserStatus, find_user_by_phone, get_user, get_user_and_find
from payments.intents import JOB_INTENT_SMS, PaymentIntents
from payments.ledger import Ledger
from payments.money import Currency, Money
from payments.outbox import enqueue
from payments.payment_settings import (
    CALLBACK_C2B_CONFIRMATION,
    CALLBACK_C2B_VALIDATION,
    JOB_B2B,
    JOB_B2C,
    JOB_STK_ORPHAN,
    JOB_STK_PUSH,
    JOB_WAVE_CHECKOUT,
    JOB_WAVE_PAYOUT,
    MPESA,
    PROVIDER_FOR,
    PaymentSettings,
    ProviderClients,
)
from payments.payment_store import Payment
from payments.phones import InvalidPhoneNumber, parse_msisdn, region_of, wallet_currency
from payments.provider_jobs import Handler, ProviderJobs
from payments.provider_results import ProviderResults, RecoveryReport
from payments.providers.daraja import AmountNotPayable, C2BRegistration, mpesa_msisdn, whole_shillings
from payments.providers.daraja_callbacks import C2BPayment, DarajaResult, QueueTimeout, StkCallback
from payments.providers.wave import Payout
from payments.providers.wave_webhooks import WaveEvent
from payments.receipts import IntentNoticeWriter, ReceiptWriter, english_intent_notice, english_receipt
from payments.refunds import Refunds
from payments.resolution import Resolver
from payments.review import OperatorVerdict
from payments.settlement import FEE_IN_CLEARING, AccountBook, Settlement
from payments.states import PaymentStatus
from payments.stk_orphans import StkOrphans
from payments.suspense import SuspenseDesk
from payments.webhook_delivery import WebhookSender
from payments.webhook_events import JOB_WEBHOOK

__all__ = ["PaymentSettings", "Payments", "ProviderClients", "RecoveryReport"]

S = PaymentStatus
#: Money coming into the payer's wallet: free, no payment of the plan's allowance, and limited per
#: transaction only (`_deposit` and the agents' cash-in check it so; `fees.quote`'s ``incoming``).
_INCOMING = frozenset({PaymentKind.DEPOSIT, PaymentKind.CASH_IN})
#: The kinds paid wallet to wallet when the recipient has one (`_internal`).
_TO_WALLET = frozenset({PaymentKind.P2P, PaymentKind.SEND_TO_PHONE})
#: What a caller of `Payments.send_to_wallet_in` writes with a new payment before its money moves.
BeforeMoney = Callable[[AsyncConnection, Payment], Awaitable[None]]


class Payments:
    """The orchestrator service. `handle(command)` runs a command; `register_handlers()` gives the
    outbox worker its handlers; `on_*` take parsed provider deliveries; `recover_stuck` sweeps."""

    def __init__(
        self,
        engine: AsyncEngine,
        ledger: Ledger,
        *,
        settings: PaymentSettings | None = None,
        providers: ProviderClients | None = None,
        plan_for: Callable[[User], FeePlan] | None = None,
        write_receipt: ReceiptWriter = english_receipt,
        webhooks: WebhookSender | None = None,
        write_intent_notice: IntentNoticeWriter = english_intent_notice,
    ) -> None:
        self.engine = engine
        #: Sends the webhook events final states queue (`payments.webhook_events`); closed by whoever made it.
        self.webhooks = webhooks or WebhookSender(engine)
        self.ledger = ledger
        self.settings = settings or PaymentSettings()
        self.providers = providers or ProviderClients()
        self._plan_for = plan_for or (lambda user: self.settings.fee_plans[self.settings.default_plan])
        self.accounts = AccountBook(engine, hot_account_shards=self.settings.hot_account_shards,
                                    on_sharded=ledger.forget_shards)
        self.money = Settlement(ledger, self.accounts)
        self.resolver = Resolver(engine, self.money, self.settings, self.providers)
        self.jobs = ProviderJobs(engine, self.resolver, self.settings, self.providers, write_receipt)
        self.orphans = StkOrphans(engine, self.resolver, self.money, self.settings, self.providers)
        self.results = ProviderResults(engine, self.resolver, self.settings, self.providers, self.orphans)
        self.c2b = C2BReceiver(engine, self.resolver, self.money, self.settings, self.providers)
        self.refunds = Refunds(engine, self.money, self.resolver)
        #: Money parked in suspense, credited or returned by an operator (`payments.suspense`).
        self.suspense = SuspenseDesk(engine, self.resolver, self.money, self.settings)
        #: Merchants' requests that a customer pay them, paid through `send_to_wallet_in` (`payments.intents`).
        self.intents = PaymentIntents(engine, self.send_to_wallet_in, self.settings, self.providers,
                                      write_intent_notice)
        self._commands: Mapping[type, Callable[[Any], Awaitable[Payment]]] = MappingProxyType({
            SendToWallet: self._send_to_wallet,
            SendToPhone: self._send_to_phone,
            Withdraw: self._withdraw,
            Deposit: self._deposit,
            PayBill: self._pay_bill,
            BuyGoods: self._buy_goods,
            PayPochi: self._pay_pochi,
            Refund: self.refunds.refund,
        })

    # -- commands --------------------------------------------------------------------------------

    async def handle(self, command: Command) -> Payment:
        """Run a command; returns the payment (a failed one when the wallet could not cover it).
        Raises `IdempotencyConflict` when the key was used for another request, and the
        `PaymentsError`s of bad requests (limits, unknown recipient, bad number)."""
        handler = self._commands.get(type(command))
        if handler is None:
            raise InvalidRequest(f"no handler for {type(command).__name__}")
        return await handler(command)

    async def quote(
        self, payer_user_id: int, amount: Money, *, recipient_phone: str | None = None,
        recipient_user_id: int | None = None, kind: PaymentKind = PaymentKind.P2P,
    ) -> Quote:
        """What a payment would cost, checked against limits, with the recipient's registered name
        when the recipient has a Sauti wallet (for the confirmation screen). Its reads need no
        transaction (`handle` checks everything again): they run as lone statements."""
        async with autocommit(self.engine).connect() as conn:
            recipient: User | None = None
            if recipient_user_id is not None:
                payer = await get_user(conn, payer_user_id)
                recipient = await get_user(conn, recipient_user_id)
            elif recipient_phone:
                payer, _, recipient = await self._payer_and_recipient(conn, payer_user_id, recipient_phone)
            else:
                payer = await get_user(conn, payer_user_id)
            if recipient is not None and recipient.id != payer.id and kind in _TO_WALLET:
                # Paid wallet to wallet, as the command will: refused now if it would be then.
                self._check_wallet_currency(recipient, amount)
            name = (recipient.display_name or None) if recipient is not None else None
            return await self._quote(conn, payer, amount, kind, name)

    async def quote_in(self, conn: AsyncConnection, payer: User, amount: Money, kind: PaymentKind) -> Quote:
        """`quote`'s price and limits checks on the caller's connection, for a service that prices a
        payment inside its own transaction (`payments.agents`' cash-out): a second pooled connection
        taken while the first is held starves the pool when every holder waits for another."""
        return await self._quote(conn, payer, amount, kind)

    async def fee_plan(self, user_id: int, currency: Currency) -> tuple[FeePlan, int]:
        """The user's fee plan, and the payments in ``currency`` it has counted this month."""
        async with self.engine.connect() as conn:
            user = await get_user(conn, user_id)
            _, this_month = await store.outgoing_totals(conn, user.id, currency, payer_phone=user.phone)
        return self._plan_for(user), this_month

    async def find(self, id_or_reference: str) -> Payment:
        """The payment a person names (its public id or short reference); `UnknownPayment` if none."""
        return await review.find(self.engine, id_or_reference)

    async def decide(self, verdict: OperatorVerdict) -> Payment:
        """An operator's verdict on a payment flagged for review, from the provider's statement:
        settled or given back, once (`payments.review`)."""
        return await review.decide(self.engine, self.resolver, verdict)

    async def history(self, public_id: str) -> tuple[Payment, list[store.PaymentEvent]]:
        """A payment and every transition it went through, with causes (for operators and support)."""
        async with self.engine.connect() as conn:
            payment = await store.get_payment(conn, public_id)
            if payment is None:
                raise InvalidRequest(f"no payment {public_id}")
            return payment, await store.events_of(conn, payment.id)

    async def _quote(self, conn: AsyncConnection, payer: User, amount: Money, kind: PaymentKind,
                     recipient_name: str | None = None) -> Quote:
        spent_today, this_month = await store.outgoing_totals(conn, payer.id, amount.currency,
                                                              payer_phone=payer.phone)
        return self._price(payer, amount, kind, recipient_name, spent_today, this_month)

    def _price(self, payer: User, amount: Money, kind: PaymentKind, recipient_name: str | None,
               spent_today: Money, this_month: int) -> Quote:
        """The price and the limits of ``kind``, as its command records and checks them. A refund
        has none of its own (it gives a whole payment back, fee included): refused."""
        if kind is PaymentKind.REFUND:
            raise InvalidRequest("a refund gives back a whole payment: it has no price of its own")
        return quote(amount, self._plan_for(payer), limits=self.settings.limits, kyc_tier=payer.kyc_tier,
                     spent_today=spent_today, transactions_this_month=this_month, recipient_name=recipient_name,
                     incoming=kind in _INCOMING)

    async def _replay_or_price(self, conn: AsyncConnection, cmd: Command, request_hash: str, payer: User,
                               kind: PaymentKind, recipient_name: str | None = None) -> Payment | Quote:
        """The payment an earlier run of the command made (`IdempotencyConflict` if its key was used
        for another request), else the command's price, checked against the limits: what both need
        read in one statement. A replay is not priced again: it answers whatever the limits say now."""
        existing, spent_today, this_month = await store.find_by_key_with_totals(
            conn, cmd.payer_user_id, cmd.idempotency_key, cmd.amount.currency, payer_phone=payer.phone)
        if existing is not None:
            return self._same_request(existing, cmd, request_hash)
        return self._price(payer, cmd.amount, kind, recipient_name, spent_today, this_month)

    async def _send_to_wallet(self, cmd: SendToWallet) -> Payment:
        async with self.engine.begin() as conn:
            return await self.send_to_wallet_in(conn, cmd)

    async def send_to_wallet_in(self, conn: AsyncConnection, cmd: SendToWallet,
                                before_money: BeforeMoney | None = None) -> Payment:
        """`SendToWallet` in the caller's open transaction, for a service whose own record must
        change with the payment's (a payment intent paid: `payments.intents`). As `handle`, it
        returns a failed payment when the wallet could not cover it: the caller commits that too.
        ``before_money`` runs with a new payment's row before its money moves, in the savepoint
        that a refusal undoes (what it writes then keeps no wallet or fee shard locked)."""
        payer = await self._active_user(conn, cmd.payer_user_id)
        if cmd.recipient_user_id is not None:
            recipient = await get_user(conn, cmd.recipient_user_id)
        else:
            phone = self._phone(cmd.recipient_phone or "", payer)
            found = await find_user_by_phone(conn, phone)
            if found is None:
                raise UnknownUser(f"{phone} has no Sauti wallet")
            recipient = found
        return await self._internal(conn, cmd, payer, recipient, PaymentKind.P2P, before_money)

    async def _send_to_phone(self, cmd: SendToPhone) -> Payment:
        async with self.engine.begin() as conn:
            payer, phone, recipient = await self._payer_and_recipient(conn, cmd.payer_user_id, cmd.recipient_phone)
            self._check_active(payer)
            if recipient is not None and recipient.id != payer.id:
                # The number has a wallet: keep the money inside Sauti (no provider, no provider fee).
                return await self._internal(conn, cmd, payer, recipient, PaymentKind.SEND_TO_PHONE)
            return await self._payout(conn, cmd, payer, PaymentKind.SEND_TO_PHONE, phone)

    async def _withdraw(self, cmd: Withdraw) -> Payment:
        async with self.engine.begin() as conn:
            payer = await self._active_user(conn, cmd.payer_user_id)
            phone = self._phone(cmd.phone, payer) if cmd.phone else payer.phone
            return await self._payout(conn, cmd, payer, PaymentKind.WITHDRAW, phone)

    async def _deposit(self, cmd: Deposit) -> Payment:
        currency = cmd.amount.currency
        provider = PROVIDER_FOR[currency]
        async with self.engine.begin() as conn:
            payer = await self._active_user(conn, cmd.payer_user_id)
            phone = self._phone(cmd.phone, payer) if cmd.phone else payer.phone
            if provider == MPESA:
                self._check_mpesa(cmd.amount, phone)
            elif region_of(phone) not in ("SN", "CI"):
                raise InvalidRequest("Wave collects from Senegalese and Ivorian numbers")
            request_hash = cmd.request_hash(PaymentKind.DEPOSIT, recipient_phone=phone)
            if (replay := await self._replay(conn, cmd, request_hash)) is not None:
                return replay
            self.settings.limits.check(cmd.amount, kyc_tier=payer.kyc_tier, spent_today=Money.zero(currency))
            payment, fresh = await self._insert(conn, cmd, PaymentKind.DEPOSIT, request_hash, Money.zero(currency),
                                                provider=provider, recipient_phone=phone)
            if not fresh:
                return payment
            # M-Pesa: an STK push to the phone. Wave: a checkout session the payer approves in the app.
            job = JOB_STK_PUSH if provider == MPESA else JOB_WAVE_CHECKOUT
            await enqueue(conn, job, {"payment": payment.public_id}, dedupe_key=f"{job}:{payment.public_id}")
            return payment

    async def _pay_bill(self, cmd: PayBill) -> Payment:
        self._check_kes(cmd.amount, "Bill payments")
        async with self.engine.begin() as conn:
            payer = await self._active_user(conn, cmd.payer_user_id)
            return await self._to_provider(conn, cmd, payer, PaymentKind.PAY_BILL, MPESA, JOB_B2B,
                                           paybill=cmd.paybill, account_number=cmd.account_number)

    async def _buy_goods(self, cmd: BuyGoods) -> Payment:
        self._check_kes(cmd.amount, "Till payments")
        async with self.engine.begin() as conn:
            payer = await self._active_user(conn, cmd.payer_user_id)
            return await self._to_provider(conn, cmd, payer, PaymentKind.BUY_GOODS_TILL, MPESA, JOB_B2B,
                                           till=cmd.till)

    async def _pay_pochi(self, cmd: PayPochi) -> Payment:
        self._check_kes(cmd.amount, "Pochi payments")
        async with self.engine.begin() as conn:
            payer = await self._active_user(conn, cmd.payer_user_id)
            phone = self._phone(cmd.phone, payer)
            self._check_mpesa(cmd.amount, phone)
            # Always to M-Pesa, even when the number has a Sauti wallet: a pochi is the merchant's till.
            return await self._to_provider(conn, cmd, payer, PaymentKind.BUY_GOODS_POCHI, MPESA, JOB_B2C,
                                           recipient_phone=phone)

    # -- command steps ---------------------------------------------------------------------------

    async def _internal(self, conn: AsyncConnection, cmd: SendToWallet | SendToPhone, payer: User, recipient: User,
                        kind: PaymentKind, before_money: BeforeMoney | None = None) -> Payment:
        """Wallet to wallet, in the caller's transaction: recorded, moved and succeeded at once."""
        if recipient.id == payer.id:
            raise InvalidRequest("you cannot send money to yourself")
        if recipient.status is UserStatus.CLOSED:
            raise AccountClosed("the recipient's account is closed")
        # Every wallet payment comes through here: USSD, voice, the API and payment intents.
        self._check_wallet_currency(recipient, cmd.amount)
        request_hash = cmd.request_hash(kind, recipient_user_id=recipient.id)
        name = recipient.display_name or None
        priced = await self._replay_or_price(conn, cmd, request_hash, payer, kind, name)
        if isinstance(priced, Payment):
            return priced
        payment, fresh = await self._insert(conn, cmd, kind, request_hash, priced.fee,
                                            recipient_user_id=recipient.id, recipient_phone=recipient.phone)
        if not fresh:
            return payment
        try:
            async with conn.begin_nested():
                # IMPORTANT: the money last. The transfer locks both wallets and a fee revenue shard
                # until the commit, and every payment of the currency wants one of those shards: what
                # is written before it (the contact, counted with the move to succeeded, which a
                # replayed command never repeats; the receipts) keeps no one waiting. Refused, the
                # savepoint undoes them with it.
                await count_send(conn, payment, recipient_name=name, max_contacts=self.settings.max_contacts_per_user)
                await self.resolver.receipts(conn, payment, "payer", "payee", status=S.SUCCEEDED)
                if before_money is not None:
                    await before_money(conn, payment)
                moved = await self.money.pay_wallet(conn, payment, recipient.id)
        except InsufficientFunds as exc:
            return await self._refused(conn, payment, exc)
        return await store.transition(conn, payment, S.SUCCEEDED, cause="ledger",
                                      debit_transfer_id=moved.transfer_id, settle_transfer_id=moved.transfer_id)

    @staticmethod
    def _check_wallet_currency(recipient: User, amount: Money) -> None:
        """IMPORTANT: a wallet holds its number's currency, the one its owner's menus, statement and
        withdrawals show (`wallet_currency`, as agents and payment intents check it). Credited in
        another, the money would sit in a wallet they never see: refused."""
        held = wallet_currency(recipient.phone)
        if held is not amount.currency:
            raise RecipientCurrencyMismatch(recipient.phone, held.value if held else None, amount.currency.value)

    async def _payout(self, conn: AsyncConnection, cmd: SendToPhone | Withdraw, payer: User, kind: PaymentKind,
                      phone: str) -> Payment:
        """Wallet to a mobile-money account: debited into clearing now, paid by a provider job."""
        currency = cmd.amount.currency
        provider = PROVIDER_FOR[currency]
        if provider == MPESA:
            self._check_mpesa(cmd.amount, phone)
        elif region_of(phone) not in ("SN", "CI"):
            raise InvalidRequest("Wave pays out to Senegalese and Ivorian numbers")
        job = JOB_B2C if provider == MPESA else JOB_WAVE_PAYOUT
        return await self._to_provider(conn, cmd, payer, kind, provider, job, recipient_phone=phone)

    async def _to_provider(self, conn: AsyncConnection, cmd: SendToPhone | Withdraw | PayBill | BuyGoods | PayPochi,
                           payer: User, kind: PaymentKind, provider: str, job: str, **recipient: str) -> Payment:
        """Any payout, in the caller's transaction: recorded with its recipient (a phone, a paybill
        and account number, a till), amount + fee debited into clearing, the provider job enqueued."""
        request_hash = cmd.request_hash(kind, **recipient)
        priced = await self._replay_or_price(conn, cmd, request_hash, payer, kind)
        if isinstance(priced, Payment):
            return priced
        payment, fresh = await self._insert(conn, cmd, kind, request_hash, priced.fee, provider=provider,
                                            **recipient)
        if not fresh:
            return payment
        try:
            async with conn.begin_nested():
                # The job before the money, which locks the wallet and the provider's clearing account
                # until the commit (see `_internal`); refused, the savepoint undoes the job too.
                await enqueue(conn, job, {"payment": payment.public_id}, dedupe_key=f"{job}:{payment.public_id}")
                debited = await self.money.debit_for_payout(conn, payment)
        except InsufficientFunds as exc:
            return await self._refused(conn, payment, exc)
        return await store.transition(conn, payment, S.PENDING, cause="debited_to_clearing",
                                      refs={FEE_IN_CLEARING: True} if payment.fee.minor else {},
                                      debit_transfer_id=debited.transfer_id)

    async def _replay(self, conn: AsyncConnection, cmd: Command, request_hash: str) -> Payment | None:
        existing = await store.find_by_key(conn, cmd.payer_user_id, cmd.idempotency_key)
        return None if existing is None else self._same_request(existing, cmd, request_hash)

    @staticmethod
    def _same_request(existing: Payment, cmd: Command, request_hash: str) -> Payment:
        if existing.request_hash != request_hash:
            raise IdempotencyConflict(cmd.idempotency_key, existing.id)
        return existing

    async def _insert(self, conn: AsyncConnection, cmd: Command, kind: PaymentKind, request_hash: str, fee: Money,
                      **fields: Any) -> tuple[Payment, bool]:
        """Record the payment; returns it and True, or a concurrent twin's (same key) and False."""
        new = store.NewPayment(
            payer_user_id=cmd.payer_user_id, idempotency_key=cmd.idempotency_key, request_hash=request_hash,
            kind=kind.value, channel=cmd.channel.value, amount=cmd.amount, fee=fee, transcript=cmd.transcript,
            confidence=cmd.confidence, voice_confirmed=cmd.voice_confirmed, api_key_id=cmd.api_key_id, **fields)
        payment = await store.insert_payment(conn, new, cause=f"command:{cmd.channel.value}")
        if payment is None:
            # A concurrent request with the same key committed first: answer as a replay.
            replay = await self._replay(conn, cmd, request_hash)
            assert replay is not None
            return replay, False
        return payment, True

    async def _refused(self, conn: AsyncConnection, payment: Payment, exc: InsufficientFunds) -> Payment:
        message = "Not enough money in the wallet"
        if exc.available is not None and exc.needed is not None:
            cur = payment.amount.currency
            message += f": {Money(exc.available, cur)} available, {Money(exc.needed, cur)} needed"
        return await store.transition(conn, payment, S.FAILED, cause="ledger",
                                      details={"error": InsufficientFunds.code},
                                      error_code=InsufficientFunds.code, error_message=message + ".")

    async def _active_user(self, conn: AsyncConnection, user_id: int) -> User:
        """The payer, their row locked until the payment commits.

        IMPORTANT: a payment reads the day's total before it adds to it (the daily limit); two of
        one payer's at once would each read the total without the other and pass the limit
        together. Locked first, they take turns, and the second reads the first's amount."""
        return self._check_active(await get_user(conn, user_id, lock=True))

    @staticmethod
    def _check_active(user: User) -> User:
        if user.status is UserStatus.CLOSED:
            raise AccountClosed("this account is closed")
        return user

    async def _payer_and_recipient(self, conn: AsyncConnection, payer_user_id: int,
                                   text: str) -> tuple[User, str, User | None]:
        """The payer, the number ``text`` names (a local form read in the payer's country) and its
        user if it has one. A number in international form needs no payer to be read: both users
        then come in one statement."""
        if text.strip().startswith("+"):
            phone = self._phone(text, None)
            # The payer's row locked, as `_active_user` locks it.
            payer, recipient = await get_user_and_find(conn, payer_user_id, phone)
            return payer, phone, recipient
        payer = await get_user(conn, payer_user_id, lock=True)  # locked as `_active_user`'s
        phone = self._phone(text, payer)
        return payer, phone, await find_user_by_phone(conn, phone)

    @staticmethod
    def _phone(text: str | None, payer: User | None) -> str:
        """The number ``text`` names, a local form read in the payer's country (international
        forms need no payer)."""
        try:
            return parse_msisdn(text or "", region_of(payer.phone) if payer else None)
        except InvalidPhoneNumber as exc:
            raise InvalidRequest(str(exc)) from None

    @staticmethod
    def _check_kes(amount: Money, what: str) -> None:
        if amount.currency is not Currency.KES:
            raise InvalidRequest(f"{what} go through M-Pesa and are made in KES, not {amount.currency.value}")
        try:
            whole_shillings(amount)
        except AmountNotPayable as exc:
            raise InvalidRequest(str(exc)) from None

    @staticmethod
    def _check_mpesa(amount: Money, phone: str) -> None:
        try:
            whole_shillings(amount)
            mpesa_msisdn(phone)
        except (AmountNotPayable, InvalidPhoneNumber) as exc:
            raise InvalidRequest(str(exc)) from None

    # -- what the worker, the gateway and operators call -------------------------------------------

    def register_handlers(self) -> dict[str, Handler]:
        """The outbox worker's routing table: ``mpesa.b2c``, ``mpesa.b2b``, ``wave.payout``,
        ``mpesa.stk_push``, ``wave.checkout``, ``mpesa.reversal``, ``mpesa.status_query``,
        ``wave.checkout_refund``, ``wave.payout_reverse``, ``wave.checkout_expire``, ``sms.receipt``,
        ``mpesa.stk_orphan``, ``webhook.deliver``, ``sms.payment_intent``."""
        return {**self.jobs.handlers(), JOB_STK_ORPHAN: self.orphans.run, JOB_WEBHOOK: self.webhooks.deliver,
                JOB_INTENT_SMS: self.intents.send_notice}

    async def register_c2b_urls(self) -> C2BRegistration:
        """Tell Daraja where to send C2B validations and confirmations for our shortcode (once per
        deployment, or whenever the callback base URL changes: `sauti mpesa register-c2b`, or
        ``payments.register_c2b_on_start``). The paths say neither "mpesa" nor "safaricom", which
        Safaricom refuses in these URLs. ``Completed``: a validation we fail to answer in time lets
        the payment through (the confirmation then books it, or parks it)."""
        daraja = self.providers.daraja
        if daraja is None:
            raise InvalidRequest("M-Pesa is not configured")
        base = self.settings.callback_base_url.rstrip("/")
        return await daraja.register_c2b_urls(confirmation_url=base + CALLBACK_C2B_CONFIRMATION,
                                              validation_url=base + CALLBACK_C2B_VALIDATION)

    async def on_stk_callback(self, callback: StkCallback) -> str:
        return await self.results.on_stk_callback(callback)

    async def on_b2c_result(self, result: DarajaResult) -> str:
        return await self.results.on_b2c_result(result)

    async def on_b2c_queue_timeout(self, notice: QueueTimeout) -> str:
        return await self.results.on_b2c_queue_timeout(notice)

    async def on_b2b_result(self, result: DarajaResult) -> str:
        return await self.results.on_b2b_result(result)

    async def on_b2b_queue_timeout(self, notice: QueueTimeout) -> str:
        return await self.results.on_b2b_queue_timeout(notice)

    async def on_reversal_result(self, result: DarajaResult) -> str:
        return await self.results.on_reversal_result(result)

    async def on_reversal_queue_timeout(self, notice: QueueTimeout) -> str:
        return await self.results.on_reversal_queue_timeout(notice)

    async def on_status_result(self, result: DarajaResult) -> str:
        return await self.results.on_status_result(result)

    async def on_status_queue_timeout(self, notice: QueueTimeout) -> str:
        return await self.results.on_status_queue_timeout(notice)

    async def on_c2b_validation(self, paid: C2BPayment) -> dict[str, str]:
        """The JSON body to answer a C2B validation with (accept, or a ``C2B000xx`` rejection)."""
        return await self.c2b.on_validation(paid)

    async def on_c2b_confirmation(self, paid: C2BPayment) -> str:
        return await self.c2b.on_confirmation(paid)

    async def book_missed_c2b(self, *, receipt: str, amount: Money, account: str, phone: str, booked_by: str,
                              reason: str, not_pushes: Collection[str] = ()) -> str:
        """An operator books a payment to our paybill whose confirmation never came, from the
        statement's line; credited once M-Pesa confirms it (`C2BReceiver.book_missed`; ``not_pushes``:
        receiptless STK deposits the operator found under other receipts on the statement)."""
        return await self.c2b.book_missed(receipt=receipt, amount=amount, account=account, phone=phone,
                                          booked_by=booked_by, reason=reason, not_pushes=not_pushes)

    async def on_wave_payout_update(self, payout: Payout, *, event_id: str | None = None) -> str:
        return await self.results.on_wave_payout_update(payout, event_id=event_id)

    async def on_wave_event(self, event: WaveEvent) -> str:
        return await self.results.on_wave_event(event)

    async def recover_stuck(self, older_than: timedelta, *, limit: int = 200) -> RecoveryReport:
        """Resolve payments left open longer than ``older_than`` by asking the providers."""
        return await self.results.recover_stuck(older_than, limit=limit)
