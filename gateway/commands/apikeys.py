"""``sauti apikey``: make, list and revoke the API keys of the JSON payments API, and operators' keys
(``--operator``: the operator API under ``/v1/ops`` and the dashboard under ``/ops``; ``--support``:
the same, reading only).

``create`` prints the whole key once; only its hash is stored (with ``api.key_pepper``), so a lost key
cannot be shown again: revoke it and make another. Every creation and revocation is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commands.database_work import run_with_database
from gateway.settings import Settings
from payments.api_keys import (
    CALLER,
    OPERATOR,
    SUPPORT,
    ApiKey,
    ApiKeyHasher,
    create_api_key,
    key_prefix,
    list_api_keys,
    revoke_api_key,
)
from payments.identities import Role, find_user_by_phone, grant_role
from payments.phones import InvalidPhoneNumber

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _run(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    return run_with_database(settings, work, pool_size=1)


@click.group("apikey")
def apikey() -> None:
    """API keys of the JSON payments API (/v1/...)."""


@apikey.command("create")
@click.option("--name", required=True, help="Who or what the key is for (shown in listings).")
@click.option("--user", "user_phone", default=None,
              help="Phone of the wallet owner the key acts for; without it, a platform key for any payer.")
@click.option("--operator", "role", flag_value=OPERATOR, default=None,
              help="A person's key for the operator API (/v1/ops) and dashboard (/ops), not the payments API.")
@click.option("--support", "role", flag_value=SUPPORT,
              help="The same, reading only: no refund, verdict or retry (for support staff).")
@click.option("--merchant", is_flag=True,
              help="With --user: the wallet is a merchant's, whose keys may ask customers to pay it (payment intents).")
@click.pass_context
def apikey_create(ctx: click.Context, name: str, user_phone: str | None, role: str | None, merchant: bool) -> None:
    """Make a key and print it, once."""
    if role is not None and user_phone is not None:
        raise click.UsageError(f"a {role} key is a person's, not a wallet's: give --{role} or --user, not both")
    if merchant and user_phone is None:
        raise click.UsageError("--merchant names a wallet's owner: give --user too")
    settings = _settings(ctx)
    hasher = ApiKeyHasher(settings.api.key_pepper.get_secret_value())

    async def work(engine: AsyncEngine):
        async with engine.begin() as conn:
            user_id = None
            if user_phone is not None:
                try:
                    user = await find_user_by_phone(conn, user_phone)
                except InvalidPhoneNumber as exc:
                    raise click.ClickException(str(exc)) from None
                if user is None:
                    raise click.ClickException(f"{user_phone} has no Sauti wallet")
                user_id = user.id
                if merchant:
                    await grant_role(conn, user.id, Role.MERCHANT, actor="cli")
            return await create_api_key(conn, hasher, name, user_id=user_id, role=role or CALLER, actor="cli")

    made = _run(settings, work)
    scope = (f"acts for {made.key.user_phone}{', a merchant' if merchant else ''}" if made.key.user_phone
             else "operator key: /v1/ops and the dashboard at /ops" if role == OPERATOR
             else "support key: reads /v1/ops and the dashboard at /ops" if role == SUPPORT
             else "platform key: acts for any payer")
    click.echo(f"API key {made.key.prefix} ({made.key.name}; {scope})")
    click.echo(made.secret)
    click.echo("Keep it now: it is shown only this once (Authorization: Bearer <key>).", err=True)


@apikey.command("list")
@click.option("--active", is_flag=True, help="Leave revoked keys out.")
@click.pass_context
def apikey_list(ctx: click.Context, active: bool) -> None:
    """Every key: prefix, name, whom it acts for, when made and last used, revoked or not."""

    async def work(engine: AsyncEngine) -> list[ApiKey]:
        async with engine.connect() as conn:
            return await list_api_keys(conn, include_revoked=not active)

    keys = _run(_settings(ctx), work)
    if not keys:
        click.echo("no API keys")
        return
    click.echo(f"{'PREFIX':12}  {'FOR':16}  {'CREATED':16}  {'LAST USED':16}  {'STATUS':8}  NAME")
    for key in keys:
        status = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d}"
        last = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        who = key.user_phone or (key.role if key.is_staff else "platform")
        click.echo(f"{key.prefix:12}  {who:16}  {key.created_at:%Y-%m-%d %H:%M}  "
                   f"{last:16}  {status:8}  {key.name}")


@apikey.command("revoke")
@click.argument("prefix")
@click.pass_context
def apikey_revoke(ctx: click.Context, prefix: str) -> None:
    """Revoke the key with this prefix (or the whole key), at once and for good."""
    prefix = key_prefix(prefix)

    async def work(engine: AsyncEngine) -> ApiKey:
        async with engine.begin() as conn:
            return await revoke_api_key(conn, prefix, actor="cli")

    key = _run(_settings(ctx), work)
    click.echo(f"API key {key.prefix} ({key.name}) revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S %Z}")
