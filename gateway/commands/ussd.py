"""`sauti ussd`: the USSD journeys drawn (`graph`), checked (`check`), and where callers give up
(`drop-offs`, from the end-of-session records)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from dialogs.assembly import sauti_journeys
from dialogs.catalog import CatalogError
from dialogs.journey import JourneyError, draw
from dialogs.session_outcomes import ScreenCount, drop_offs
from gateway.commands.database_work import run_with_database
from gateway.commands.option_checks import finite


def _journeys(ctx: click.Context):
    settings = ctx.obj["settings"]
    try:
        return sauti_journeys(None, pin_length=settings.security.pin_length)
    except (JourneyError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group("ussd")
def ussd() -> None:
    """The USSD channel's journeys and sessions."""


@ussd.command("graph")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@click.pass_context
def graph(ctx: click.Context, fmt: str) -> None:
    """Print the journeys as a Mermaid flowchart or a Graphviz digraph."""
    click.echo(draw(_journeys(ctx), fmt), nl=False)


@ussd.command("check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the journeys and the four language catalogs (as start-up does)."""
    journeys = _journeys(ctx)
    click.echo(f"{len(journeys.screens)} screens in {len(journeys.journeys)} journeys, "
               f"languages {', '.join(journeys.catalogs.languages)}: valid")


#: The longest look back `drop-offs` takes (a year): further back is no question about today's journeys.
MAX_HOURS = 366 * 24


@ussd.command("drop-offs")
@click.option("--hours", type=click.FloatRange(min=0, max=MAX_HOURS, min_open=True), default=24.0, show_default=True,
              callback=finite, help=f"Sessions that ended in this many past hours (at most {MAX_HOURS}).")
@click.pass_context
def drop_offs_command(ctx: click.Context, hours: float) -> None:
    """Where sessions ended, by screen: dropped (the caller gave up or timed out), completed, failed."""
    settings = ctx.obj["settings"]
    since = datetime.now(UTC) - timedelta(hours=hours)
    rows: list[ScreenCount] = run_with_database(settings, lambda engine: drop_offs(engine, since), pool_size=1)
    if not rows:
        click.echo(f"no USSD session ended in the last {hours:g} h")
        return
    click.echo(f"{'screen':<22} {'journey':<10} {'dropped':>8} {'completed':>10} {'failed':>7}")
    for row in rows:
        click.echo(f"{row.screen:<22} {row.journey:<10} {row.dropped:>8} {row.completed:>10} {row.failed:>7}")
    total = sum(r.dropped + r.completed + r.failed for r in rows)
    dropped = sum(r.dropped for r in rows)
    click.echo(f"{total} sessions, {dropped} dropped ({100 * dropped / total:.0f} %)")

