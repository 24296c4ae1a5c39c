"""``sauti suspense``: M-Pesa money parked in suspense (paid to our paybill for no wallet of ours),
listed, and released once by an operator: ``credit`` to the wallet it was meant for (a deposit of
its own, with its SMS receipt), or ``return`` once it was reversed to its payer at M-Pesa
(`payments.suspense`). The operator API and dashboard do the same (``/v1/ops/suspense``, ``/ops/suspense``)."""

from __future__ import annotations

import json
from datetime import UTC

import click

from gateway.commands.database_work import run_with_database, run_with_payments
from gateway.commands.payment_operator import operator_name
from gateway.settings import Settings
from payments import suspense
from payments.payment_json import iso


@click.group("suspense")
def suspense_group() -> None:
    """M-Pesa money parked in suspense: list it, credit it to a wallet, or record it as returned."""


@suspense_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also those credited or returned already.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def suspense_list(ctx: click.Context, show_all: bool, limit: int, as_json: bool) -> None:
    """What was parked, newest first: the waiting ones, or --all."""
    settings: Settings = ctx.obj["settings"]

    async def read(engine):
        async with engine.connect() as conn:
            return (await suspense.parked_money(conn, open_only=not show_all, limit=limit),
                    await suspense.open_total(conn))

    found, (waiting, total) = run_with_database(settings, read)
    if as_json:
        click.echo(json.dumps({"open": waiting, "open_total_minor": total.minor if total else 0, "parked": [
            {"receipt": p.receipt, "amount_minor": p.amount.minor, "currency": p.amount.currency.value,
             "parked_at": iso(p.parked_at), "source": p.source, "account": p.account, "payer": p.payer,
             "payer_name": p.payer_name, "state": p.state, "payment": p.payment, "released_by": p.released_by,
             "released_at": iso(p.released_at), "reason": p.reason, "reversal": p.reversal}
            for _, p in found]}, indent=2))
        return
    click.echo(f"{waiting} waiting in suspense" + (f", {total}" if total else "") + ".")
    for _, p in found:
        seen = ", ".join(x for x in (p.payer_name, p.payer, p.account and f"typed {p.account!r}") if x)
        state = {"open": "waiting", "credited": f"credited as {p.payment}", "returned": "returned"}[p.state]
        click.echo(f"  {p.receipt}  {p.amount}  {p.parked_at.astimezone(UTC):%Y-%m-%d %H:%M}Z  "
                   f"{p.source}  {seen or '-'}  {state}")


@suspense_group.command("credit")
@click.argument("receipt")
@click.option("--to", "phone", required=True, help="The number of the wallet it was meant for.")
@click.option("--reason", required=True, help="How you know (kept in the history and the audit log).")
@click.option("--by", "released_by", default=operator_name, show_default="your user name", help="Who credits it.")
@click.pass_context
def suspense_credit(ctx: click.Context, receipt: str, phone: str, reason: str, released_by: str) -> None:
    """Credit the money parked under the M-Pesa receipt RECEIPT to the wallet of --to, once: a
    deposit of its own, credited (with an SMS receipt to the wallet's owner) when M-Pesa confirms
    the receipt for that amount (`sauti worker` or `sauti serve` asks)."""
    settings: Settings = ctx.obj["settings"]
    payment, created = run_with_payments(settings, lambda payments: payments.suspense.credit(
        receipt, phone, reason=reason, by=released_by))
    what = ("to be credited once M-Pesa confirms the receipt" if payment.status.value == "processing"
            else str(payment.status))
    click.echo(f"{payment.reference}  {payment.public_id}: {payment.amount} for {phone.strip()} from suspense, "
               f"{what}" + ("." if created else " (asked before: nothing changed)."))


@suspense_group.command("return")
@click.argument("receipt")
@click.option("--reason", required=True, help="Why (kept in the audit log).")
@click.option("--reversal", default=None, help="The reversal's receipt, from the M-Pesa statement.")
@click.option("--by", "released_by", default=operator_name, show_default="your user name", help="Who records it.")
@click.pass_context
def suspense_return(ctx: click.Context, receipt: str, reason: str, reversal: str | None, released_by: str) -> None:
    """Record that the money parked under RECEIPT went back to its payer: reverse it at M-Pesa
    first (the organisation portal), then run this, once."""
    settings: Settings = ctx.obj["settings"]
    done, created = run_with_payments(settings, lambda payments: payments.suspense.mark_returned(
        receipt, reason=reason, by=released_by, reversal=reversal))
    click.echo(f"{done.receipt}: {done.amount} recorded as returned to its payer"
               + ("." if created else " before: nothing changed."))
