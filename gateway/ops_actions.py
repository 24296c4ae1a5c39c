"""What an operator does through the operator API (`gateway.ops_api`) and the dashboard
(`gateway.ops_dashboard`), said once for both: find a payment and its record, give a verdict on a
flagged one, refund one, run a parked outbox job again, credit or return money parked in suspense,
and reconcile a period against the providers' statements. Each acts as the CLI's commands do
(`gateway.commands.payment_operator`, `sauti outbox retry`, `sauti suspense`, `sauti reconcile`),
signed with the operator key (`ApiKey.actor`), which the payment's history and the audit log keep."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.keys import DB_ENGINE, PAYMENTS, SETTINGS
from gateway.payments_resources import PAYMENTS_RUNTIME
from gateway.reconciliation import MAX_PERIOD, CannotReconcile, StatementUnavailable, moment, statement_sources
from payments import outbox
from payments import payment_store as store
from payments.api_keys import ApiKey
from payments.commands import Refund
from payments.errors import InvalidRequest
from payments.identities import audit
from payments.payment_records import PaymentRecord, payment_record
from payments.payment_store import Payment
from payments.provider_statements import MpesaCsvUpload
from payments.providers.errors import ProviderError
from payments.reconcile import reconcile
from payments.reconcile_report import ReconcileReport
from payments.refunds import rests_on_operator
from payments.review import OperatorVerdict, UnknownPayment
from payments.suspense import Parked


async def find_record(app: web.Application, id_or_reference: str) -> PaymentRecord:
    """The whole record of the payment named (public id or short reference); `UnknownPayment` if none."""
    async with app[DB_ENGINE].connect() as conn:
        payment = await store.find_payment(conn, id_or_reference.strip()[:64])
        if payment is None:
            raise UnknownPayment(f"no payment has the reference or id {id_or_reference.strip()[:40]!r}")
        return await payment_record(conn, payment, default_max_attempts=app[SETTINGS].outbox.max_attempts)


async def decide(app: web.Application, key: ApiKey, id_or_reference: str, outcome: str, *,
                 reason: str, receipt: str | None) -> Payment:
    """Settle (``outcome`` "succeeded", with the provider's receipt) or give back ("failed") a
    payment flagged for review (`payments.review`)."""
    if outcome not in ("succeeded", "failed"):
        raise InvalidRequest('say what the statement shows: outcome "succeeded" (with its receipt) or "failed"')
    verdict = OperatorVerdict(id_or_reference, outcome == "succeeded", reason, key.actor, receipt)
    return await app[PAYMENTS].decide(verdict)


@dataclass(frozen=True, slots=True)
class OperatorRefund:
    original: Payment
    refund: Payment
    #: False when the same request had already made it (a retry, a second click): nothing new happened.
    created: bool


class PayoutNotReversed(InvalidRequest):
    code = "payout_not_reversed"


async def refund(app: web.Application, key: ApiKey, id_or_reference: str, *, reason: str,
                 receipt: str | None = None, idempotency_key: str | None = None,
                 provider_reversed: bool = False) -> OperatorRefund:
    """Refund the whole payment named (`payments.refunds`); an M-Pesa payout only with
    ``provider_reversed`` (`payments.refunds.rests_on_operator`). Without an ``idempotency_key``, one per
    payment and try (the CLI's own): asking again while a refund is pending or done gives that
    refund back, and after a refund that failed (the payee had spent the money, say) asking again
    tries anew. A key given is kept apart from those (``operator:key:…``)."""
    payments = app[PAYMENTS]
    original = await payments.find(id_or_reference.strip()[:64])
    if rests_on_operator(original) and not provider_reversed:
        raise PayoutNotReversed("an M-Pesa payout is refunded only once M-Pesa has reversed it: check the M-Pesa "
                                "statement, then confirm that it was reversed")
    async with app[DB_ENGINE].connect() as conn:
        failed = sum(1 for r in await store.refunds_of(conn, original.id) if r.status.value == "failed")
        key_text = (f"operator:key:{idempotency_key}" if idempotency_key
                    else f"operator:{original.public_id}" + (f":{failed}" if failed else ""))
        command = Refund(key_text, original.public_id, reason.strip() if isinstance(reason, str) else "",
                         requested_by=key.actor, receipt=(receipt or "").strip() or None)
        existing = await store.find_by_key(conn, original.payer_user_id, command.stored_key)
    made = await payments.handle(command)
    return OperatorRefund(original, made, existing is None)


async def retry_job(app: web.Application, key: ApiKey, job_id: int) -> bool:
    """Run a parked outbox job again, with a fresh set of attempts, audited; False if it is not parked."""
    return await retry_outbox_job(app[DB_ENGINE], job_id, key.actor)


async def retry_outbox_job(engine: AsyncEngine, job_id: int, actor: str, reason: str = "") -> bool:
    """An operator runs a parked outbox job again (the API, `sauti outbox retry`): the job and its
    audit line (``outbox.retry``) in one transaction, both or neither. False if it is not parked."""
    async with engine.begin() as conn:
        if not await outbox.retry_parked_in(conn, job_id):
            return False
        await audit(conn, actor=actor, action="outbox.retry", subject=f"outbox_job:{job_id}",
                    details={"reason": reason} if reason else None)
    return True


async def park_outbox_job(engine: AsyncEngine, job_id: int, actor: str, reason: str) -> bool:
    """An operator stops a pending outbox job (`sauti outbox park`): parked, and audited
    (``outbox.park``), in one transaction. False if it is neither pending nor left by a dead worker;
    `outbox.JobRunning` while a worker runs it."""
    async with engine.begin() as conn:
        if not await outbox.park_in(conn, job_id, f"parked by an operator: {reason}"):
            return False
        await audit(conn, actor=actor, action="outbox.park", subject=f"outbox_job:{job_id}",
                    details={"reason": reason})
    return True


async def credit_parked(app: web.Application, key: ApiKey, receipt: str, phone: str, *,
                        reason: str) -> tuple[Payment, bool]:
    """Credit the money parked in suspense under ``receipt`` to the wallet of ``phone``
    (`payments.suspense`): a deposit of its own, signed with the operator key; and whether it is
    new (asking again for the same wallet gives the same deposit)."""
    return await app[PAYMENTS].suspense.credit(receipt, phone, reason=reason, by=key.actor)


async def return_parked(app: web.Application, key: ApiKey, receipt: str, *, reason: str,
                        reversal: str | None = None) -> tuple[Parked, bool]:
    """Record that the money parked under ``receipt`` was reversed to its payer at M-Pesa; and
    whether this recorded it (asking again changes nothing)."""
    return await app[PAYMENTS].suspense.mark_returned(receipt, reason=reason, by=key.actor, reversal=reversal)


#: A NUL or half a surrogate pair: in no statement, and unfit for a query's parameters.
_UNFIT = re.compile(r"[\x00\ud800-\udfff]")


async def reconcile_period(app: web.Application, start: str, end: str | None, *, provider: str | None = None,
                           mpesa_csv: str | None = None, mpesa_name: str = "uploaded",
                           grace_minutes: int = 60) -> tuple[ReconcileReport, list[str]]:
    """Reconcile ``[start, end)`` (ISO 8601; ``end`` by default now; at most `MAX_PERIOD`) against the
    providers' statements (`gateway.reconciliation`); ``mpesa_csv``: an M-Pesa statement's text.
    Returns the report (it only reads) and the statements left out, with why."""
    begins, ends = moment(start), moment(end) if end else datetime.now(UTC)
    if not begins < ends <= begins + MAX_PERIOD:
        raise InvalidRequest(f"the period must end after it starts, within {MAX_PERIOD.days} days "
                             "(`sauti reconcile` takes longer ones)")
    if not 0 <= grace_minutes <= 7 * 24 * 60:
        raise InvalidRequest("grace_minutes is 0 to 10080 (a week)")
    if mpesa_csv is not None and _UNFIT.search(mpesa_csv):
        raise InvalidRequest("the M-Pesa statement holds a NUL or half a surrogate pair: not a statement")
    given = MpesaCsvUpload(mpesa_csv, mpesa_name[:80]) if mpesa_csv and mpesa_csv.strip() else None
    sources, skipped = statement_sources(app.get(PAYMENTS_RUNTIME), provider, given,
                                         mpesa_how="upload it with the period")
    if not sources or (provider is not None and skipped):
        raise CannotReconcile(skipped[0] if skipped else "no provider statement to reconcile against")
    try:
        report = await reconcile(app[DB_ENGINE], sources, begins, ends, grace=timedelta(minutes=grace_minutes))
    except ProviderError as exc:
        raise StatementUnavailable(f"a statement could not be read: {exc}") from None
    return report, skipped
