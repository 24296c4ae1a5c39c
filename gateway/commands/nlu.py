"""`sauti nlu`: evaluate an NLU backend on a labelled test set, and export the data for Rasa.

    sauti nlu eval [--backend embedded|rasa] [--rasa-url URL] [--data FILE]
    sauti nlu export-rasa DIR

Also runnable alone: `python -m gateway.commands.nlu eval`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from nlu.evaluation import Report, evaluate, evaluate_async
from nlu.parser import DEFAULT_CONFIDENCE_THRESHOLD, load_embedded_parser
from nlu.rasa_backend import RasaError, RasaParser
from nlu.rasa_export import export_rasa
from nlu.training_data import DataError, TrainingData, load, load_directory

DEFAULT_TESTSET = Path("tests/nlu/testset.yml")


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


async def _evaluate_rasa(url: str, data: TrainingData, threshold: float) -> Report:
    async with RasaParser(url, confidence_threshold=threshold, data=load_directory()) as parser:
        return await evaluate_async(parser, data)


@nlu.command("eval")
@click.option("--backend", type=click.Choice(["embedded", "rasa"]), default="embedded", show_default=True,
              help="Which parser to evaluate.")
@click.option("--rasa-url", default="http://localhost:5005", show_default=True,
              help="Rasa server (for --backend rasa), started with --enable-api.")
@click.option("--data", "data_file", type=click.Path(path_type=Path), default=DEFAULT_TESTSET,
              show_default=True, help="Labelled test set in Rasa YAML (with a `contacts:` list).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=DEFAULT_CONFIDENCE_THRESHOLD,
              show_default=True, help="Confidence below which a payment reading becomes a question.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path("var/cache/nlu"), show_default=True,
              help="Where the embedded parser's trained model is cached.")
@click.option("--failures", type=int, default=25, show_default=True, help="How many failures to list.")
def eval_command(backend: str, rasa_url: str, data_file: Path, threshold: float, cache_dir: Path,
                 failures: int) -> None:
    """Run a backend over a test set and print accuracy, per-entity exact match and latency."""
    data = _load_test_set(data_file)
    if backend == "embedded":
        try:
            parser = load_embedded_parser(cache_dir=cache_dir, confidence_threshold=threshold)
        except DataError as error:
            raise click.ClickException(f"bad training data: {error}") from None
        report = evaluate(parser, data)
    else:
        try:
            report = asyncio.run(_evaluate_rasa(rasa_url, data, threshold))
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
