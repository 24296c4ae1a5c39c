"""``sauti agent``: what operators do for agents (`payments.agents`): register one, credit its float
with money it paid in, show where it stands, and close expired requests by hand.

Every command is audited by the service. A float top-up is keyed by the provider's receipt (or
``--key``): running it twice credits the float once, and a receipt tops up one float only (the same
receipt for another agent, or under another ``--key``, is refused).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commands.database_work import run_with_database
from gateway.payments_resources import payment_settings, public_base_url
from gateway.resources import ledger_limits, pin_policy
from gateway.settings import Settings
from payments.agent_commands import TopUpFloat
from payments.agents import AgentService, AgentSettings, register_agent
from payments.cash_requests import agent_by_user
from payments.identities import PinService, find_user_by_phone
from payments.ledger import Ledger
from payments.money import Money
from payments.orchestrator import Payments

T = TypeVar("T")


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _service(settings: Settings, engine: AsyncEngine) -> AgentService:
    """The agent service on a bare orchestrator (no provider clients: nothing here calls one)."""
    ledger = Ledger(engine, ledger_limits(settings))
    policy = payment_settings(settings.payments, public_base_url(settings),
                              hot_account_shards=settings.ledger.hot_account_shards)
    return AgentService(Payments(engine, ledger, settings=policy), PinService(pin_policy(settings)),
                        AgentSettings(**settings.agents.model_dump()))


def _run(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    return run_with_database(settings, work, pool_size=2)


async def _user_id(engine: AsyncEngine, phone: str) -> int:
    async with engine.connect() as conn:
        user = await find_user_by_phone(conn, phone)
    if user is None:
        raise click.ClickException(f"{phone} has no Sauti wallet (register the person first)")
    return user.id


@click.group("agent")
def agent() -> None:
    """Agents: registration, float top-ups, standing."""


@agent.command("register")
@click.argument("phone")
@click.option("--number", default=None, help="The agent number customers type (default: a free random one).")
@click.option("--name", "business_name", default="", help="Business name customers see.")
@click.option("--store", "stores", multiple=True, help="A store number of one of its outlets (repeatable).")
@click.pass_context
def agent_register(ctx: click.Context, phone: str, number: str | None, business_name: str,
                   stores: tuple[str, ...]) -> None:
    """Make the registered user at PHONE an agent (float and commission accounts included)."""
    settings = _settings(ctx)

    async def work(engine: AsyncEngine):
        user_id = await _user_id(engine, phone)
        async with engine.begin() as conn:
            return await register_agent(conn, user_id, agent_number=number, business_name=business_name,
                                        store_numbers=stores, number_digits=settings.agents.agent_number_digits)

    made = _run(settings, work)
    stores_text = f"; stores {', '.join(made.store_numbers)}" if made.store_numbers else ""
    click.echo(f"agent {made.agent_number}: {made.name} ({made.phone}, {made.currency.value}){stores_text}")


@agent.command("topup")
@click.argument("phone")
@click.argument("amount")
@click.option("--reference", required=True, help="The receipt of the money the agent paid in (M-Pesa, Wave, bank).")
@click.option("--operator", required=True, help="Who records it (audit log).")
@click.option("--key", default=None, help="Idempotency key (default: the reference).")
@click.pass_context
def agent_topup(ctx: click.Context, phone: str, amount: str, reference: str, operator: str, key: str | None) -> None:
    """Credit the float of the agent at PHONE with AMOUNT (major units, its currency), from the
    provider collection account the money came in through."""
    settings = _settings(ctx)

    async def work(engine: AsyncEngine):
        service = _service(settings, engine)
        user_id = await _user_id(engine, phone)
        async with engine.connect() as conn:
            found = await agent_by_user(conn, user_id)
        if found is None:
            raise click.ClickException(f"{phone} is not an agent")
        moved = await service.top_up_float(TopUpFloat(key or reference, user_id, Money.of(amount, found.currency),
                                                      reference=reference, operator=operator))
        return moved, await service.float_balance(user_id)

    moved, balance = _run(settings, work)
    again = " (already recorded: nothing more moved)" if moved.replayed else ""
    click.echo(f"float of {phone}: {balance}{again}")


@agent.command("show")
@click.argument("phone")
@click.pass_context
def agent_show(ctx: click.Context, phone: str) -> None:
    """The agent's number, float and commission earned."""
    settings = _settings(ctx)

    async def work(engine: AsyncEngine):
        service = _service(settings, engine)
        user_id = await _user_id(engine, phone)
        return await service.float_balance(user_id), await service.commission_earned(user_id)

    balance, earned = _run(settings, work)
    click.echo(f"float {balance}; commission today {earned.today}, this month {earned.this_month}, "
               f"all time {earned.all_time}")


@agent.command("expire")
@click.pass_context
def agent_expire(ctx: click.Context) -> None:
    """Close the cash requests past their expiry now (`sauti serve` does it every agents.sweep_interval_s)."""
    settings = _settings(ctx)
    closed = _run(settings, lambda engine: _service(settings, engine).expire_requests())
    click.echo(f"{closed} expired request(s) closed")
