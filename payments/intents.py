"""Payment intents: a merchant asks a Sauti customer to pay it an amount, and the customer pays or
declines, by USSD or from an app.

The flow (the seeds' z402 payment intents, on a wallet):

- **Created** by an API key (`CreateIntent`): a user key's own user is paid, a platform key names
  whom; either way a merchant (the ``merchant`` role), so that no one asks money in our SMS's name.
  The customer is named by number and must have a Sauti wallet in the intent's currency; their row
  is locked while their open intents (``max_pending_intents``), this merchant's among them
  (``max_pending_intents_per_merchant``, so that one merchant cannot take every place and keep the
  others from asking) and this merchant's asks of the day (``max_intents_per_day``, ended ones
  counted) are counted. It is ``pending`` until
  ``expires_in_s`` (``payments.intent_expiry_s`` by default) and the customer gets an SMS (outbox job
  ``sms.payment_intent``) saying who asks (name and number) how much, for what, and where to answer.
- **Paid** by the customer (`PayIntent`, after the PIN on USSD; with the customer's own key from
  an app): ONE transaction locks the intent, makes the p2p payment from the customer's wallet to the
  merchant's (the orchestrator's, with its fee, limits, receipts and ``payment.received`` event),
  ending the intent ``succeeded``, naming it, before the money moves (so the wallets and the fee
  shard stay locked no longer for it). A payment the wallet could not cover is recorded failed and
  the intent stays pending: the customer may top up and pay. An intent whose key was revoked since,
  or whose merchant's account closed, is not paid: paying it cancels it.
- **Declined** by the customer, **cancelled** by the merchant, or **expired** (`expire`, which
  `sauti serve` runs every ``intent_sweep_interval_s``; paying one past its expiry closes it too).

IMPORTANT: an intent ends once (its row locked by whoever ends it, and only a pending one changes);
a paid one names the one payment that paid it (a database UNIQUE). Every command carries an
idempotency key: the merchant's, scoped to its API key (same key and request: the same intent;
another request: `IdempotencyConflict`), and the customer's for the payment, which is that key
joined to the intent's id (`payment_key`) so that one key can never pay two intents. The creating key's webhook
endpoints hear each end (``payment_intent.succeeded``, ``.declined``, ``.cancelled``, ``.expired``).

A succeeded intent whose payment is refunded (`payments.refunds`) becomes ``refunded``, naming the
refund, in the refund's transaction (`intent_refunded`); the creating key's endpoints hear
``payment_intent.refunded``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import autocommit
from payments import intent_store as istore
from payments import payment_store as store
from payments.commands import Channel, PaymentKind, SendToWallet
from payments.errors import AccountClosed, IdempotencyConflict, InvalidRequest, PaymentsError, UnknownUser
from payments.identities import Role, User, UserStatus, get_user, lock_user_by_phone
from payments.intent_store import IntentParties, IntentStatus, NewIntent, PaymentIntent
from payments.money import Money
from payments.outbox import Job, PermanentJobError, enqueue
from payments.payment_json import intent_json
from payments.payment_settings import PaymentSettings, ProviderClients
from payments.payment_store import Payment
from payments.phones import InvalidPhoneNumber, parse_msisdn, region_of, wallet_currency
from payments.plain_text import CONTROL
from payments.receipts import IntentNotice, IntentNoticeWriter, english_intent_notice
from payments.states import PaymentStatus
from payments.webhook_events import enqueue_key_event

log = logging.getLogger(__name__)

JOB_INTENT_SMS = "sms.payment_intent"
#: What a customer reads of an intent on a USSD screen and in its SMS, and a merchant's own reference.
DESCRIPTION_MAX, REFERENCE_MAX = 40, 64
#: How long an intent may wait for its customer: a minute to a week.
MIN_EXPIRY_S, MAX_EXPIRY_S = 60, 7 * 24 * 3600
S = IntentStatus
#: `Payments.send_to_wallet_in`'s ``before_money``.
PayHook = Callable[[AsyncConnection, Payment], Awaitable[None]]


class UnknownIntent(PaymentsError):
    """No such intent, or not one this caller may see."""

    code = "payment_intent_not_found"


class IntentClosed(PaymentsError):
    """The intent has ended (paid, declined, cancelled, expired): nothing more can be done with it."""

    code = "payment_intent_closed"

    def __init__(self, intent: PaymentIntent) -> None:
        super().__init__(f"payment intent {intent.public_id} is {intent.status.value}")
        self.intent = intent


class NotAMerchant(PaymentsError):
    """Only a merchant (a user with the ``merchant`` role: ``sauti apikey create --merchant``) is paid
    through intents: a customer's own key cannot ask anyone for money in our SMS's name."""

    code = "not_a_merchant"


class TooManyIntents(PaymentsError):
    """The customer already has as many open intents as one may (``payments.max_pending_intents``), or
    as many of this merchant's as one merchant may hold (``payments.max_pending_intents_per_merchant``),
    or the merchant asked them as many times as one may in a day (``payments.max_intents_per_day``)."""

    code = "too_many_payment_intents"


@dataclass(frozen=True, slots=True)
class CreateIntent:
    """A merchant's request that ``payer_phone`` pay ``amount`` into the wallet of ``payee_user_id``."""

    idempotency_key: str
    api_key_id: int
    payee_user_id: int
    payer_phone: str
    amount: Money
    description: str = ""
    merchant_reference: str | None = None
    #: None: ``payments.intent_expiry_s``.
    expires_in_s: float | None = None

    def request_hash(self, payer_user_id: int) -> str:
        """What "the same request" means for the merchant's idempotency key: everything it asked."""
        body = {"payee": self.payee_user_id, "payer": payer_user_id, "amount": self.amount.minor,
                "currency": self.amount.currency.value, "description": self.description,
                "reference": self.merchant_reference, "expires_in_s": self.expires_in_s}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PayIntent:
    """The customer pays intent ``intent`` (its public id) from their wallet. The PIN, on USSD and
    by voice, was checked before (`PinService.check`); ``api_key_id`` is the customer's app's key, if
    any. A spoken command adds what was heard (``transcript``, the recogniser's ``confidence``) and
    ``voice_confirmed``, kept on the payment as for every spoken payment."""

    idempotency_key: str
    payer_user_id: int
    intent: str
    channel: Channel
    api_key_id: int | None = None
    transcript: str | None = None
    confidence: Decimal | None = None
    voice_confirmed: bool = False


