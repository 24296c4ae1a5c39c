"""The operator dashboard, ``/ops``: server-rendered pages (Jinja2, escaped) for a person with an
operator key (``sauti apikey create --operator``), showing what the operator API (`gateway.ops_api`)
answers and doing what it does, through the same `gateway.ops_actions`.

- ``/ops/sign-in``: paste an operator's or support key (the form carries a token matching a cookie
  of its own, so no other site can sign a browser in); a session (`payments.operator_sessions`) is
  opened and its token set as an HttpOnly, SameSite=Strict cookie on ``/ops`` (Secure over HTTPS).
  ``POST /ops/sign-out`` ends it. A support key sees everything and can change nothing.
- ``/ops``: payments, newest first, filtered (status, kind, provider, channel, a phone, flagged for
  review) and paged; how many wait for review; the outbox's counts.
- ``/ops/payments/{id or reference}``: the whole record, with a refund form and, for a flagged
  payment, the verdict form; ``/ops/find?q=`` opens one by what a person typed.
- ``/ops/wallets/{phone}``: a customer (name, roles, KYC tier, PIN set, locked) and their wallet's
  balance and statement, each line linked to its payment.
- ``/ops/outbox``: parked jobs, each with why and a button to run it again.
- ``/ops/suspense``: M-Pesa money parked in suspense (paid to us for no wallet), each waiting one
  with a form to credit it to a wallet and one to record it as reversed to its payer.
- ``/ops/reconcile``: reconcile a period against the providers' statements (an M-Pesa statement
  uploaded as CSV), the report shown section by section, linked to payments and to suspense.

Every form carries the session's CSRF token and every action checks it; pages are sent with a strict
Content-Security-Policy (no script at all), ``no-store`` and ``frame-ancestors 'none'``. Without a
session a page redirects to sign-in, and an action is refused. Domain refusals (not refundable, no
receipt…) are shown on the page they came from, never as a traceback.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from db.schema import PAYMENT_CHANNELS, PAYMENT_KINDS, PAYMENT_PROVIDERS, PAYMENT_STATUSES
from gateway import ops_actions
from gateway.api_auth import ensure_key_hasher
from gateway.api_requests import UNREADABLE_FORM, ApiError
from gateway.errors import DASHBOARD_PATH, status_for
from gateway.keys import API_KEY_HASHER, DB_ENGINE, SETTINGS
from gateway.ops_api import customer, parked_query, payment_filter
from gateway.reconciliation import MAX_PERIOD, PROVIDERS
from payments import outbox, review, suspense
from payments.api_keys import verify_api_key
from payments.errors import InvalidRequest, PaymentsError
from payments.money import Currency, Money
from payments.operator_sessions import OperatorSession, close_session, find_session, open_session
from payments.payment_records import search_payments
from payments.payment_store import Payment
from payments.reconcile_report import PROBLEMS, TITLES, ReconcileReport
from payments.refunds import refusal, rests_on_operator
from payments.review_flags import review_reason

PATH = DASHBOARD_PATH
COOKIE = "sauti_ops"
SIGN_IN_COOKIE = "sauti_ops_sign_in"
PAGE_SIZE = 50
OPS_TEMPLATES = web.AppKey("ops_templates", jinja2.Environment)
#: No script, nothing from elsewhere; forms post only here; never inside another site's frame.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

#: What an action's redirect may announce (``?done=``): fixed words, never text from the link itself.
_NOTICES = {
    "refunded": "Refunded: the money is back with the payer.",
    "refund_pending": "Refund asked of the provider; its answer comes by callback.",
    "refund_failed": "The refund was refused: see its error below.",
    "decided": "Verdict recorded.",
    "credited": "M-Pesa is asked to confirm the receipt: the wallet is credited when it does, and its owner "
                "gets an SMS.",
    "returned": "Recorded as returned to the payer.",
}

Page = Callable[[web.Request, OperatorSession], Awaitable[web.StreamResponse]]


def add_ops_dashboard_routes(app: web.Application) -> None:
    """Mount the dashboard on ``app``, which holds (or will hold, once started) `SETTINGS`,
    `DB_ENGINE` and `PAYMENTS`."""
    ensure_key_hasher(app)
    app[OPS_TEMPLATES] = templates()
    app.router.add_get(PATH, signed_in(overview_page))
    app.router.add_get(PATH + "/", signed_in(overview_page))
    app.router.add_get(PATH + "/sign-in", sign_in_page)
    app.router.add_post(PATH + "/sign-in", sign_in)
    app.router.add_post(PATH + "/sign-out", signed_in(sign_out, action=True))
    app.router.add_get(PATH + "/find", signed_in(find_page))
    app.router.add_get(PATH + "/payments/{payment}", signed_in(payment_page))
    app.router.add_post(PATH + "/payments/{payment}/refund", signed_in(refund_action, action=True, acts=True))
    app.router.add_post(PATH + "/payments/{payment}/decide", signed_in(decide_action, action=True, acts=True))
    app.router.add_get(PATH + "/wallets/{phone}", signed_in(wallet_page))
    app.router.add_get(PATH + "/outbox", signed_in(outbox_page))
    app.router.add_post(PATH + "/outbox/{job_id}/retry", signed_in(retry_action, action=True, acts=True))
    app.router.add_get(PATH + "/suspense", signed_in(suspense_page))
    app.router.add_post(PATH + "/suspense/{receipt}/credit", signed_in(credit_parked_action, action=True, acts=True))
    app.router.add_post(PATH + "/suspense/{receipt}/return", signed_in(return_parked_action, action=True, acts=True))
    app.router.add_get(PATH + "/reconcile", signed_in(reconcile_page))
    # Reconciling only reads: support keys may run it too (the form still needs the session's token).
    app.router.add_post(PATH + "/reconcile", signed_in(reconcile_action, action=True))
    app.router.add_get(PATH + "/static/ops.css", stylesheet)


def templates() -> jinja2.Environment:
    """The dashboard's templates (``gateway/templates/ops``), escaping everything they show."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("gateway", "templates/ops"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["money"] = lambda m: m.format() if isinstance(m, Money) else ""
    # A value from outside (a receipt a delivery brought) as one path segment: never "/" or "..".
    env.filters["path_segment"] = lambda text: quote(str(text), safe="").replace(".", "%2E")
    env.filters["when"] = lambda t: f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if isinstance(t, datetime) else ""
    env.globals.update(statuses=PAYMENT_STATUSES, kinds=PAYMENT_KINDS, providers=PAYMENT_PROVIDERS,
                       channels=PAYMENT_CHANNELS, path=PATH, review_reason=review_reason)
    return env


