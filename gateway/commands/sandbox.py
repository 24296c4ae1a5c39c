"""``sauti sandbox``: run the local Daraja, Wave and Africa's Talking sandboxes until Ctrl-C.

Prints each base URL and the credentials the sandboxes accept, and writes the Daraja certificate
(for the B2C SecurityCredential) to a file the gateway's configuration can point at.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from payments.sandbox.runner import RunningSandboxes, start_sandboxes
from payments.sandbox.settings import SandboxSettings


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port-base",
    default=8700,
    show_default=True,
    type=click.IntRange(0, 65533),
    help="Daraja on this port, Wave on +1, Africa's Talking on +2 (0: any free ports).",
)
@click.option(
    "--callback-delay",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds before callbacks and webhooks (the payer typing the PIN).",
)
@click.option(
    "--cert-out",
    default="var/sandbox/daraja-certificate.pem",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the Daraja sandbox certificate.",
)
def sandbox(host: str, port_base: int, callback_delay: float, cert_out: Path) -> None:
    """Run the provider sandboxes in the foreground until interrupted."""
    settings = SandboxSettings(callback_delay_s=callback_delay)
    asyncio.run(_serve(settings, host, port_base or None, cert_out))


async def _serve(settings: SandboxSettings, host: str, port_base: int | None, cert_out: Path) -> None:
    running = await start_sandboxes(settings, host=host, port_base=port_base)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):  # platforms without loop signal handlers
            pass
    try:
        await asyncio.to_thread(_write_certificate, cert_out, running.daraja_certificate_pem)
        _announce(running, cert_out)
        await stop.wait()
    finally:
        await running.stop()
        click.echo("sandboxes stopped")


def _write_certificate(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)


def _announce(running: RunningSandboxes, cert_out: Path) -> None:
    s = running.settings
    click.echo(f"Daraja           {running.urls.daraja}")
    click.echo(f"  consumer key {s.daraja_consumer_key} / secret {s.daraja_consumer_secret}")
    click.echo(f"  shortcode {s.daraja_shortcode}, initiator {s.daraja_initiator_name}")
    click.echo(f"  certificate {cert_out}  (also GET {running.urls.daraja}/_sandbox/certificate)")
    click.echo(f"Wave             {running.urls.wave}")
    click.echo(f"  api key {s.wave_api_key}; webhooks: POST {running.urls.wave}/_sandbox/webhooks")
    click.echo(f"Africa's Talking {running.urls.africastalking}")
    click.echo(f"  username {s.at_username} / api key {s.at_api_key}")
    click.echo("Failure modes: phone-number suffixes or POST /_sandbox/outcomes (see payments/sandbox/outcomes.py)")
    click.echo("Ctrl-C to stop.")
