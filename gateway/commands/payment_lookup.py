"""`sauti payment show`: one payment as support needs it, found by the reference the customer reads
from a screen or an SMS (``K7Q2M9BXA4``, as typed: lower case and dashes are fine) or by its public
id, with every transition it went through. ``--json`` prints what `GET /v1/payments/{id}` answers."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commands.database_work import run_with_database
from gateway.payments_api import payment_with_events
from gateway.settings import Settings
from payments import payment_store as store


@click.group("payment")
def payment_group() -> None:
    """Payments: look one up by its reference or public id; the review queue, operators' verdicts
    and refunds (`gateway.commands.payment_operator`)."""


@payment_group.command("show")
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True, help="Print it as the payments API answers it.")
@click.pass_context
def payment_show(ctx: click.Context, reference: str, as_json: bool) -> None:
    """The payment REFERENCE names (its short reference, as on a screen or an SMS, or its pay_… id)."""
    settings: Settings = ctx.obj["settings"]

    async def work(engine: AsyncEngine) -> dict[str, Any] | None:
        async with engine.connect() as conn:
            payment = await store.find_payment(conn, reference)
            return None if payment is None else await payment_with_events(conn, payment)

    answer = run_with_database(settings, work)
    if answer is None:
        raise click.ClickException(f"no payment has the reference or id {reference[:40]!r}")
    click.echo(json.dumps(answer, indent=2) if as_json else describe(answer))


def describe(answer: dict[str, Any]) -> str:
    """The payment for a person: what, how much, who, where it stands, and how it got there."""
    shown = answer["display"]
    recipient = answer["recipient"] or {}
    to = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in recipient.items()) or "-"
    lines = [
        f"{answer['reference']}  {answer['public_id']}",
        f"  {answer['kind']} by {answer['channel']}: {answer['status']}",
        f"  amount {shown['amount']}, fee {shown['fee']}, total {shown['total']}",
        f"  from {answer['payer']} to {to}",
    ]
    if provider := answer["provider"]:
        known = ", ".join(f"{k} {v}" for k, v in provider.items() if v and k != "name")
        lines.append(f"  {provider['name']}: {known or 'no reference yet'}")
    if error := answer["error"]:
        lines.append(f"  error {error['code']}: {error['message']}")
    if answer.get("refund_of"):
        lines.append(f"  refunds {answer['refund_of']}")
    lines.append(f"  created {answer['created_at']}" + (f", finished {answer['finished_at']}" if answer["finished_at"]
                                                       else ""))
    lines.append("  events:")
    lines += [f"    {e['at']}  {e['from'] or '-'} -> {e['to']}  ({e['cause']})" for e in answer["events"]]
    return "\n".join(lines)
