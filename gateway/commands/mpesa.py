"""``sauti mpesa register-c2b``: tell Daraja where our C2B validation and confirmation routes are.

Needed once per shortcode, and again whenever ``payments.callback_base_url`` or the callback secret
changes; until then, customers paying our paybill from their phone menu never reach us. `sauti
serve` does it at start-up with ``payments.register_c2b_on_start`` (and always in sandbox mode,
whose registrations live in the sandbox's memory). The paths are neutral,
``/callbacks/<secret>/c2b/validation`` and ``…/c2b/confirmation``: Safaricom refuses URLs that
contain "M-Pesa" or "Safaricom" in any spelling. The secret never reaches the terminal.

In sandbox mode the command reaches the sandboxes at ``providers.sandbox.port_base`` (`sauti
sandbox`, or `sauti serve` with that port base).
"""

from __future__ import annotations

import asyncio

import click

from db.engine import create_engine
from gateway.payments_resources import ProvidersUnavailable, open_payments, public_base_url
from gateway.resources import build_ledger, database_url
from gateway.settings import Settings
from payments.errors import InvalidRequest
from payments.payment_settings import CALLBACK_C2B_CONFIRMATION, CALLBACK_C2B_VALIDATION
from payments.providers.daraja import C2BRegistration
from payments.providers.errors import ProviderError


@click.group("mpesa")
def mpesa() -> None:
    """M-Pesa Daraja set-up."""


@mpesa.command("register-c2b")
@click.pass_context
def register_c2b(ctx: click.Context) -> None:
    """Register our C2B validation and confirmation URLs for the configured shortcode."""
    settings: Settings = ctx.obj["settings"]
    registered = asyncio.run(_register(settings))
    shown = f"{public_base_url(settings)}/callbacks/***"
    click.echo(f"Daraja registered the C2B URLs ({registered.response_description}):\n"
               f"  validation   {shown}{CALLBACK_C2B_VALIDATION}\n"
               f"  confirmation {shown}{CALLBACK_C2B_CONFIRMATION}")


async def _register(settings: Settings) -> C2BRegistration:
    engine = create_engine(await database_url(settings), pool_size=1)
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
    finally:
        await engine.dispose()
