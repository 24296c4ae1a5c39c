"""C2B: customers paying our M-Pesa paybill from their own phone menu (Lipa na M-Pesa → Pay Bill).

The customer types our paybill number and, as the account number, the phone number of the Sauti
wallet to credit, in any local form (``0712345678``, ``254712345678``, ``+254 712 345 678``): the
number a user is known by, so nobody has to learn an account number. Daraja then sends:

- a **validation** (`C2BReceiver.on_validation`), answered within seconds: accepted when the account
  number names an active Kenyan wallet and the amount is a whole number of shillings within the
  wallet owner's limits at their KYC tier; otherwise rejected with the contract's code (``C2B00012``
  invalid account number, ``C2B00013`` invalid amount), and M-Pesa never takes the money;
- a **confirmation** (`C2BReceiver.on_confirmation`): the money has moved. It is recorded once, keyed
  by its ``TransID`` (a duplicate changes nothing), as a ``deposit`` payment of channel ``api`` (it
  came through the provider's API, not a Sauti screen) with ``provider_ref`` = TransID. Daraja signs
  nothing, so when ``confirm_stk_with_query`` is on (the default) the payment waits in
  ``processing`` while a transaction status query asks M-Pesa whether that TransID exists for that
  amount; the answer credits the wallet from provider collection (or fails the payment, crediting
  nothing). With the setting off the wallet is credited at once.

Confirmations are not retried by Daraja, and validation may have been skipped (it times out to
``Completed``, or it is not enabled), so a confirmation is never refused: money for no wallet of
ours (an unknown or closed account, a number abroad) goes from provider collection to the M-Pesa
suspense account, keyed by TransID, and is listed for an operator in ``provider_events`` (kind
``c2b_confirmation``, ``payload->>'outcome' = 'suspense'``).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments import payment_store as store
from payments.commands import Channel, PaymentKind, mpesa_receipt
from payments.errors import InvalidRequest, PaymentsError
from payments.identities import User, UserStatus, audit, find_user_by_phone
from payments.money import Money
from payments.outbox import enqueue
from payments.payment_settings import BOOKED_BY, JOB_STATUS_QUERY, MPESA, PaymentSettings, ProviderClients
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.providers.daraja import AmountNotPayable, whole_shillings
from payments.providers.daraja_callbacks import C2BPayment, c2b_validation_answer
from payments.references import payment_reference
from payments.resolution import Resolver
from payments.settlement import Settlement, lock_receipt, parked_receipt
from payments.states import PaymentStatus

log = logging.getLogger(__name__)

S = PaymentStatus

INVALID_ACCOUNT = "C2B00012"
INVALID_AMOUNT = "C2B00013"
#: The `provider_events` kind of a recorded confirmation (its summary says what became of it).
CONFIRMATION = "c2b_confirmation"

#: Our STK push deposits credited, or about to be, without an M-Pesa receipt (recovery's STK query
#: names none, `ProviderResults._recover`), for one amount, paid from one number or into one wallet:
#: each one's money is a line on the statement whose receipt we never learnt. Found through the
#: payer's and the recipient number's indexes.
_RECEIPTLESS_PUSHES = sql(
    "SELECT id, public_id, status, provider_ref, recipient_phone, created_at FROM payments "
    "WHERE (payer_user_id = :owner OR recipient_phone = :phone) AND kind = 'deposit' AND provider = :pr "
    "AND provider_ref IS NOT NULL AND provider_refs->>'source' IS NULL AND provider_refs->>'receipt' IS NULL "
    "AND status IN ('processing', 'succeeded') AND amount = :amount AND currency = :currency ORDER BY id")


class C2BReceiver:
    """Validates and books C2B payments to our paybill (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, money: Settlement, settings: PaymentSettings,
                 providers: ProviderClients) -> None:
        self.engine = engine
        self.resolver = resolver
        self.money = money
        self.settings = settings
        self.providers = providers

    async def on_validation(self, paid: C2BPayment) -> dict[str, str]:
        """The answer to a C2B validation: accept, or reject with the contract's code."""
        async with self.engine.connect() as conn:
            owner = await wallet_owner_of(conn, paid.bill_ref_number)
        if owner is None:
            log.info("C2B validation %s rejected: the account number names no wallet", paid.trans_id)
            return c2b_validation_answer(accept=False, rejection_code=INVALID_ACCOUNT)
        try:
            whole_shillings(paid.amount)
            self.settings.limits.check(paid.amount, kyc_tier=owner.kyc_tier,
                                       spent_today=Money.zero(paid.amount.currency))
        except (AmountNotPayable, PaymentsError):
            log.info("C2B validation %s rejected: amount out of range", paid.trans_id)
            return c2b_validation_answer(accept=False, rejection_code=INVALID_AMOUNT)
        return c2b_validation_answer(accept=True)

    async def on_confirmation(self, paid: C2BPayment) -> str:
        """Book a C2B payment once per TransID. Returns ``credited``, ``confirming`` (waiting for the
        status query), ``suspense`` (no wallet: parked for an operator), ``duplicate`` (delivered
        before, or booked by hand from the statement before it came), or ``unbookable`` (an amount
        no ledger transfer can carry: recorded for an operator)."""
        summary: dict[str, Any] = {"amount": paid.amount.minor, "bill_ref": paid.bill_ref_number[:40],
                                   "shortcode": paid.business_shortcode}
        if paid.amount.minor <= 0:
            return await self._unbookable(paid, summary, "the amount is not positive")
        try:
            async with self.engine.begin() as conn:
                # IMPORTANT: recorded first, in the transaction that books it: one booking per TransID.
                if not await store.record_provider_event(conn, MPESA, paid.trans_id, CONFIRMATION,
                                                         {**summary, "outcome": "booked"}):
                    return "duplicate"
                await lock_receipt(conn, paid.trans_id)
                taken = await receipt_taken(conn, paid.trans_id)
                if taken is not None:  # never booked, nor parked, twice
                    await store.note_provider_event(conn, MPESA, paid.trans_id, CONFIRMATION, taken)
                    if taken.get("needs_review"):
                        log.error("C2B payment %s: %s; flagged", paid.trans_id, taken["outcome"])
                    return "duplicate"
                owner = await wallet_owner_of(conn, paid.bill_ref_number)
                if owner is None:
                    name = " ".join(n for n in (paid.first_name, paid.middle_name, paid.last_name) if n)
                    await self.money.park_in_suspense(conn, paid.trans_id, paid.amount, seen={
                        "account": paid.bill_ref_number, "payer": paid.msisdn, "payer_name": name})
                    await store.note_provider_event(conn, MPESA, paid.trans_id, CONFIRMATION,
                                                    {"outcome": "suspense", "needs_review": True})
                    log.warning("C2B payment %s names no wallet: parked in suspense for review", paid.trans_id)
                    return "suspense"
                booked = await self._book(conn, paid, owner)
                if booked == "duplicate":  # an operator booked it from the statement before it came
                    await store.note_provider_event(conn, MPESA, paid.trans_id, CONFIRMATION,
                                                    {"outcome": "booked by hand before"})
                return booked
        except PaymentsError as exc:  # an amount beyond any transfer's limit
            return await self._unbookable(paid, summary, str(exc))

    async def book_missed(self, *, receipt: str, amount: Money, account: str, phone: str, booked_by: str,
                          reason: str, not_pushes: Collection[str] = ()) -> str:
        """An operator books a payment to our paybill whose confirmation never came (reconciliation
        lists it: on the statement, not in Sauti), from the statement's line: its receipt (TransID),
        amount, account number and payer. The wallet is credited only once a transaction status
        query finds that receipt for that amount, whatever ``confirm_stk_with_query`` says: what a
        person typed is checked by M-Pesa. A receipt M-Pesa does not know, or knows for another
        amount, fails the booking, nothing credited, and frees the receipt to be booked again as
        the statement says. Returns ``confirming``, or ``duplicate`` when a payment of ours holds
        the receipt (booked before, or its confirmation came after all; a confirmation coming
        after this booking is a duplicate of it, even one naming no wallet). Refused
        (`InvalidRequest`) when the amount is not whole shillings, the account names no wallet
        (only M-Pesa's own deliveries park money in suspense), or the receipt's confirmation came
        and parked it in suspense (`payments.suspense` credits it).

        Refused too while an STK push deposit of ours for that amount, from that number or into that
        wallet, is credited (or waiting to be) without a receipt: recovery credits a push whose
        callback never came by STK query, which names no receipt, so that push's line on the statement
        looks like a paybill payment nobody booked, and M-Pesa's status query would find it paid to
        our paybill, for its amount, and credit it again. The booking does not know the line's time,
        so such a push counts whenever it was made. ``not_pushes`` names the deposits (public ids or
        references) an operator found on the statement under another receipt (their own lines, by
        their CheckoutRequestIDs): those do not stop it; the audit line keeps them."""
        paid = C2BPayment(transaction_type="Pay Bill", trans_id=mpesa_receipt(receipt), trans_time=datetime.now(UTC),
                          amount=amount, business_shortcode="", bill_ref_number=account.strip(), invoice_number="",
                          org_account_balance=None, third_party_trans_id="", msisdn=phone.strip(), first_name="",
                          middle_name="", last_name="")
        try:
            whole_shillings(paid.amount)
        except AmountNotPayable as exc:
            raise InvalidRequest(f"M-Pesa moves whole shillings above zero, not {paid.amount}") from exc
        async with self.engine.begin() as conn:
            owner = await wallet_owner_of(conn, paid.bill_ref_number)
            if owner is None:
                raise InvalidRequest(f"the account number {paid.bill_ref_number[:40]!r} names no Kenyan wallet: "
                                     "nothing booked")
            await lock_receipt(conn, paid.trans_id)
            if await parked_receipt(conn, paid.trans_id):
                # Its confirmation came, for no wallet: booking it again would credit it twice.
                raise InvalidRequest(f"{paid.trans_id} came in and is parked in suspense: credit it to the wallet "
                                     f"with `sauti suspense credit {paid.trans_id} --to …`; nothing booked")
            # IMPORTANT: any payment of ours holding the receipt, not only a booking's (its provider
            # reference, unique): an STK push's deposit keeps it among its references, and M-Pesa's
            # status query would find it paid to our paybill, for its amount, and credit it again.
            holder = await store.holder_of_receipt(conn, MPESA, paid.trans_id, other_than=0, failed_too=False)
            if holder is not None:
                log.warning("booking %s by hand: payment %s holds that receipt; nothing booked", paid.trans_id, holder)
                return "duplicate"
            excused = await _named_payments(conn, not_pushes)
            pushes = [push for push in await _receiptless_pushes(conn, paid, owner) if push.public_id not in excused]
            if pushes:
                raise InvalidRequest(_maybe_a_push(paid, pushes))
            outcome = await self._book(conn, paid, owner, booked_by=(booked_by, reason[:500]))
            if outcome != "duplicate":
                details: dict[str, Any] = {"amount": paid.amount.minor, "bill_ref": paid.bill_ref_number[:40],
                                           "reason": reason[:500]}
                if excused:
                    details["not_pushes"] = sorted(excused)  # what the operator vouched for, from the statement
                await audit(conn, actor=booked_by, action="c2b.book", subject=paid.trans_id, details=details)
            return outcome

    async def _book(self, conn: AsyncConnection, paid: C2BPayment, owner: User, *,
                    booked_by: tuple[str, str] | None = None) -> str:
        try:
            phone: str | None = parse_msisdn(paid.msisdn, "KE")
        except InvalidPhoneNumber:
            phone = None  # Safaricom may mask or hash the payer's number
        # A booking by hand may be made again after M-Pesa refused one (its receipt freed): its own key.
        key = f"c2b:{paid.trans_id}" if booked_by is None else f"c2b:{paid.trans_id}:by-hand:{secrets.token_hex(4)}"
        new = store.NewPayment(
            payer_user_id=owner.id, idempotency_key=key, request_hash=_hash(paid),
            kind=PaymentKind.DEPOSIT.value, channel=Channel.API.value, amount=paid.amount,
            fee=Money.zero(paid.amount.currency), provider=MPESA, recipient_phone=phone, provider_ref=paid.trans_id)
        try:
            async with conn.begin_nested():
                payment = await store.insert_payment(conn, new, cause="c2b_booked" if booked_by else "c2b_confirmation")
        except IntegrityError:
            # The receipt is another payment's (the unique provider reference): booked by hand before
            # its confirmation came, twice by hand, or both at the same moment. One wins.
            return "duplicate"
        assert payment is not None  # the key is the TransID's (recorded once above) or a fresh one
        refs = {"source": "c2b", "receipt": paid.trans_id, "bill_ref": paid.bill_ref_number[:40]}
        if booked_by is not None:
            refs |= {BOOKED_BY: booked_by[0], "reason": booked_by[1]}
        else:
            await store.note_provider_event(conn, MPESA, paid.trans_id, CONFIRMATION, {}, payment_id=payment.id)
        if booked_by is not None or (self.settings.confirm_stk_with_query and self.providers.daraja is not None):
            # Daraja signs nothing (and a person may mistype): ask M-Pesa whether this TransID
            # exists, for this amount, before crediting. The outbox worker, which reaches Daraja, asks.
            await store.transition(conn, payment, S.PROCESSING, cause="c2b_booked" if booked_by else "c2b_confirmation",
                                   refs=refs)
            await enqueue(conn, JOB_STATUS_QUERY, {"payment": payment.public_id},
                          dedupe_key=f"{JOB_STATUS_QUERY}:{payment.public_id}:c2b")
            return "confirming"
        moved = await self.money.credit_deposit(conn, payment)
        payment = await store.transition(conn, payment, S.SUCCEEDED, cause="c2b_confirmation", refs=refs,
                                         settle_transfer_id=moved.transfer_id)
        await self.resolver.receipts(conn, payment, "payer")
        return "credited"

    async def _unbookable(self, paid: C2BPayment, summary: dict[str, Any], why: str) -> str:
        log.error("C2B payment %s cannot be booked (%s): recorded for an operator", paid.trans_id, why)
        async with self.engine.begin() as conn:
            recorded = await store.record_provider_event(
                conn, MPESA, paid.trans_id, CONFIRMATION,
                {**summary, "outcome": "unbookable", "needs_review": True, "why": why[:200]})
        return "unbookable" if recorded else "duplicate"