def render(request: web.Request, name: str, *, status: int = 200, session: OperatorSession | None = None,
           **context: Any) -> web.Response:
    body = request.app[OPS_TEMPLATES].get_template(name).render(session=session, **context)
    return web.Response(text=body, content_type="text/html", status=status, headers=_HEADERS)


def _see(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_HEADERS})


# -- signing in and out ----------------------------------------------------------------------------


async def _session(request: web.Request) -> OperatorSession | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    async with request.app[DB_ENGINE].connect() as conn:
        return await find_session(conn, token)


def signed_in(page: Page, *, action: bool = False,
              acts: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Run ``page`` for a signed-in operator; otherwise a page goes to sign-in and an action
    (``action``, a POST) is refused. An action must carry the session's CSRF token, and one that
    moves money or jobs (``acts``) an operator's key, not a support key."""

    async def run(request: web.Request) -> web.StreamResponse:
        session = await _session(request)
        if session is None:
            if action:
                return render(request, "message.html", status=403, title="Signed out",
                              message="Your session has ended. Sign in again, then repeat what you did.")
            return _see(f"{PATH}/sign-in")
        if action:
            try:
                form = await request.post()
            except UNREADABLE_FORM:  # a form field that is not UTF-8, or no form at all
                return render(request, "message.html", status=400, session=session, title="Refused",
                              message="This form could not be read. Reload the page and try again.")
            if not session.csrf_matches(form.get("csrf")):
                return render(request, "message.html", status=403, session=session, title="Refused",
                              message="This form is stale or did not come from this dashboard. Reload the page "
                                      "and try again.")
            if acts and not session.key.may_act:
                return render(request, "message.html", status=403, session=session, title="Read only",
                              message="A support key reads only: refunds, verdicts and retries need an "
                                      "operator key.")
        return await page(request, session)

    run.__name__ = page.__name__
    return run


def _https(request: web.Request) -> bool:
    # Over HTTPS, also behind a proxy that ends TLS and says so (believing a forged header could
    # only make a cookie stricter for whoever forged it).
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _sign_in_form(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    """The sign-in page, with a fresh token in both a cookie and the form: a sign-in posted from
    elsewhere carries no such pair, so no other site can sign a browser in with its own key."""
    token = secrets.token_urlsafe(24)
    answer = render(request, "sign_in.html", status=status, error=error, sign_in_token=token)
    answer.set_cookie(SIGN_IN_COOKIE, token, path=PATH, httponly=True, samesite="Strict", secure=_https(request),
                      max_age=3600)
    return answer


async def sign_in_page(request: web.Request) -> web.Response:
    if await _session(request) is not None:
        return _see(PATH)
    return _sign_in_form(request)


async def sign_in(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except UNREADABLE_FORM:  # as for any other form (`signed_in`): a clear refusal, not our failure
        return _sign_in_form(request, status=400, error="This form could not be read: here is a fresh one.")
    cookie, posted = request.cookies.get(SIGN_IN_COOKIE, ""), form.get("sign_in_token")
    if not cookie or not isinstance(posted, str) or not hmac.compare_digest(cookie.encode(), posted.encode()):
        return _sign_in_form(request, status=403, error="This sign-in form had expired or came from elsewhere: "
                                                        "here is a fresh one.")
    presented = form.get("key")
    async with request.app[DB_ENGINE].begin() as conn:
        key = await verify_api_key(conn, request.app[API_KEY_HASHER], presented) \
            if isinstance(presented, str) else None
        if key is None or not key.is_staff:
            # The same words for a wrong key and a caller's key: a key's role is not told to a stranger.
            return _sign_in_form(request, status=401, error="That is not an active operator or support key. "
                                                            "Operators get one from `sauti apikey create --operator`.")
        await close_session(conn, request.cookies.get(COOKIE))  # this browser's previous one, if any
        token = await open_session(conn, key, ttl_s=request.app[SETTINGS].ops.session_ttl_s)
    answer = _see(PATH)
    answer.set_cookie(COOKIE, token, path=PATH, httponly=True, samesite="Strict", secure=_https(request),
                      max_age=request.app[SETTINGS].ops.session_ttl_s)
    answer.del_cookie(SIGN_IN_COOKIE, path=PATH)
    return answer


async def sign_out(request: web.Request, session: OperatorSession) -> web.Response:
    async with request.app[DB_ENGINE].begin() as conn:
        await close_session(conn, request.cookies.get(COOKIE))
    answer = _see(f"{PATH}/sign-in")
    answer.del_cookie(COOKIE, path=PATH)
    return answer


# -- pages -----------------------------------------------------------------------------------------


def _page_number(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name, "")
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) <= 18 else None


async def overview_page(request: web.Request, session: OperatorSession) -> web.Response:
    query = request.query
    before = _page_number(query, "before")
    error = None
    try:
        wanted = payment_filter(query)
    except (ApiError, PaymentsError) as exc:
        wanted, error = payment_filter({}), str(exc)
    engine = request.app[DB_ENGINE]
    async with engine.connect() as conn:
        found = await search_payments(conn, wanted, limit=PAGE_SIZE, before=before)
    flagged = await review.flagged(engine, limit=100)
    async with engine.connect() as conn:
        counts = await outbox.count_open(conn)
        parked_waiting, _ = await suspense.open_total(conn)
    kept = {name: query[name] for name in ("status", "kind", "provider", "channel", "phone", "review")
            if query.get(name)}
    next_page = (f"{PATH}?{urlencode(kept | {'before': found[-1].payment.id})}"
                 if len(found) == PAGE_SIZE else None)
    return render(request, "overview.html", session=session, payments=found, flagged=len(flagged),
                  counts=counts, chosen=kept, error=error, next_page=next_page, parked_waiting=parked_waiting)


async def find_page(request: web.Request, session: OperatorSession) -> web.Response:
    """The lookup box: to the payment page of the reference or id typed."""
    typed = request.query.get("q", "").strip()[:64]
    return _see(f"{PATH}/payments/{quote(typed, safe='')}" if typed else PATH)


async def payment_page(request: web.Request, session: OperatorSession, *, status: int = 200,
                       error: str | None = None, notice: str | None = None) -> web.Response:
    try:
        record = await ops_actions.find_record(request.app, request.match_info["payment"])
    except PaymentsError as exc:
        return render(request, "message.html", status=status_for(exc), session=session, title="Not found",
                      message=str(exc))
    payment = record.payment
    # The form only where a refund could be made: the domain's own rules, and no live refund yet.
    refundable = refusal(payment) is None and all(r.status.value == "failed" for r in record.refunds)
    return render(request, "payment.html", status=status, session=session, record=record, payment=payment,
                  refundable=refundable, reversal_needed=rests_on_operator(payment),
                  error=error, notice=notice or _NOTICES.get(request.query.get("done", "")))


async def wallet_page(request: web.Request, session: OperatorSession) -> web.Response:
    """A customer: who, their wallet and a page of its statement (`gateway.ops_api.customer`)."""
    try:
        async with request.app[DB_ENGINE].connect() as conn:
            user, wallet, limit = await customer(conn, request.match_info["phone"], request.query, most=PAGE_SIZE)
    except ApiError as exc:
        return render(request, "message.html", status=exc.status, session=session, title="Not found",
                      message=exc.message)
    older = None
    if len(wallet.lines) == limit:
        page = urlencode({"currency": wallet.currency.value, "before": wallet.lines[-1].posting_id})
        older = f"{PATH}/wallets/{quote(user.phone)}?{page}"
    return render(request, "wallet.html", session=session, user=user, wallet=wallet, older=older)


async def outbox_page(request: web.Request, session: OperatorSession, *, status: int = 200,
                      error: str | None = None) -> web.Response:
    engine = request.app[DB_ENGINE]
    before = _page_number(request.query, "before")
    async with engine.connect() as conn:
        counts = await outbox.count_open(conn)
        parked = await outbox.jobs_in_status(conn, "parked", limit=PAGE_SIZE, before=before,
                                             default_max_attempts=request.app[SETTINGS].outbox.max_attempts)
    next_page = f"{PATH}/outbox?before={parked[-1].id}" if len(parked) == PAGE_SIZE else None
    return render(request, "outbox.html", status=status, session=session, counts=counts, parked=parked,
                  error=error, next_page=next_page)


async def suspense_page(request: web.Request, session: OperatorSession, *, status: int = 200,
                        error: str | None = None) -> web.Response:
    """Money parked in suspense (`payments.suspense`), the waiting ones by default."""
    try:
        open_only, _, before = parked_query({k: v for k, v in request.query.items() if k in ("state", "before")})
    except ApiError as exc:
        (open_only, before), error, status = (True, None), exc.message, 400
    async with request.app[DB_ENGINE].connect() as conn:
        found = await suspense.parked_money(conn, open_only=open_only, limit=PAGE_SIZE, before=before)
        waiting, total = await suspense.open_total(conn)
    page = {} if open_only else {"state": "all"}
    next_page = (f"{PATH}/suspense?{urlencode(page | {'before': found[-1][0]})}"
                 if len(found) == PAGE_SIZE else None)
    return render(request, "suspense.html", status=status, session=session, parked=[item for _, item in found],
                  waiting=waiting, total=total, open_only=open_only, next_page=next_page, error=error,
                  notice=_NOTICES.get(request.query.get("done", "")))


async def stylesheet(request: web.Request) -> web.Response:
    css = request.app[OPS_TEMPLATES].loader.get_source(request.app[OPS_TEMPLATES], "ops.css")[0]
    return web.Response(text=css, content_type="text/css", headers={"Cache-Control": "max-age=3600",
                                                                    "X-Content-Type-Options": "nosniff"})


# -- actions ---------------------------------------------------------------------------------------


def _field(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def refund_action(request: web.Request, session: OperatorSession) -> web.Response:
    form = await request.post()
    try:
        done = await ops_actions.refund(request.app, session.key, request.match_info["payment"],
                                        reason=_field(form, "reason"), receipt=_field(form, "receipt") or None,
                                        provider_reversed=_field(form, "provider_reversed") == "yes")
    except PaymentsError as exc:
        return await payment_page(request, session, status=status_for(exc), error=str(exc))
    what = {"succeeded": "refunded", "failed": "refund_failed"}.get(done.refund.status.value, "refund_pending")
    return _see(f"{PATH}/payments/{done.refund.public_id}?done={what}")


async def decide_action(request: web.Request, session: OperatorSession) -> web.Response:
    form = await request.post()
    try:
        decided: Payment = await ops_actions.decide(
            request.app, session.key, request.match_info["payment"], _field(form, "outcome"),
            reason=_field(form, "reason"), receipt=_field(form, "receipt") or None)
    except PaymentsError as exc:
        return await payment_page(request, session, status=status_for(exc), error=str(exc))
    return _see(f"{PATH}/payments/{decided.public_id}?done=decided")


async def retry_action(request: web.Request, session: OperatorSession) -> web.Response:
    job_id = _page_number(request.match_info, "job_id")
    if job_id is None or not await ops_actions.retry_job(request.app, session.key, job_id):
        return await outbox_page(request, session, status=409,
                                 error=f"Job {request.match_info['job_id'][:20]} is not parked (already retried?).")
    return _see(f"{PATH}/outbox")


async def credit_parked_action(request: web.Request, session: OperatorSession) -> web.Response:
    form = await request.post()
    try:
        payment, _ = await ops_actions.credit_parked(request.app, session.key, request.match_info["receipt"],
                                                     _field(form, "phone"), reason=_field(form, "reason"))
    except PaymentsError as exc:
        return await suspense_page(request, session, status=status_for(exc), error=str(exc))
    return _see(f"{PATH}/payments/{payment.public_id}?done=credited")


async def return_parked_action(request: web.Request, session: OperatorSession) -> web.Response:
    form = await request.post()
    if _field(form, "reversed") != "yes":
        return await suspense_page(request, session, status=400,
                                   error="Reverse it in the M-Pesa portal first, then tick \"reversed at M-Pesa\".")
    try:
        await ops_actions.return_parked(request.app, session.key, request.match_info["receipt"],
                                        reason=_field(form, "reason"), reversal=_field(form, "reversal") or None)
    except PaymentsError as exc:
        return await suspense_page(request, session, status=status_for(exc), error=str(exc))
    return _see(f"{PATH}/suspense?state=all&done=returned")


async def reconcile_page(request: web.Request, session: OperatorSession, *, status: int = 200,
                         asked: Mapping[str, str] | None = None, report: ReconcileReport | None = None,
                         skipped: list[str] | None = None, error: str | None = None) -> web.Response:
    problems = sum(len(getattr(report, name)) for name in PROBLEMS) if report else 0
    fees = [Money(minor, Currency(cur)) for cur, minor in sorted(report.provider_fees.items())] if report else []
    return render(request, "reconcile.html", status=status, session=session, asked=asked or {}, report=report,
                  skipped=skipped or [], error=error, problems=problems, sections=(*PROBLEMS, "open"),
                  titles=TITLES, fees=fees, providers_to_reconcile=PROVIDERS, max_days=MAX_PERIOD.days)


async def reconcile_action(request: web.Request, session: OperatorSession) -> web.Response:
    """Run a reconciliation from the form (`gateway.ops_actions.reconcile_period`) and show its report."""
    form = await request.post()
    asked = {name: _field(form, name)[:40] for name in ("from", "to", "provider", "grace_minutes")}
    upload = form.get("mpesa_statement")
    try:
        csv_text, name = None, "uploaded"
        if isinstance(upload, web.FileField) and upload.filename:
            name = upload.filename[:80]
            try:
                csv_text = upload.file.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InvalidRequest(f"{name!r} is not a CSV file in UTF-8: export the statement as CSV") from None
        grace = asked["grace_minutes"].strip() or "60"
        if not (grace.isascii() and grace.isdigit() and len(grace) <= 6):
            raise InvalidRequest("grace is a whole number of minutes")
        report, skipped = await ops_actions.reconcile_period(
            request.app, asked["from"], asked["to"] or None, provider=asked["provider"] or None, mpesa_csv=csv_text,
            mpesa_name=name, grace_minutes=int(grace))
    except PaymentsError as exc:
        return await reconcile_page(request, session, status=status_for(exc), asked=asked, error=str(exc))
    return await reconcile_page(request, session, asked=asked, report=report, skipped=skipped)
