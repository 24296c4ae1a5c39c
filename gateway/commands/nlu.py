"""`sauti nlu`: evaluate an NLU backend on a labelled test set, and export the data for Rasa.

    sauti nlu eval [--backend embedded|rasa] [--rasa-url URL] [--data FILE] [--threshold T] [--cache-dir DIR]
    sauti nlu export-rasa DIR

`eval` measures the parser the gateway would use: its backend, confidence threshold, training data
(``data_dir``), cache, and Rasa server with its token and timeout come from the ``nlu:`` settings;
the options override them for the run. Also runnable alone (`python -m gateway.commands.nlu eval`),
with the settings `sauti` would read (./config.yml or $SAUTI_CONFIG, and the environment).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import click

from gateway.settings import ConfigError, load_settings
from nlu.evaluation import Report, evaluate, evaluate_async
from nlu.rasa_backend import RasaError
from nlu.rasa_export import export_rasa
from nlu.settings import EMBEDDED, RASA, NluSettings
from nlu.training_data import DataError, TrainingData, load

#: The labelled test set kept beside the code: found from any directory the command runs in.
DEFAULT_TESTSET = Path(__file__).resolve().parents[2] / "tests" / "nlu" / "testset.yml"


@click.group("nlu")
def nlu() -> None:
    """Natural-language understanding: evaluation and Rasa export."""


def _load_test_set(path: Path) -> TrainingData:
    if not path.is_file():
        raise click.ClickException(f"{path}: no such test set (pass --data FILE)")
    try:
        data = load([path])
    except DataError as error:
        raise click.ClickException(f"bad test set: {error}") from None
    if not data.examples:
        raise click.ClickException(f"{path}: the test set has no examples")
    return data


def _configured(ctx: click.Context) -> NluSettings:
    """The ``nlu:`` settings: those `sauti` loaded, or (run alone) read as `sauti` reads them."""
    settings = ctx.obj.get("settings") if isinstance(ctx.obj, dict) else None
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    return settings.nlu.nlu_settings()


async def _evaluate_rasa(chosen: NluSettings, data: TrainingData) -> Report:
    async with chosen.rasa_parser() as parser:
        return await evaluate_async(parser, data)


@nlu.command("eval")
@click.option("--backend", type=click.Choice([EMBEDDED, RASA]), default=None, show_default="nlu.backend",
              help="Which parser to evaluate.")
@click.option("--rasa-url", default=None, show_default="nlu.rasa_url",
              help="Rasa server (for --backend rasa), started with --enable-api; its token is nlu.rasa_token.")
@click.option("--data", "data_file", type=click.Path(path_type=Path), default=None,
              show_default="tests/nlu/testset.yml", help="Labelled test set in Rasa YAML (with a `contacts:` list).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None, show_default="nlu.confidence_threshold",
              help="Confidence below which a payment reading becomes a question.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, show_default="nlu.cache_dir",
              help="Where the embedded parser's trained model is cached.")
@click.option("--failures", type=click.IntRange(min=0), default=25, show_default=True,
              help="How many failures to list.")
@click.pass_context
def eval_command(ctx: click.Context, backend: str | None, rasa_url: str | None, data_file: Path | None,
                 threshold: float | None, cache_dir: Path | None, failures: int) -> None:
    """Run a backend over a test set and print accuracy, per-entity exact match and latency."""
    configured = _configured(ctx)
    chosen = dataclasses.replace(
        configured, backend=backend or configured.backend, rasa_url=rasa_url or configured.rasa_url,
        confidence_threshold=configured.confidence_threshold if threshold is None else threshold,
        cache_dir=configured.cache_dir if cache_dir is None else cache_dir)
    data = _load_test_set(data_file or DEFAULT_TESTSET)
    try:
        if chosen.backend == EMBEDDED:
            report = evaluate(chosen.embedded_parser(), data)
        else:
            report = asyncio.run(_evaluate_rasa(chosen, data))
    except DataError as error:
        raise click.ClickException(f"bad training data: {error}") from None
    except RasaError as error:
        raise click.ClickException(str(error)) from None
    click.echo(report.to_text(failures=failures))


@nlu.command("export-rasa")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_rasa_command(directory: Path) -> None:
    """Write a Rasa 3 project (config.yml, domain.yml, data/nlu.yml) to DIRECTORY."""
    try:
        written = export_rasa(directory)
    except DataError as error:
        raise click.ClickException(f"bad training data: {error}") from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: cd {directory} && rasa train nlu && rasa run --enable-api")


if __name__ == "__main__":
    nlu()
