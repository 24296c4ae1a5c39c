"""``sauti webhook``: operators' view of the webhook endpoints of API keys, and of their deliveries.

``add`` prints the endpoint's signing secret once (the key's owner needs it to check signatures);
``roll`` gives an endpoint a new one, also printed once, the one before signing beside it for a while.
Keys' owners manage their own endpoints through ``/v1/webhook_endpoints`` as well. A parked delivery
is sent again with ``sauti outbox retry JOB_ID``.
"""

from __future__ import annotations

from datetime import timedelta

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commands.database_work import run_with_database
from gateway.commands.option_checks import finite
from gateway.settings import Settings
from payments.api_keys import get_api_key, key_prefix
from payments.webhook_endpoints import (
    PREVIOUS_SECRET_VALID,
    PREVIOUS_SECRET_VALID_MAX,
    NewWebhookEndpoint,
    WebhookEndpoint,
    add_endpoint,
    disable_endpoint,
    get_endpoint,
    list_endpoints,
    roll_secret,
)
from payments.webhook_events import EVENT_TYPES, Delivery, deliveries, send_test_event


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group("webhook")
def webhook() -> None:
    """Webhook endpoints of API keys, and their deliveries."""


@webhook.command("add")
@click.argument("key")
@click.argument("url")
@click.pass_context
def webhook_add(ctx: click.Context, key: str, url: str) -> None:
    """Send the events of API key KEY (its prefix) to URL; prints the signing secret, once."""
    settings = _settings(ctx)
    prefix = key_prefix(key)

    async def work(engine: AsyncEngine) -> NewWebhookEndpoint:
        async with engine.begin() as conn:
            api_key = await get_api_key(conn, prefix)
            return await add_endpoint(conn, api_key.id, url, allow_local=settings.webhooks.allow_local_urls,
                                      max_per_key=settings.webhooks.max_endpoints_per_key, actor="cli")

    made = run_with_database(settings, work, pool_size=1)
    click.echo(f"webhook endpoint {made.endpoint.public_id} of API key {made.endpoint.api_key_prefix}: "
               f"{made.endpoint.url}")
    click.echo(f"events: {', '.join(EVENT_TYPES)}")
    click.echo(made.secret)
    click.echo("Give the owner this signing secret now (Sauti-Signature header); it is shown only this once.",
               err=True)


@webhook.command("list")
@click.option("--key", default=None, help="Only this API key's endpoints (its prefix).")
@click.pass_context
def webhook_list(ctx: click.Context, key: str | None) -> None:
    """Every endpoint: id, API key, status, URL."""

    async def work(engine: AsyncEngine) -> list[WebhookEndpoint]:
        async with engine.connect() as conn:
            key_id = (await get_api_key(conn, key_prefix(key))).id if key else None
            return await list_endpoints(conn, api_key_id=key_id)

    endpoints = run_with_database(_settings(ctx), work, pool_size=1)
    if not endpoints:
        click.echo("no webhook endpoints")
        return
    click.echo(f"{'ENDPOINT':20}  {'API KEY':12}  {'CREATED':16}  {'STATUS':19}  {'PREVIOUS SECRET UNTIL':21}  URL")
    for e in endpoints:
        status = "active" if e.active else f"disabled {e.disabled_at:%Y-%m-%d %H:%M}"
        previous = f"{e.previous_secret_expires_at:%Y-%m-%d %H:%M}" if e.previous_secret_expires_at else "-"
        click.echo(f"{e.public_id:20}  {e.api_key_prefix:12}  {e.created_at:%Y-%m-%d %H:%M}  {status:19}  "
                   f"{previous:21}  {e.url}")


@webhook.command("disable")
@click.argument("endpoint")
@click.pass_context
def webhook_disable(ctx: click.Context, endpoint: str) -> None:
    """Stop sending to ENDPOINT (its we_… id), for good; what is queued for it is dropped."""

    async def work(engine: AsyncEngine) -> WebhookEndpoint:
        async with engine.begin() as conn:
            return await disable_endpoint(conn, endpoint.strip(), actor="cli")

    done = run_with_database(_settings(ctx), work, pool_size=1)
    click.echo(f"webhook endpoint {done.public_id} ({done.url}) disabled at {done.disabled_at:%Y-%m-%d %H:%M:%S %Z}")


@webhook.command("roll")
@click.argument("endpoint")
@click.option("--keep-previous-hours", type=click.FloatRange(0, PREVIOUS_SECRET_VALID_MAX.total_seconds() / 3600),
              default=PREVIOUS_SECRET_VALID.total_seconds() / 3600, show_default=True, callback=finite,
              help="How long the secret before keeps signing beside the new one (0: stop it now, as for a leak).")
@click.pass_context
def webhook_roll(ctx: click.Context, endpoint: str, keep_previous_hours: float) -> None:
    """Give ENDPOINT (its we_… id) a new signing secret; prints it, once."""

    async def work(engine: AsyncEngine) -> NewWebhookEndpoint:
        async with engine.begin() as conn:
            return await roll_secret(conn, endpoint.strip(), previous_valid=timedelta(hours=keep_previous_hours),
                                     actor="cli")

    rolled = run_with_database(_settings(ctx), work, pool_size=1)
    done = rolled.endpoint
    until = (f"until {done.previous_secret_expires_at:%Y-%m-%d %H:%M:%S %Z}" if done.previous_secret_expires_at
             else "no longer")
    click.echo(f"webhook endpoint {done.public_id} ({done.url}): new signing secret; the one before signs {until}")
    click.echo(rolled.secret)
    click.echo("Give the owner this signing secret now (Sauti-Signature header); it is shown only this once.",
               err=True)


@webhook.command("test")
@click.argument("endpoint")
@click.pass_context
def webhook_test(ctx: click.Context, endpoint: str) -> None:
    """Queue a webhook.test event for ENDPOINT (its we_… id); a worker sends it, signed."""

    async def work(engine: AsyncEngine) -> tuple[WebhookEndpoint, str]:
        async with engine.begin() as conn:
            found = await get_endpoint(conn, endpoint.strip())
            return found, await send_test_event(conn, found)

    found, event_id = run_with_database(_settings(ctx), work, pool_size=1)
    click.echo(f"test event {event_id} queued for {found.public_id} ({found.url}); "
               f"see `sauti webhook deliveries --endpoint {found.public_id}`")


@webhook.command("deliveries")
@click.option("--endpoint", default=None, help="Only this endpoint's (its we_… id).")
@click.option("--undelivered", is_flag=True, help="Only those still waiting, being sent, or parked.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_context
def webhook_deliveries(ctx: click.Context, endpoint: str | None, undelivered: bool, limit: int) -> None:
    """The newest deliveries, newest first: job, endpoint, event, payment, status, tries, last error."""

    async def work(engine: AsyncEngine) -> list[Delivery]:
        async with engine.connect() as conn:
            return await deliveries(conn, endpoint=endpoint.strip() if endpoint else None, undelivered=undelivered,
                                    limit=limit)

    found = run_with_database(_settings(ctx), work, pool_size=1)
    if not found:
        click.echo("no webhook deliveries")
        return
    click.echo(f"{'JOB':>8}  {'ENDPOINT':20}  {'EVENT':18}  {'PAYMENT':26}  {'STATUS':7}  TRIES  LAST ERROR")
    for d in found:
        error = (d.last_error or "").splitlines()[0][:80] if d.last_error else ""
        click.echo(f"{d.job_id:>8}  {d.endpoint:20}  {d.event_type or '?':18}  {d.payment or '':26}  {d.status:7}  "
                   f"{d.attempts:>5}  {error}")
