"""``sauti mpesa register-c2b``: tell Daraja where our C2B validation and confirmation routes are;
``sauti mpesa book-c2b``: book a payment to our paybill whose confirmation never came.

Needed once per shortcode, and again whenever ``payments.callback_base_url`` or the callback secret
changes; until then, customers paying our paybill from their phone menu never reach us. `sauti
serve` does it at start-up with ``payments.register_c2b_on_start`` (and always in sandbox mode,
whose registrations live in the sandbox's memory). The paths are neutral,
``/callbacks/<secret>/c2b/validation`` and ``…/c2b/confirmation``: Safaricom refuses URLs that
contain "M-Pesa" or "Safaricom" in any spelling. The secret never reaches the terminal.

In sandbox mode the command reaches the sandboxes at ``providers.sandbox.port_base`` (`sauti
sandbox`, or `sauti serve` with that port base).

A customer's payment to our paybill whose confirmation never reached us is on the M-Pesa statement
and not in Sauti (`sauti reconcile` says so). ``book-c2b`` books it from the statement's line; the
wallet is credited once a transaction status query (run by the outbox worker) finds that receipt
for that amount (`payments.c2b.C2BReceiver.book_missed`). It is refused while an STK push deposit of
that amount, from that number or into that wallet, holds no receipt (recovery credited it by an STK
query, which names none): the line may be that push's, and booking it would credit the money twice.
``--not-push REFERENCE`` books it anyway once the statement shows that deposit's own line under
another receipt.
"""

from __future__ import annotations

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commands.database_work import run_with_database, run_with_payments
from gateway.commands.payment_operator import operator_name
from gateway.payments_resources import ProvidersUnavailable, open_payments, public_base_url
from gateway.resources import build_ledger
from gateway.settings import Settings
from payments.commands import mpesa_receipt
from payments.errors import InvalidRequest, PaymentsError
from payments.money import Currency, Money, MoneyError
from payments.orchestrator import Payments
from payments.payment_settings import CALLBACK_C2B_CONFIRMATION, CALLBACK_C2B_VALIDATION, MPESA
from payments.payment_store import Payment, find_by_provider_ref
from payments.providers.daraja import C2BRegistration
from payments.providers.errors import ProviderError


@click.group("mpesa")
def mpesa() -> None:
    """M-Pesa Daraja: set-up, and paybill payments whose confirmation never came."""


@mpesa.command("register-c2b")
@click.pass_context
def register_c2b(ctx: click.Context) -> None:
    """Register our C2B validation and confirmation URLs for the configured shortcode."""
    settings: Settings = ctx.obj["settings"]
    registered = run_with_database(settings, lambda engine: _register(settings, engine), pool_size=1)
    shown = f"{public_base_url(settings)}/callbacks/***"
    click.echo(f"Daraja registered the C2B URLs ({registered.response_description}):\n"
               f"  validation   {shown}{CALLBACK_C2B_VALIDATION}\n"
               f"  confirmation {shown}{CALLBACK_C2B_CONFIRMATION}")


async def _register(settings: Settings, engine: AsyncEngine) -> C2BRegistration:
    try:
        async with open_payments(settings, engine, build_ledger(engine, settings), serving=False) as runtime:
            if runtime.payments.providers.daraja is None:
                raise click.ClickException(
                    "M-Pesa is not reachable: give providers.mpesa credentials (live mode), or "
                    "providers.sandbox.port_base where `sauti sandbox` runs (sandbox mode)")
            return await runtime.payments.register_c2b_urls()
    except ProvidersUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    except (ProviderError, InvalidRequest) as exc:
        raise click.ClickException(f"Daraja refused the registration: {exc}") from None


@mpesa.command("book-c2b")
@click.argument("receipt")
@click.option("--amount", required=True, help="In shillings, as on the statement (e.g. 190).")
@click.option("--account", required=True, help="The account number the customer typed (the wallet's number).")
@click.option("--phone", "msisdn", required=True, help="The paying customer's number, as on the statement.")
@click.option("--reason", default="confirmation never came; on the M-Pesa statement", show_default=True,
              help="Kept in the audit log.")
@click.option("--by", "booked_by", default=operator_name, show_default="your user name", help="Who books it.")
@click.option("--not-push", "not_pushes", multiple=True, metavar="REFERENCE",
              help="A deposit credited without a receipt that the refusal named, whose own line the statement "
                   "shows under another receipt (found by its CheckoutRequestID). Kept in the audit log.")
@click.pass_context
def book_c2b(ctx: click.Context, receipt: str, amount: str, account: str, msisdn: str, reason: str,
             booked_by: str, not_pushes: tuple[str, ...]) -> None:
    """Book the payment to our paybill with M-Pesa receipt RECEIPT, from its statement line: the
    wallet is credited once M-Pesa confirms that receipt for that amount. Refused while an STK push
    deposit of that amount from that number holds no receipt (the line may be its own)."""
    settings: Settings = ctx.obj["settings"]
    if not booked_by.strip():
        raise click.ClickException("say who books it (--by)")
    try:
        money = Money.of(amount.strip(), Currency.KES)
        trans_id = mpesa_receipt(receipt)
    except (MoneyError, ValueError, PaymentsError) as exc:
        raise click.ClickException(str(exc)) from None

    async def act(payments: Payments) -> tuple[str, Payment | None]:
        outcome = await payments.book_missed_c2b(receipt=trans_id, amount=money, account=account, phone=msisdn,
                                                 booked_by=booked_by.strip(), reason=reason.strip(),
                                                 not_pushes=not_pushes)
        async with payments.engine.connect() as conn:
            return outcome, await find_by_provider_ref(conn, MPESA, trans_id)

    outcome, payment = run_with_payments(settings, act)
    shown = f"payment {payment.reference} ({payment.status})" if payment is not None else "no payment"
    if outcome == "duplicate":
        click.echo(f"{trans_id} was booked already: {shown}; nothing more was done.")
    else:
        click.echo(f"{trans_id} booked as {shown}: {money} for account {account.strip()}. M-Pesa is asked "
                   "to confirm it; the wallet is credited once it does (the outbox worker asks).")
