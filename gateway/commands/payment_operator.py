"""What operators do to payments: `sauti payment review` and `sauti payment decide` (the payments
recovery left for a person, and a verdict on one once the provider's statement has been read;
`payments.review` says which and what a verdict does), `sauti payment close-flag` (what no verdict
settles: a final payment a provider's late word contradicts, an STK push nobody recorded, once a
person has settled it by hand), and `sauti payment refund` (any refund, M-Pesa payouts' included,
which the API leaves to operators; `payments.refunds`)."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click

from gateway.commands.database_work import run_with_database, run_with_payments
from gateway.settings import Settings
from payments import review
from payments.commands import Refund
from payments.errors import PaymentsError
from payments.orchestrator import Payments
from payments.payment_store import Payment


def operator_name() -> str:
    """Who runs an operator's command, by default: the user name (empty where there is none)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (a container without one)
        return ""


@click.command("review")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Show at most this many, the longest waiting first.")
@click.pass_context
def payment_review(ctx: click.Context, limit: int) -> None:
    """What waits for a person: open payments M-Pesa or Wave could not vouch for (read each in the
    provider's statement, `sauti reconcile` lists them beside it, then `sauti payment decide`), final
    payments a provider's late word contradicts and STK pushes nobody recorded that M-Pesa could not
    confirm (settle each by hand, then `sauti payment close-flag`)."""
    settings: Settings = ctx.obj["settings"]
    queue = run_with_database(settings, lambda engine: review.flagged(engine, limit=limit))
    if not queue:
        click.echo("No payment waits for review.")
        return
    now = datetime.now(UTC)
    click.echo(f"{len(queue)} payment(s) wait for review (oldest first):")
    for item in queue:
        waited = now - item.open_since
        hours = waited.total_seconds() / 3600
        then = " (settle by hand, then close-flag)" if item.final or item.subject == review.STK_ORPHAN else ""
        what = "STK push nobody recorded" if item.subject == review.STK_ORPHAN else item.kind
        click.echo(f"  {item.reference}  {item.public_id}  {what} {item.amount} via "
                   f"{item.provider or '-'}, {item.status} for {hours:.1f} h: {item.reason}{then}")


@click.command("decide")
@click.argument("reference")
@click.option("--succeeded", "outcome", flag_value="succeeded",
              help="The provider carried it out (give --receipt): settle it.")
@click.option("--failed", "outcome", flag_value="failed",
              help="The provider did not carry it out: give the money back to the payer.")
@click.option("--receipt", default=None, help="The provider's transaction id for it, from the statement.")
@click.option("--reason", required=True, help="What the statement shows (kept in the history and the audit log).")
@click.option("--by", "decided_by", default=operator_name, show_default="your user name", help="Who decides.")
@click.pass_context
def payment_decide(ctx: click.Context, reference: str, outcome: str | None, receipt: str | None, reason: str,
                   decided_by: str) -> None:
    """Settle (--succeeded) or give back (--failed) the flagged payment REFERENCE names, as its
    provider's statement shows; once, with SMS receipts, and recorded with who and why."""
    if outcome is None:
        raise click.UsageError("say what the statement shows: --succeeded (with --receipt) or --failed")
    settings: Settings = ctx.obj["settings"]
    try:
        verdict = review.OperatorVerdict(reference, outcome == "succeeded", reason, decided_by, receipt)
    except PaymentsError as exc:  # no reason, no receipt: said before anything is opened
        raise click.ClickException(str(exc)) from None

    payment = run_with_payments(settings, lambda payments: payments.decide(verdict))
    click.echo(f"{payment.reference}  {payment.public_id}: {payment.status} "
               f"(decided by {decided_by}).")


@click.command("close-flag")
@click.argument("subject")
@click.option("--reason", required=True, help="How it was settled (kept with the payment and in the audit log).")
@click.option("--by", "closed_by", default=operator_name, show_default="your user name", help="Who closes it.")
@click.pass_context
def payment_close_flag(ctx: click.Context, subject: str, reason: str, closed_by: str) -> None:
    """Take out of the review queue what no verdict settles, once settled by hand: a final payment
    a provider's late word contradicts (SUBJECT: its reference), or an STK push nobody recorded
    (SUBJECT: its CheckoutRequestID). Moves no money; kept with who and why, and audited."""
    settings: Settings = ctx.obj["settings"]
    closed = run_with_database(settings, lambda engine: review.close_flag(engine, subject, reason, closed_by))
    click.echo(f"{closed.reference}  {closed.public_id}: flag closed by {closed_by} ({closed.reason}).")


@click.command("refund")
@click.argument("reference")
@click.option("--reason", required=True, help="Why (kept in the history and the audit log).")
@click.option("--receipt", default=None,
              help="For an M-Pesa deposit credited without its receipt: the receipt, from the M-Pesa statement.")
@click.option("--by", "requested_by", default=operator_name, show_default="your user name", help="Who asks.")
@click.option("--key", default=None, help="Idempotency key (default: one per payment, so running the command "
                                         "again gives the same refund).")
@click.pass_context
def payment_refund(ctx: click.Context, reference: str, reason: str, receipt: str | None, requested_by: str,
                   key: str | None) -> None:
    """Refund the whole payment REFERENCE names: a reversal at M-Pesa, a refund or payout reversal
    at Wave, a ledger reversal of a wallet payment; for an M-Pesa payout, only once M-Pesa has
    given the money back (the payer is credited at once)."""
    settings: Settings = ctx.obj["settings"]

    async def act(payments: Payments) -> Payment:
        original = await payments.find(reference)
        return await payments.handle(Refund(key or f"operator:{original.public_id}", original.public_id, reason,
                                            requested_by=requested_by, receipt=receipt))

    refund = run_with_payments(settings, act)
    what = {"succeeded": "done", "pending": "asked of the provider; the result comes by callback",
            "failed": f"refused: {refund.error_message}"}.get(refund.status.value, refund.status.value)
    click.echo(f"{refund.reference}  {refund.public_id}: refund {refund.status} ({what}).")