async def receipt_taken(conn: AsyncConnection, receipt: str) -> dict[str, Any] | None:
    """What booked this M-Pesa receipt already, as a note for the delivery that names it again (hold
    `lock_receipt` first); None when nothing did. Booked by hand from the statement before its
    confirmation came is a plain duplicate; another payment's receipt (a push's, a payout's) or money
    parked in suspense under it means a forged or replayed delivery: a person looks."""
    if await store.find_by_provider_ref(conn, MPESA, receipt) is not None:
        return {"outcome": "booked by hand before"}
    holder = await store.holder_of_receipt(conn, MPESA, receipt, other_than=0)
    if holder is not None:
        return {"outcome": f"receipt held by {holder}", "needs_review": True}
    if await parked_receipt(conn, receipt):
        return {"outcome": "receipt parked in suspense already", "needs_review": True}
    return None


async def _receiptless_pushes(conn: AsyncConnection, paid: C2BPayment, owner: User) -> list[Row[Any]]:
    """Our STK push deposits whose statement line could be ``paid``'s (`_RECEIPTLESS_PUSHES`): of its
    amount, paid from its payer's number or into the wallet it names."""
    try:
        phone: str | None = parse_msisdn(paid.msisdn, "KE")
    except InvalidPhoneNumber:
        phone = None  # masked or hashed on the statement: the wallet alone says
    found = await conn.execute(_RECEIPTLESS_PUSHES, {
        "owner": owner.id, "phone": phone, "pr": MPESA, "amount": paid.amount.minor,
        "currency": paid.amount.currency.value})
    return list(found)