@dataclass(frozen=True, slots=True)
class IntentView:
    """An intent with its two sides and, from `PaymentIntents.pay`, the payment made or tried (a
    failed one included); reads carry only the paying payment's id (``intent.payment_public_id``)."""

    intent: PaymentIntent
    parties: IntentParties
    payment: Payment | None = None
    #: Pending past its expiry, not yet closed by the sweep: shown as ``expired``, which it is.
    lapsed: bool = False
    #: From `PaymentIntents.pay`: whether this call made the payment (not an earlier one's answer).
    made_payment: bool = False

    def json(self) -> dict:
        """As the API answers it and its webhook events carry it."""
        shown = replace(self.intent, status=S.EXPIRED) if self.lapsed else self.intent
        return intent_json(shown, self.parties)


def payment_key(customer_key: str, intent: PaymentIntent) -> str:
    """The payment's idempotency key: the customer's key for this intent only, so that a key reused
    for another intent of the same merchant and amount cannot replay this one's payment, in a
    namespace of its own (no other command's key starts ``intent:``)."""
    return f"intent:{intent.public_id}:{customer_key}"


async def intent_refunded(conn: AsyncConnection, payment: Payment, refund: Payment) -> PaymentIntent | None:
    """``payment`` was refunded by ``refund`` (in the refund's transaction, as it becomes reversed or
    refunded): the intent it paid, if any, becomes ``refunded`` and the key that made the intent
    hears ``payment_intent.refunded``, as it heard how the intent ended. None when it paid none."""
    if payment.kind != PaymentKind.P2P or payment.provider is not None:
        # Only a wallet payment pays an intent (`pay`): no statement for the others' refunds, which
        # run this while the hot accounts they moved money through are locked.
        return None
    refunded = await istore.mark_refunded(conn, payment.id, refund.id)
    if refunded is None:
        return None
    found = await istore.get_intent(conn, refunded.public_id)
    assert found is not None  # updated in this transaction
    await enqueue_key_event(conn, refunded.api_key_id, "payment_intent.refunded",
                            {"payment_intent": IntentView(found[0], found[1]).json()},
                            at=refunded.refunded_at or datetime.now(UTC))
    return refunded


