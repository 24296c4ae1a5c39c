"""The operator API, ``/v1/ops/…``: what an operator sees and does, as JSON, for staff keys only
(``sauti apikey create --operator``, or ``--support`` for one that reads only; any other key is a
403, and a staff key is a 403 on the payments API). The dashboard (`gateway.ops_dashboard`) shows
the same to a person in a browser.

- ``GET /v1/ops/payments?status=&kind=&provider=&channel=&phone=&review=true&limit=&before=``:
  payments, newest first, with ``next_before`` for the next page;
- ``GET /v1/ops/payments/{id or reference}``: the whole record (`payments.payment_records`):
  transitions, ledger transfers and postings, provider callbacks, outbox jobs, audit entries, refunds;
- ``GET /v1/ops/wallets/{phone}?currency=&limit=&before=``: a customer as support needs them: who
  (name, language, roles, KYC tier, whether their PIN is set and their account locked) and their
  wallet (balance, available, a page of its statement, each line naming its payment);
- ``GET /v1/ops/review``: what waits for a person, the longest waiting first: open payments for a
  verdict, final ones a provider's late word contradicts (``final``), and STK pushes nobody
  recorded (``subject`` ``stk_orphan``, named by their CheckoutRequestID), `payments.review.flagged`;
- ``POST /v1/ops/payments/{id}/decide`` ``{"outcome": "succeeded"|"failed", "receipt", "reason"}``:
  a verdict on a flagged payment, from the provider's statement (`payments.review`);
- ``POST /v1/ops/payments/{id}/refund`` ``{"reason", "receipt"?, "provider_reversed"?}``
  (``Idempotency-Key`` optional): refund it whole (`payments.refunds`); an M-Pesa payout only with
  ``"provider_reversed": true``, once its statement shows M-Pesa gave the money back; 201 new, 200
  the same again;
- ``GET /v1/ops/outbox``: how many jobs are pending, running and parked, and the newest parked
  ones, with why they were parked;
- ``POST /v1/ops/outbox/{job_id}/retry``: run a parked job again;
- ``GET /v1/ops/suspense?state=open|all&limit=&before=``: M-Pesa money parked in suspense (paid to
  our paybill for no wallet of ours), newest first, with how many wait and their sum;
  ``GET /v1/ops/suspense/{receipt}``: one, and what became of it;
- ``POST /v1/ops/suspense/{receipt}/credit`` ``{"phone", "reason"}``: credit it to the wallet it was
  meant for, as a deposit of its own (with that payment, processing until M-Pesa confirms the
  receipt); ``POST
  /v1/ops/suspense/{receipt}/return`` ``{"reason", "reversal"?}``: record that it was reversed to
  its payer at M-Pesa (`payments.suspense`). Each once: 201 new, 200 the same again (the receipt is
  the key), ``409 already_released`` when it went the other way;
- ``POST /v1/ops/reconciliations`` ``{"from", "to"?, "provider"?, "grace_minutes"?,
  "mpesa_statement_csv"?}``: reconcile a period (up to 31 days) against the providers' statements,
  M-Pesa's as uploaded CSV text (`gateway.reconciliation`); the report, and which statements were
  left out and why. It only reads: support keys may run it.

Every action is recorded in the operator key's name (`payments.api_keys.ApiKey.actor`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from gateway import ops_actions
from gateway.api_auth import authenticated, ensure_key_hasher
from gateway.api_requests import ApiError, currency_param, int_param, json_body, only
from gateway.api_views import event_json, payment_json, wallet_json
from gateway.keys import DB_ENGINE, SETTINGS
from payments import outbox, review, suspense
from payments.accounts import WalletStatement, wallet_statement
from payments.api_keys import ApiKey
from payments.errors import InvalidRequest
from payments.identities import User, find_user_by_phone
from payments.money import Money
from payments.outbox import Job
from payments.payment_json import amounts, iso
from payments.payment_records import Listed, PaymentFilter, PaymentRecord, search_payments
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.review_flags import review_reason
from payments.suspense import Parked

PATH = "/v1/ops"
#: The most a list answers at once (payments, parked jobs, the review queue).
MAX_LIMIT = 200

staff_reads = partial(authenticated, ops="read")
operator_acts = partial(authenticated, ops="act")


def add_ops_api_routes(app: web.Application) -> None:
    """Mount the routes on ``app``, which holds (or will hold, once started) `SETTINGS`, `DB_ENGINE`
    and `PAYMENTS`."""
    ensure_key_hasher(app)
    app.router.add_get(PATH + "/payments", staff_reads(list_payments))
    app.router.add_get(PATH + "/payments/{payment}", staff_reads(read_payment_record))
    app.router.add_post(PATH + "/payments/{payment}/decide", operator_acts(decide_payment))
    app.router.add_post(PATH + "/payments/{payment}/refund", operator_acts(refund_payment))
    app.router.add_get(PATH + "/wallets/{phone}", staff_reads(read_wallet))
    app.router.add_get(PATH + "/review", staff_reads(read_review_queue))
    app.router.add_get(PATH + "/outbox", staff_reads(read_outbox))
    app.router.add_post(PATH + "/outbox/{job_id}/retry", operator_acts(retry_outbox_job))
    app.router.add_get(PATH + "/suspense", staff_reads(list_parked))
    app.router.add_get(PATH + "/suspense/{receipt}", staff_reads(read_parked))
    app.router.add_post(PATH + "/suspense/{receipt}/credit", operator_acts(credit_parked))
    app.router.add_post(PATH + "/suspense/{receipt}/return", operator_acts(return_parked))
    app.router.add_post(PATH + "/reconciliations", staff_reads(reconcile_period))


# -- what an operator reads ------------------------------------------------------------------------


def listed_json(item: Listed) -> dict[str, Any]:
    return payment_json(item.payment, item.payer_phone) | {"needs_review": review_reason(item.payment)}


def money_json(name: str, money: Money) -> dict[str, Any]:
    return amounts(name, money) | {"currency": money.currency.value}


def job_json(job: Job) -> dict[str, Any]:
    return {"id": job.id, "kind": job.kind, "status": job.status, "attempts": job.attempts,
            "max_attempts": job.max_attempts, "run_after": iso(job.run_after), "last_error": job.last_error,
            "created_at": iso(job.created_at)}


def record_json(record: PaymentRecord) -> dict[str, Any]:
    """A payment's record as the operator API answers it: the payment as the payments API shows it,
    and what only operators see."""
    return payment_json(record.payment, record.payer_phone) | {
        "needs_review": record.needs_review,
        "idempotency_key": record.payment.idempotency_key,
        "refund_of": record.refund_of.public_id if record.refund_of else None,
        "refunds": [{"public_id": r.public_id, "reference": r.reference, "status": r.status.value}
                    for r in record.refunds],
        "events": [event_json(e) | {"details": dict(e.details)} for e in record.events],
        "transfers": [{"id": t.id, "kind": t.kind, "key": t.idempotency_key, "reverses": t.reverses_transfer_id,
                       "created_at": iso(t.created_at),
                       "postings": [{"account": p.account_code, **money_json("amount", p.amount),
                                     **amounts("balance_after", p.balance_after)} for p in t.postings]}
                      for t in record.transfers],
        "callbacks": [{"provider": c.provider, "kind": c.kind, "event_key": c.event_key,
                       "received_at": iso(c.received_at), "payload": c.payload} for c in record.callbacks],
        "jobs": [job_json(j) for j in record.jobs],
        "audit": [{"at": iso(a.at), "actor": a.actor, "action": a.action, "details": a.details}
                  for a in record.audit],
    }


def payment_filter(query) -> PaymentFilter:
    """The filter a query string asks for (the API's and the dashboard's): empty values are "any"."""
    review_text = query.get("review", "")
    if review_text not in ("", "true"):
        raise ApiError(400, "invalid_review", "review is true (flagged payments only), or left out (any).")
    return PaymentFilter(**{name: query.get(name) or None for name in ("status", "kind", "provider", "channel",
                                                                      "phone")},
                         needs_review=review_text == "true")


async def list_payments(request: web.Request, caller: ApiKey) -> web.Response:
    query = request.query
    only(query, {"status", "kind", "provider", "channel", "phone", "review", "limit", "before"},
         where="query parameter")
    limit = int_param(query, "limit", default=50, low=1, high=MAX_LIMIT)
    before = int_param(query, "before", default=None, low=1, high=2**63 - 1)
    wanted = payment_filter(query)
    async with request.app[DB_ENGINE].connect() as conn:
        found = await search_payments(conn, wanted, limit=limit, before=before)
    return web.json_response({
        "payments": [listed_json(item) for item in found],
        # More may follow: pass this as ``before`` for the next (older) page.
        "next_before": found[-1].payment.id if len(found) == limit else None,
    })


async def read_payment_record(request: web.Request, caller: ApiKey) -> web.Response:
    record = await ops_actions.find_record(request.app, request.match_info["payment"])
    return web.json_response(record_json(record))


def user_json(user: User) -> dict[str, Any]:
    return {"phone": user.phone, "name": user.display_name or None, "language": user.language.value,
            "roles": sorted(role.value for role in user.roles), "kyc_tier": user.kyc_tier,
            "status": user.status.value, "pin_set": user.has_pin, "locked_until": iso(user.locked_until)}


async def customer(conn, phone_text: str, query, *, most: int) -> tuple[User, WalletStatement, int]:
    """The user a phone names (staff may see anyone), their wallet in the currency asked
    (the number's country's by default), and the page size: for the API and the dashboard."""
    only(query, {"currency", "limit", "before"}, where="query parameter")
    limit = int_param(query, "limit", default=min(20, most), low=1, high=most)
    before = int_param(query, "before", default=None, low=1, high=2**63 - 1)
    try:
        user = await find_user_by_phone(conn, parse_msisdn(phone_text))
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_phone", str(exc)) from None
    if user is None:
        raise ApiError(404, "wallet_not_found", "No Sauti wallet for this number.")
    wallet = await wallet_statement(conn, user.id, currency_param(query.get("currency"), user.phone),
                                    limit=limit, before_posting_id=before)
    return user, wallet, limit


async def read_wallet(request: web.Request, caller: ApiKey) -> web.Response:
    async with request.app[DB_ENGINE].connect() as conn:
        user, wallet, limit = await customer(conn, request.match_info["phone"], request.query,
                                             most=request.app[SETTINGS].api.history_max_limit)
    return web.json_response({"user": user_json(user), "wallet": wallet_json(wallet, limit)})


async def read_review_queue(request: web.Request, caller: ApiKey) -> web.Response:
    only(request.query, {"limit"}, where="query parameter")
    limit = int_param(request.query, "limit", default=100, low=1, high=MAX_LIMIT)
    queue = await review.flagged(request.app[DB_ENGINE], limit=limit)
    return web.json_response({"payments": [
        {"public_id": f.public_id, "reference": f.reference, "kind": f.kind, "status": f.status,
         **money_json("amount", f.amount), "provider": f.provider, "reason": f.reason,
         "open_since": iso(f.open_since), "flagged_at": iso(f.flagged_at),
         # `payments.review.Flagged`: "payment" (``final``: contradicted, no verdict) or "stk_orphan".
         "subject": f.subject, "final": f.final} for f in queue]})


async def read_outbox(request: web.Request, caller: ApiKey) -> web.Response:
    only(request.query, {"limit", "before"}, where="query parameter")
    limit = int_param(request.query, "limit", default=50, low=1, high=MAX_LIMIT)
    before = int_param(request.query, "before", default=None, low=1, high=2**63 - 1)
    async with request.app[DB_ENGINE].connect() as conn:
        counts = await outbox.count_open(conn)
        parked = await outbox.jobs_in_status(conn, "parked", limit=limit, before=before,
                                             default_max_attempts=request.app[SETTINGS].outbox.max_attempts)
    return web.json_response({"counts": counts, "parked": [job_json(j) | {"payload": dict(j.payload)}
                                                           for j in parked],
                              "next_before": parked[-1].id if len(parked) == limit else None})


# -- what an operator does -------------------------------------------------------------------------


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"invalid_{name}", f"{name} is a string.")
    return value


async def decide_payment(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"outcome", "receipt", "reason"})
    decided = await ops_actions.decide(request.app, caller, request.match_info["payment"],
                                       str(body.get("outcome", "")), reason=_optional_text(body, "reason") or "",
                                       receipt=_optional_text(body, "receipt"))
    return web.json_response(await _payment_answer(request, decided.public_id))


async def refund_payment(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"reason", "receipt", "provider_reversed"})
    reversed_ = body.get("provider_reversed", False)
    if not isinstance(reversed_, bool):
        raise ApiError(400, "invalid_provider_reversed", "provider_reversed is true or false.")
    key = request.headers.get("Idempotency-Key", "").strip() or None
    if key is not None and (len(key) > 100 or not key.isprintable()):
        raise ApiError(400, "invalid_idempotency_key", "An Idempotency-Key is 1 to 100 printable characters.")
    done = await ops_actions.refund(request.app, caller, request.match_info["payment"],
                                    reason=_optional_text(body, "reason") or "",
                                    receipt=_optional_text(body, "receipt"), idempotency_key=key,
                                    provider_reversed=reversed_)
    answer = await _payment_answer(request, done.refund.public_id)
    return web.json_response(answer, status=201 if done.created else 200)


async def _payment_answer(request: web.Request, public_id: str) -> dict[str, Any]:
    return record_json(await ops_actions.find_record(request.app, public_id))


async def retry_outbox_job(request: web.Request, caller: ApiKey) -> web.Response:
    text_id = request.match_info["job_id"]
    if not (text_id.isascii() and text_id.isdigit() and len(text_id) <= 18) \
            or await outbox.get_job(request.app[DB_ENGINE], int(text_id)) is None:
        raise ApiError(404, "job_not_found", "No outbox job has this id.")
    if not await ops_actions.retry_job(request.app, caller, int(text_id)):
        raise ApiError(409, "job_not_parked", f"Outbox job {text_id} is not parked: only a parked job is retried.")
    return web.json_response({"id": int(text_id), "status": "pending"})


# -- money parked in suspense ----------------------------------------------------------------------


def parked_json(item: Parked) -> dict[str, Any]:
    return {"receipt": item.receipt, **money_json("amount", item.amount), "parked_at": iso(item.parked_at),
            "source": item.source, "account": item.account, "payer": item.payer, "payer_name": item.payer_name,
            "state": item.state, "released_at": iso(item.released_at), "payment": item.payment,
            "released_by": item.released_by, "reason": item.reason, "reversal": item.reversal}


def parked_query(query) -> tuple[bool, int, int | None]:
    """Which parked amounts a query asks for (the API's and the dashboard's): open ones, or all."""
    only(query, {"state", "limit", "before"}, where="query parameter")
    state = query.get("state", "open")
    if state not in ("open", "all"):
        raise ApiError(400, "invalid_state", "state is open (waiting for a person, the default) or all.")
    return (state == "open", int_param(query, "limit", default=50, low=1, high=MAX_LIMIT),
            int_param(query, "before", default=None, low=1, high=2**63 - 1))


async def list_parked(request: web.Request, caller: ApiKey) -> web.Response:
    open_only, limit, before = parked_query(request.query)
    async with request.app[DB_ENGINE].connect() as conn:
        found = await suspense.parked_money(conn, open_only=open_only, limit=limit, before=before)
        waiting, total = await suspense.open_total(conn)
    return web.json_response({
        "open": {"count": waiting, **(money_json("total", total) if total else {"total": None})},
        "parked": [parked_json(item) for _, item in found],
        "next_before": found[-1][0] if len(found) == limit else None})


async def _parked_or_404(request: web.Request, receipt: str) -> Parked:
    try:
        receipt = suspense.receipt_typed(receipt)
    except InvalidRequest:
        receipt = ""
    async with request.app[DB_ENGINE].connect() as conn:
        found = await suspense.parked(conn, receipt) if receipt else None
    if found is None:
        raise ApiError(404, "not_in_suspense", "No money is parked in suspense under this receipt.")
    return found


async def read_parked(request: web.Request, caller: ApiKey) -> web.Response:
    return web.json_response(parked_json(await _parked_or_404(request, request.match_info["receipt"])))


async def credit_parked(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"phone", "reason"})
    receipt = request.match_info["receipt"]
    await _parked_or_404(request, receipt)
    payment, created = await ops_actions.credit_parked(request.app, caller, receipt,
                                                       _optional_text(body, "phone") or "",
                                                       reason=_optional_text(body, "reason") or "")
    return web.json_response({"parked": parked_json(await _parked_or_404(request, receipt)),
                              "payment": await _payment_answer(request, payment.public_id)},
                             status=201 if created else 200)


async def return_parked(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"reason", "reversal"})
    receipt = request.match_info["receipt"]
    await _parked_or_404(request, receipt)
    done, created = await ops_actions.return_parked(request.app, caller, receipt,
                                                    reason=_optional_text(body, "reason") or "",
                                                    reversal=_optional_text(body, "reversal"))
    return web.json_response({"parked": parked_json(done)}, status=201 if created else 200)


# -- reconciliation --------------------------------------------------------------------------------


async def reconcile_period(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"from", "to", "provider", "grace_minutes", "mpesa_statement_csv"})
    grace = body.get("grace_minutes", 60)
    if isinstance(grace, bool) or not isinstance(grace, int):
        raise ApiError(400, "invalid_grace_minutes", "grace_minutes is a whole number of minutes.")
    report, skipped = await ops_actions.reconcile_period(
        request.app, _optional_text(body, "from") or "", _optional_text(body, "to"),
        provider=_optional_text(body, "provider"), mpesa_csv=_optional_text(body, "mpesa_statement_csv"),
        grace_minutes=grace)
    return web.json_response({"ok": report.ok, "skipped": skipped, "report": report.to_json()})