async def _named_payments(conn: AsyncConnection, names: Collection[str]) -> set[str]:
    """The public ids of the payments an operator named (public ids or references); refused when one
    names none."""
    found: set[str] = set()
    for name in names:
        payment = await store.find_payment(conn, name.strip())
        if payment is None:
            raise InvalidRequest(f"no payment {name.strip()[:40]!r}: nothing booked")
        found.add(payment.public_id)
    return found


def _maybe_a_push(paid: C2BPayment, pushes: list[Row[Any]]) -> str:
    """Why a booking by hand is refused: the receipt may be one of these pushes' (see `book_missed`)."""
    described = "; ".join(
        f"deposit {payment_reference(push.id)} ({paid.amount} from {push.recipient_phone or 'unknown'}, "
        f"{push.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, STK push {push.provider_ref}, "
        + ("credited by an STK query, which names no receipt)" if push.status == PaymentStatus.SUCCEEDED.value
           else "still waiting for M-Pesa's answer)") for push in pushes)
    flags = " ".join(f"--not-push {payment_reference(push.id)}" for push in pushes)
    return (f"{paid.trans_id} may be the M-Pesa receipt of {described}: booking it would credit that money twice; "
            "nothing booked. Find the push's own line on the statement by its CheckoutRequestID: if it is this one, "
            "its money is the deposit's; if it is another receipt, book this one again with " + flags + ".")


async def wallet_owner_of(conn: AsyncConnection, number: str) -> User | None:
    """The active Kenyan user whose phone number ``number`` is, in any local form (a C2B account
    number, an STK payer's number)."""
    try:
        phone = parse_msisdn(number, "KE")
    except InvalidPhoneNumber:
        return None
    if not phone.startswith("+254"):
        return None  # our paybill takes shillings for Kenyan wallets only
    user = await find_user_by_phone(conn, phone)
    if user is None or user.status is UserStatus.CLOSED:
        return None
    return user


def _hash(paid: C2BPayment) -> str:
    return hashlib.sha256(f"c2b:{paid.trans_id}:{paid.amount.minor}".encode()).hexdigest()