def _clean(text: object, name: str, most: int) -> str | None:
    """An optional text a person reads: its runs of spaces made one; no control character (the
    project's `CONTROL`, which PostgreSQL could not store either)."""
    if text is None or text == "":
        return None
    cleaned = " ".join(text.split()) if isinstance(text, str) else ""
    if not 1 <= len(cleaned) <= most or CONTROL.search(cleaned):
        raise InvalidRequest(f"{name} is 1 to {most} printable characters")
    return cleaned


class PaymentIntents:
    """The intents service: `create`, `pay`, `decline`, `cancel`, `expire`, and the reads."""

    def __init__(self, engine: AsyncEngine,
                 pay_in: Callable[[AsyncConnection, SendToWallet, PayHook], Awaitable[Payment]],
                 settings: PaymentSettings, providers: ProviderClients,
                 write_notice: IntentNoticeWriter = english_intent_notice) -> None:
        self.engine = engine
        #: `Payments.send_to_wallet_in`: the payment, in the transaction that ends the intent.
        self._pay_in = pay_in
        self.settings = settings
        self.providers = providers
        self.write_notice = write_notice

    # -- the merchant ------------------------------------------------------------------------------

    async def create(self, cmd: CreateIntent) -> tuple[IntentView, bool]:
        """Record the intent and queue the customer's SMS; returns it and whether it is new (False:
        the key's earlier answer). `UnknownUser` when the number has no wallet; `InvalidRequest`
        for a bad description, reference, expiry, currency or payee; `TooManyIntents`."""
        description = _clean(cmd.description, "description", DESCRIPTION_MAX) or ""
        reference = _clean(cmd.merchant_reference, "reference", REFERENCE_MAX)
        expires_in = self.settings.intent_expiry_s if cmd.expires_in_s is None else cmd.expires_in_s
        if not (isinstance(expires_in, int | float) and MIN_EXPIRY_S <= expires_in <= MAX_EXPIRY_S):
            raise InvalidRequest(f"expires_in_s is {MIN_EXPIRY_S} to {MAX_EXPIRY_S} seconds")
        async with self.engine.begin() as conn:
            payee = await get_user(conn, cmd.payee_user_id)
            try:
                phone = parse_msisdn(cmd.payer_phone, region_of(payee.phone))
            except InvalidPhoneNumber as exc:
                raise InvalidRequest(str(exc)) from None
            # The customer's row, locked: the caps below count one creation at a time.
            payer = await lock_user_by_phone(conn, phone)
            # A retry answers what the first request got, whatever changed since (the customer's
            # account closed too).
            if (earlier := await self._earlier(conn, cmd, payer)) is not None:
                return earlier, False
            if payer is None or payer.status is UserStatus.CLOSED:
                raise UnknownUser(f"{phone} has no Sauti wallet")
            digest = cmd.request_hash(payer.id)
            if not payee.has_role(Role.MERCHANT):
                raise NotAMerchant("only a merchant's wallet is paid through payment intents")
            if payee.status is UserStatus.CLOSED:
                raise AccountClosed("the merchant's account is closed")
            if payer.id == payee.id:
                raise InvalidRequest("a merchant cannot ask itself to pay")
            currency = cmd.amount.currency
            if wallet_currency(payer.phone) != currency or wallet_currency(payee.phone) != currency:
                raise InvalidRequest(f"{phone} and the merchant cannot both hold {currency.value}")
            # An amount no single payment could move is refused now, not when the customer tries to
            # pay (the daily limits are the customer's business: they are not told to the merchant).
            self.settings.limits.check_amount(cmd.amount)
            # Counted under the customer's lock, as above: two creations at once cannot both pass.
            counts = await istore.asked_counts(conn, payer.id, payee.id)
            if counts.open_from_payee >= self.settings.max_pending_intents_per_merchant:
                # Checked first: the merchant can act on it (cancel one, or wait for one to end).
                raise TooManyIntents(
                    f"{phone} has {counts.open_from_payee} of this merchant's requests to pay open, as many as one "
                    "merchant may: wait for one to end, or cancel one")
            if counts.open_now >= self.settings.max_pending_intents or (
                    counts.asked_today >= self.settings.max_intents_per_day):
                raise TooManyIntents(f"{phone} has too many requests to pay open, or was asked too often today")
            intent = await istore.insert_intent(conn, NewIntent(
                cmd.api_key_id, payee.id, payer.id, cmd.amount, description, reference, cmd.idempotency_key, digest,
                float(expires_in)))
            if intent is None:
                # The key was used meanwhile for another customer (whose row this did not lock): the
                # insert waited for it, and its answer is now the key's.
                earlier = await self._earlier(conn, cmd, payer)
                assert earlier is not None
                return earlier, False
            if self.settings.sms_receipts:
                await enqueue(conn, JOB_INTENT_SMS, {"intent": intent.public_id},
                              dedupe_key=f"{JOB_INTENT_SMS}:{intent.public_id}")
            found = await istore.get_intent(conn, intent.public_id)
            assert found is not None
            return IntentView(found[0], found[1]), True

    async def _earlier(self, conn: AsyncConnection, cmd: CreateIntent, payer: User | None) -> IntentView | None:
        """The intent the key made already, if the same request did (`IdempotencyConflict` if another:
        a number with no user is another customer)."""
        existing = await istore.find_by_key(conn, cmd.api_key_id, cmd.idempotency_key)
        if existing is None:
            return None
        if payer is None or existing.request_hash != cmd.request_hash(payer.id):
            raise IdempotencyConflict(cmd.idempotency_key, existing.id)
        return await self._view(conn, existing.public_id)

    async def cancel(self, public_id: str, *, api_key_id: int, user_id: int | None) -> IntentView:
        """The merchant withdraws a pending intent: the key that made it, or a key of the merchant
        (``user_id``) paid by it. Cancelling a cancelled one answers the same; `IntentClosed` else."""
        return await self._close(public_id, S.CANCELLED,
                                 lambda i: i.api_key_id == api_key_id or (user_id is not None
                                                                          and i.payee_user_id == user_id))

    # -- the customer ------------------------------------------------------------------------------

    async def pay(self, cmd: PayIntent) -> IntentView:
        """Pay the intent from the customer's wallet. Returns the intent with the payment made: a
        succeeded one ends the intent, a failed one (the wallet could not cover it) leaves it
        pending. Paying a paid intent answers its payment. `UnknownIntent`, `IntentClosed`
        (declined, cancelled or expired: one past its expiry is closed now), and the payment's own
        refusals (limits, a closed account, `IdempotencyConflict`) are raised."""
        lapsed_one: PaymentIntent | None = None
        async with self.engine.begin() as conn:
            intent, parties, lapsed = await self._locked(conn, cmd.intent,
                                                         lambda i: i.payer_user_id == cmd.payer_user_id)
            if intent.status in (S.SUCCEEDED, S.REFUNDED):  # paid (and maybe refunded since): its payment
                return IntentView(intent, parties, await store.get_payment_by_id(conn, intent.payment_id or 0))
            if intent.status is not S.PENDING:
                raise IntentClosed(intent)
            if lapsed:
                lapsed_one = await self._end(conn, intent, parties, S.EXPIRED)
            elif parties.unpayable:
                # The key that asked was revoked (it leaked, the merchant left), or the merchant's
                # account closed: what it asked is not paid.
                lapsed_one = await self._end(conn, intent, parties, S.CANCELLED)
            else:
                key = payment_key(cmd.idempotency_key, intent)
                earlier = await store.find_by_key(conn, cmd.payer_user_id, key)
                ended: list[PaymentIntent] = []

                async def end_first(conn: AsyncConnection, payment: Payment) -> None:
                    # Before the money, which locks both wallets and a fee shard until the commit: a
                    # refusal (the wallet cannot cover it) undoes this with the rest of the savepoint.
                    ended.append(await self._end(conn, intent, parties, S.SUCCEEDED, payment))

                payment = await self._pay_in(conn, SendToWallet(
                    idempotency_key=key, payer_user_id=cmd.payer_user_id, amount=intent.amount, channel=cmd.channel,
                    api_key_id=cmd.api_key_id, recipient_user_id=intent.payee_user_id, transcript=cmd.transcript,
                    confidence=cmd.confidence, voice_confirmed=cmd.voice_confirmed), end_first)
                if payment.status is PaymentStatus.SUCCEEDED:
                    intent = ended[0] if ended else await self._end(conn, intent, parties, S.SUCCEEDED, payment)
                return IntentView(intent, parties, payment, made_payment=earlier is None)
        raise IntentClosed(lapsed_one)

    async def decline(self, public_id: str, *, payer_user_id: int) -> IntentView:
        """The customer says no. Declining a declined one answers the same; `IntentClosed` else."""
        return await self._close(public_id, S.DECLINED, lambda i: i.payer_user_id == payer_user_id)

    async def payment_of(self, intent: PaymentIntent) -> Payment | None:
        """The payment that paid ``intent``, if one did."""
        if intent.payment_id is None:
            return None
        async with autocommit(self.engine).connect() as conn:
            return await store.get_payment_by_id(conn, intent.payment_id)

    # -- expiry ------------------------------------------------------------------------------------

    async def expire(self, *, limit: int = 500) -> int:
        """End pending intents whose expiry passed; returns how many. Each in a transaction of its
        own, so run it from any number of processes."""
        async with autocommit(self.engine).connect() as conn:
            ids = await istore.lapsed_ids(conn, limit=limit)
        closed = 0
        for public_id in ids:
            async with self.engine.begin() as conn:
                found = await istore.get_intent(conn, public_id, lock=True)
                if found is not None and found[0].status is S.PENDING and found[2]:  # else ended meanwhile
                    await self._end(conn, found[0], found[1], S.EXPIRED)
                    closed += 1
        return closed

    async def sweep_expired(self, stop: asyncio.Event) -> None:
        """`expire` now, then every ``intent_sweep_interval_s`` until ``stop`` is set (the gateway
        runs it for its lifetime). A round that fails is logged and the next one runs as planned."""
        interval = self.settings.intent_sweep_interval_s
        while not stop.is_set():
            try:
                closed = await self.expire()
            except Exception:
                log.exception("payment intents: expiring failed; next round in %gs", interval)
            else:
                if closed:
                    log.info("payment intents: %d expired", closed)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    # -- reads -------------------------------------------------------------------------------------

    async def get(self, public_id: str, *, may_see: Callable[[PaymentIntent], bool]) -> IntentView:
        """The intent, if ``may_see`` it (else `UnknownIntent`, never "forbidden")."""
        async with autocommit(self.engine).connect() as conn:
            view = await self._view(conn, public_id)
        if view is None or not may_see(view.intent):
            raise UnknownIntent(f"no payment intent {public_id[:40]!r}")
        return view

    async def of_key(self, api_key_id: int, *, status: IntentStatus | None, limit: int,
                     before_id: int | None = None) -> list[IntentView]:
        """A key's intents, newest first (the paying payments' ids are in the intents' JSON)."""
        async with autocommit(self.engine).connect() as conn:  # one statement
            found = await istore.intents_of_key(conn, api_key_id, status=status, limit=limit, before_id=before_id)
        return [IntentView(i, p, lapsed=lapsed) for i, p, lapsed in found]

    async def pending_for_payer(self, payer_user_id: int, *, limit: int,
                                before_id: int | None = None) -> list[IntentView]:
        """What the customer is asked to pay, newest first (the USSD list)."""
        async with autocommit(self.engine).connect() as conn:
            found = await istore.pending_for_payer(conn, payer_user_id, limit=limit, before_id=before_id)
        return [IntentView(i, p) for i, p in found]

    # -- the SMS -----------------------------------------------------------------------------------

    async def send_notice(self, job: Job) -> None:
        """The outbox handler of ``sms.payment_intent``: tell the customer who asks what. An intent
        that ended before its SMS went out gets none."""
        sms = self.providers.sms
        if sms is None:
            return
        async with autocommit(self.engine).connect() as conn:
            found = await istore.get_intent(conn, str(job.payload.get("intent", "")))
        if found is None:
            raise PermanentJobError("the job names no known payment intent")
        intent, parties, lapsed = found
        if intent.status is not S.PENDING or lapsed or parties.unpayable:
            return
        text = self.write_notice(IntentNotice(
            language=parties.payer_language, payer_phone=parties.payer_phone, payee_name=parties.payee_name,
            payee_phone=parties.payee_phone, amount=intent.amount, description=intent.description, code=intent.code,
            expires_at=intent.expires_at))
        sent = await sms.send(text, [parties.payer_phone])
        if not sent.all_accepted:
            log.warning("payment intent %s: its SMS was not accepted by the SMS provider", intent.public_id)

    # -- steps -------------------------------------------------------------------------------------

    async def _view(self, conn: AsyncConnection, public_id: str) -> IntentView | None:
        found = await istore.get_intent(conn, public_id)
        return IntentView(found[0], found[1], lapsed=found[2]) if found is not None else None

    @staticmethod
    async def _locked(conn: AsyncConnection, public_id: str,
                      may_act: Callable[[PaymentIntent], bool]) -> tuple[PaymentIntent, IntentParties, bool]:
        found = await istore.get_intent(conn, public_id, lock=True)
        if found is None or not may_act(found[0]):
            raise UnknownIntent(f"no payment intent {public_id[:40]!r}")
        return found

    async def _close(self, public_id: str, status: IntentStatus,
                     may_act: Callable[[PaymentIntent], bool]) -> IntentView:
        """Decline or cancel: a pending intent ends ``status``; one that lapsed ends expired instead
        (and that is raised, as `IntentClosed`, once committed)."""
        lapsed_one: PaymentIntent | None = None
        async with self.engine.begin() as conn:
            intent, parties, lapsed = await self._locked(conn, public_id, may_act)
            if intent.status is status:
                return IntentView(intent, parties)
            if intent.status is not S.PENDING:
                raise IntentClosed(intent)
            if not lapsed:
                return IntentView(await self._end(conn, intent, parties, status), parties)
            lapsed_one = await self._end(conn, intent, parties, S.EXPIRED)
        raise IntentClosed(lapsed_one)

    async def _end(self, conn: AsyncConnection, intent: PaymentIntent, parties: IntentParties, status: IntentStatus,
                   payment: Payment | None = None) -> PaymentIntent:
        """End the (locked, pending) intent and queue its event for the creating key's endpoints."""
        try:
            ended = await istore.resolve(conn, intent, status, payment_id=payment.id if payment else None)
        except IntegrityError as exc:
            # The payment already paid another intent: only a replayed payment could, and
            # `payment_key` makes each intent's payments its own. Any other constraint is a bug: raised.
            if "payment_intents_payment_id_key" not in str(exc.orig):
                raise
            raise InvalidRequest("this payment already paid another payment intent") from None
        view = IntentView(ended, parties, payment)
        await enqueue_key_event(conn, ended.api_key_id, f"payment_intent.{status.value}",
                                {"payment_intent": view.json()}, at=ended.resolved_at or datetime.now(UTC))
        return ended
