"""Voice benchmark: how well, and how fast, spoken payment commands are understood on a phone line.

A fixed set of commands per language (English, Swahili, French; 20 each: sends to contacts and to
phone numbers, pay bill with account, buy goods till, agent withdrawal, withdraw to M-Pesa or Wave,
deposit, balance, statement), each with the intent, amount and recipient it means, is spoken by
eSpeak NG (three voices and rates per language) and, in English, also by CMU Flite (four recorded
voices, when Debian's ``flite`` is installed: `make bench-voice` installs it), cut to telephone
quality (8 kHz, 16-bit WAV) and
run through the voice channel's pipeline: decode → VAD trim → Whisper → tidy. For each backend,
model size, language and biasing on/off it reports:

- WER: word error rate against what was said, both sides normalised (lowercase, no punctuation,
  numbers as digits whether said in words or written in digits, digit strings joined, M-Pesa as
  one word), over the whole set (jiwer);
- e2e: end-to-end command accuracy, the transcript parsed by the embedded NLU parser with the
  caller's contacts: intent, amount and recipient (contact, phone, paybill+account, till,
  agent+store) all right;
- copied: numbers in the transcript that were not said but are in the prompt (biasing's risk);
- RTF: real-time factor (VAD + Whisper time over the clip's length), median and p90, on this
  machine's CPU.

With biasing on, clips are read as the voice channel reads a command's first words: a reading the
parser does not find to be a whole command is read again without the prompt, and the plain reading
is kept when it is one (its time counts in the RTF).

Anchors, measured in the same run: the parser on the exact text that was spoken (the ceiling
speech can reach), and the same clips without biasing. openai-whisper runs beside faster-whisper
on the same clips where it can load the model (the `openai` extra: torch, openai-whisper).

    python -m bench.voice [--models tiny.en,base] [--languages en,sw,fr]
                          [--backends faster-whisper,openai-whisper] [--limit N] [--threads N]
                          [--beam-size N] [--numbers-in-words en] [--tts espeak,flite] [--every-voice]
                          [--errors]

Target (issue 6): English commands at least 90 % end-to-end accurate, and a real-time factor of at
most 0.5, with the default model (faster-whisper base, int8, biased) on this machine's CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer

from dialogs.speech_synthesis import FLITE_VOICES, flite_available, synthesize
from nlu.audio import decode_audio
from nlu.intents import is_whole_command
from nlu.numbers_words import read_number_words
from nlu.parser import EmbeddedParser, load_embedded_parser
from nlu.results import Contact, Parse
from nlu.speech import SpeechService, SpeechSettings, SpeechUnavailable
from nlu.speech_settings import FASTER_WHISPER, OPENAI_WHISPER
from nlu.tokens import fold
from nlu.transcripts import AudioError
from nlu.whisper_models import CATALOGUE, ModelUnavailable
from nlu.whisper_text import tidy_transcript

ROOT = Path(__file__).resolve().parent.parent
PHONE_RATE = 8000

CONTACTS = (
    Contact("Juma Otieno", None, "+254711000001"),
    Contact("Grace Wanjiru", "Mama", "+254722111222"),
    Contact("Wanjiku Kamau", None, "+254733000003"),
    Contact("Kevin Mutua", "Kevo", "+254791234567"),
    Contact("Achieng Odhiambo", None, "+254700555666"),
    Contact("Joseph Omondi", "Baba", "+254700123456"),
    Contact("Awa Ndiaye", None, "+221771234567"),
    Contact("Moussa Diop", None, "+221782345678"),
    Contact("Fatou Sow", None, "+221765554433"),
    Contact("Aminata Fall", None, "+221701234567"),
    Contact("Ibrahima Sarr", "Iba", "+221776543210"),
    Contact("Mamadou Diallo", "Papa", "+221751112233"),
)


@dataclass(frozen=True, slots=True)
class Command:
    """What is said, and what it means: `target` is the recipient's contact name, a phone number,
    "paybill/account", "till", "agent/store" (None: the intent has no recipient)."""

    spoken: str
    intent: str
    amount: int | None = None
    target: str | None = None


COMMANDS: dict[str, tuple[Command, ...]] = {
    "en": (
        Command("send five hundred shillings to Juma", "send_money", 500, "Juma Otieno"),
        Command("send two thousand to Wanjiku", "send_money", 2000, "Wanjiku Kamau"),
        Command("send one thousand five hundred to Mama", "send_money", 1500, "Grace Wanjiru"),
        Command("please send seven hundred and fifty shillings to Kevin", "send_money", 750, "Kevin Mutua"),
        Command("transfer three thousand to Achieng", "send_money", 3000, "Achieng Odhiambo"),
        Command("send three hundred to zero seven one two three four five six seven eight", "send_money", 300,
                "+254712345678"),
        Command("send twelve hundred shillings to zero seven two two one one one two two two", "send_money", 1200,
                "+254722111222"),
        Command("pay bill eight eight eight eight eight zero, account one two three four five, amount one thousand "
                "five hundred", "pay_bill", 1500, "888880/12345"),
        Command("pay two thousand five hundred to pay bill two four seven two four seven, account five five six six "
                "seven seven", "pay_bill", 2500, "247247/556677"),
        Command("buy goods till one two three four five six, amount three hundred", "buy_goods_till", 300, "123456"),
        Command("pay six hundred and fifty to till eight three two nine one zero", "buy_goods_till", 650, "832910"),
        Command("withdraw two thousand from agent three four five six seven eight, store one two", "withdraw_cash",
                2000, "345678/12"),
        Command("withdraw one thousand to M-Pesa", "withdraw_to_mpesa", 1000),
        Command("move four thousand shillings to my M-Pesa", "withdraw_to_mpesa", 4000),
        Command("withdraw five thousand to Wave", "withdraw_to_wave", 5000),
        Command("deposit eight hundred", "deposit", 800),
        Command("top up two thousand from M-Pesa", "deposit", 2000),
        Command("check my balance", "check_balance"),
        Command("show my mini statement", "mini_statement"),
        Command("send ten thousand francs to Moussa", "send_money", 10000, "Moussa Diop"),
    ),
    "sw": (
        Command("tuma elfu moja kwa Mama", "send_money", 1000, "Grace Wanjiru"),
        Command("tuma shilingi mia tano kwa Juma", "send_money", 500, "Juma Otieno"),
        Command("tuma elfu mbili kwa Wanjiku", "send_money", 2000, "Wanjiku Kamau"),
        Command("mtumie Kevin elfu tatu", "send_money", 3000, "Kevin Mutua"),
        Command("tuma elfu moja mia tano kwa Achieng", "send_money", 1500, "Achieng Odhiambo"),
        Command("tuma mia tatu kwa sifuri saba moja mbili tatu nne tano sita saba nane", "send_money", 300,
                "+254712345678"),
        Command("tuma elfu kumi kwa Baba", "send_money", 10000, "Joseph Omondi"),
        Command("tuma elfu ishirini kwa Awa", "send_money", 20000, "Awa Ndiaye"),
        Command("tuma elfu mbili na mia tano kwa Kevo", "send_money", 2500, "Kevin Mutua"),
        Command("lipa paybill nane nane nane nane nane sifuri, akaunti moja mbili tatu nne tano, elfu moja",
                "pay_bill", 1000, "888880/12345"),
        Command("lipa till moja mbili tatu nne tano sita, mia tatu", "buy_goods_till", 300, "123456"),
        Command("lipa mia saba kwa till nane tatu mbili tisa moja sifuri", "buy_goods_till", 700, "832910"),
        Command("toa elfu mbili kwa wakala tatu nne tano sita saba nane", "withdraw_cash", 2000, "345678/"),
        Command("toa elfu moja kwenda M-Pesa", "withdraw_to_mpesa", 1000),
        Command("toa elfu tano kwenda Wave", "withdraw_to_wave", 5000),
        Command("weka pesa elfu moja", "deposit", 1000),
        Command("weka mia tano kutoka M-Pesa", "deposit", 500),
        Command("angalia salio", "check_balance"),
        Command("salio langu ni ngapi", "check_balance"),
        Command("nionyeshe miamala ya mwisho", "mini_statement"),
    ),
    "fr": (
        Command("envoie cinq mille francs à Awa", "send_money", 5000, "Awa Ndiaye"),
        Command("envoie deux mille à Moussa", "send_money", 2000, "Moussa Diop"),
        Command("envoie dix mille francs à Fatou", "send_money", 10000, "Fatou Sow"),
        Command("transfère quinze mille à Aminata", "send_money", 15000, "Aminata Fall"),
        Command("envoie mille francs à Papa", "send_money", 1000, "Mamadou Diallo"),
        Command("envoie vingt mille francs à Ibrahima", "send_money", 20000, "Ibrahima Sarr"),
        Command("envoie deux mille cinq cents francs à Awa", "send_money", 2500, "Awa Ndiaye"),
        Command("envoie sept mille à Moussa", "send_money", 7000, "Moussa Diop"),
        Command("envoie trois mille au soixante-dix-sept cent vingt-trois quarante-cinq soixante-sept",
                "send_money", 3000, "+221771234567"),
        Command("payer la facture Senelec, quinze mille francs", "pay_bill", 15000, "SENELEC/"),
        Command("payer au marchand un deux trois quatre cinq six, deux mille", "buy_goods_till", 2000, "123456"),
        Command("retirer vingt mille francs chez l'agent trois quatre cinq six sept huit", "withdraw_cash", 20000,
                "345678/"),
        Command("retirer dix mille vers Wave", "withdraw_to_wave", 10000),
        Command("mettre cinq mille francs sur mon Wave", "withdraw_to_wave", 5000),
        Command("déposer cinq mille", "deposit", 5000),
        Command("recharger mon compte de dix mille francs", "deposit", 10000),
        Command("quel est mon solde", "check_balance"),
        Command("mon solde s'il vous plaît", "check_balance"),
        Command("mes dernières transactions", "mini_statement"),
        Command("retirer deux mille vers M-Pesa", "withdraw_to_mpesa", 2000),
    ),
}

#: Speakers: eSpeak NG voices and rates (words a minute), taken in turn through each language's set.
VOICES = {"en": ("en-us", "en-us+m3", "en"), "sw": ("sw", "sw+m3", "sw+f3"), "fr": ("fr", "fr+m3", "fr+f3")}
RATES = (140, 130, 150)
#: The engines that speak each language: Flite (recorded English voices) beside eSpeak NG's formants.
ESPEAK, FLITE = "espeak", "flite"
SPEAKERS = {ESPEAK: VOICES, FLITE: {"en": FLITE_VOICES}}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- what was meant, and what was understood -------------------------------------------------------


def target_of(parse: Parse) -> str | None:
    """The recipient of a parse, written as `Command.target` is."""
    if parse.recipient is not None:
        return parse.recipient.name
    for first, second in (("paybill", "account_number"), ("agent_number", "store_number")):
        if parse.value(first) is not None:
            return f"{parse.value(first)}/{parse.value(second) or ''}"
    for kind in ("till", "phone"):
        if parse.value(kind) is not None:
            return str(parse.value(kind))
    return None


def understood(parser: EmbeddedParser, text: str, language: str, command: Command) -> bool:
    parse = parser.parse(text, language=language, contacts=CONTACTS)
    return (parse.intent, parse.amount, target_of(parse)) == (command.intent, command.amount, command.target)


# -- word error rate ---------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r"[^\w\s']+")
_ZEROS = frozenset({"zero", "sifuri"})
# Words that are a number only before another one ("un deux trois"), else an article.
_ARTICLES = frozenset({"a", "un", "une"})


def normalise(text: str, language: str) -> str:
    """Text as WER compares it: folded, no punctuation, M-Pesa as one word, numbers in digits
    (whether said in words or written in digits), and runs of digits joined (a code said digit by
    digit reads as one number, as Whisper writes it)."""
    text = tidy_transcript(text)
    text = re.sub(r"\bm[\s-]?pesa\b", "mpesa", fold(text))
    words = _PUNCTUATION.sub(" ", text.replace("-", " ")).split()
    out: list[str] = []
    i = 0
    while i < len(words):
        number = read_number_words(words, i, (language,))
        if number is not None and words[i] in _ARTICLES and number.end == i + 1:
            following = words[i + 1] if i + 1 < len(words) else ""
            if not (following.isdigit() or following in _ZEROS or read_number_words(words, i + 1, (language,))):
                number = None
        if words[i] in _ZEROS:
            out.append("0")
            i += 1
        elif number is not None:
            out.append(str(number.value))
            i = number.end
        else:
            out.append(words[i])
            i += 1
    joined: list[str] = []
    for word in out:
        if word.isdigit() and joined and joined[-1].isdigit():
            joined[-1] += word
        else:
            joined.append(word)
    return " ".join(joined)


def copied_numbers(transcript: str, spoken: str, prompt: str | None, language: str) -> int:
    """Numbers in the transcript that were not said but stand in the prompt."""
    if not prompt:
        return 0
    said = set(re.findall(r"\d+", normalise(spoken, language)))
    shown = set(re.findall(r"\d+", normalise(prompt, language)))
    heard = re.findall(r"\d+", normalise(transcript, language))
    return sum(1 for n in heard if n not in said and n in shown)


# -- clips -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpokenClip:
    language: str
    command: Command
    voice: str
    wav: bytes
    tts: str = ESPEAK


def make_clips(languages: Sequence[str], limit: int | None, engines: Sequence[str], *,
               every_voice: bool = False) -> list[SpokenClip]:
    """Each command spoken once, by each engine's voices in turn; or, with ``every_voice``, once by
    every voice (a set several times larger, so one clip moves the accuracy by less)."""
    clips = []
    for tts in engines:
        for language in languages:
            voices = SPEAKERS[tts].get(language)
            if not voices:
                continue
            for n, command in enumerate(COMMANDS[language][:limit]):
                for turn in range(len(voices)) if every_voice else (0,):
                    voice = voices[(n + turn) % len(voices)]
                    speech = synthesize(command.spoken, language, voice=voice,
                                        rate_wpm=RATES[(n // len(voices) + turn) % len(RATES)])
                    clips.append(SpokenClip(language, command, voice, speech.at_rate(PHONE_RATE).wav_bytes(), tts))
    return clips


# -- runs --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    backend: str
    model: str
    language: str
    tts: str
    biased: bool
    clips: int
    wer: float
    e2e: float
    copied: int
    rtf_p50: float
    rtf_p90: float


@dataclass(frozen=True, slots=True)
class Reading:
    clip: SpokenClip
    text: str
    right: bool
    rtf: float
    copied: int


def _p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] if ordered else float("nan")


def whole_command(parser: EmbeddedParser, language: str) -> Callable[[str], bool]:
    def whole(text: str) -> bool:
        parse = parser.parse(text, language=language, contacts=CONTACTS)
        return is_whole_command(parse.intent, parse.missing)

    return whole


def run(service: SpeechService, parser: EmbeddedParser, clips: Sequence[SpokenClip], *,
        biased: bool) -> list[Reading]:
    readings = []
    for clip in clips:
        audio = decode_audio(clip.wav, max_seconds=service.settings.max_audio_s)
        started = time.perf_counter()
        try:
            # As the voice channel reads a first turn: a biased reading that is not a whole command
            # is read again without the prompt (`SpeechService.transcribe_clip`'s `accept`).
            transcript = service.transcribe_clip(audio, clip.language, CONTACTS, biased=biased,
                                                 accept=whole_command(parser, clip.language))
            text, prompt = transcript.text, transcript.prompt
        except AudioError:  # Whisper made no words of it
            text, prompt = "", None
        rtf = (time.perf_counter() - started) / audio.seconds
        readings.append(Reading(clip, text, understood(parser, text, clip.language, clip.command), rtf,
                                copied_numbers(text, clip.command.spoken, prompt, clip.language)))
    return readings


def summarise(backend: str, model: str, language: str, tts: str, biased: bool, readings: Sequence[Reading]) -> Row:
    references = [normalise(r.clip.command.spoken, language) for r in readings]
    hypotheses = [normalise(r.text, language) for r in readings]
    rtfs = [r.rtf for r in readings]
    return Row(backend, model, language, tts, biased, len(readings), jiwer.wer(references, hypotheses),
               sum(r.right for r in readings) / len(readings), sum(r.copied for r in readings),
               statistics.median(rtfs), _p90(rtfs))


def load_service(backend: str, model: str, threads: int, cache_dir: Path, beam_size: int,
                 numbers_in_words: Sequence[str] = SpeechSettings().numbers_in_words) -> SpeechService | str:
    """A loaded service, or why it cannot be had."""
    settings = SpeechSettings(backend=backend, model=model, cpu_threads=threads, workers=1, model_cache_dir=cache_dir,
                              beam_size=beam_size, numbers_in_words=tuple(numbers_in_words))
    service = SpeechService(settings)
    try:
        service.load()
    except (SpeechUnavailable, ModelUnavailable, ImportError, RuntimeError) as error:
        return f"{type(error).__name__}: {error}"
    return service


def main(args: argparse.Namespace) -> None:
    languages = [x for x in args.languages.split(",") if x]
    models = [x for x in args.models.split(",") if x]
    backends = [x for x in args.backends.split(",") if x]
    for name, known in (("language", COMMANDS), ("model", CATALOGUE), ("backend", (FASTER_WHISPER, OPENAI_WHISPER))):
        chosen = {"language": languages, "model": models, "backend": backends}[name]
        if unknown := [x for x in chosen if x not in known]:
            raise SystemExit(f"unknown {name}: {', '.join(unknown)} (known: {', '.join(known)})")
    threads = args.threads or os.cpu_count() or 1
    numbers_in_words = [x for x in args.numbers_in_words.split(",") if x]
    cache_dir = Path(args.model_cache_dir)
    log("training the embedded NLU parser …")
    with tempfile.TemporaryDirectory(prefix="sauti-bench-voice-") as scratch:
        parser = load_embedded_parser(cache_dir=Path(scratch))
    engines = [x for x in args.tts.split(",") if x]
    if unknown := [x for x in engines if x not in SPEAKERS]:
        raise SystemExit(f"unknown tts: {', '.join(unknown)} (known: {', '.join(SPEAKERS)})")
    if FLITE in engines and not ("en" in languages and flite_available()):
        if "en" in languages:
            log("CMU Flite is not installed (apt-get install flite, or make bench-voice): English by eSpeak NG only")
        engines.remove(FLITE)
    if not engines:
        raise SystemExit("no text-to-speech engine left to speak the commands")
    log(f"speaking {sum(len(COMMANDS[x][:args.limit]) for x in languages)} commands with {' and '.join(engines)} "
        f"{'in every voice ' if args.every_voice else ''}at 8 kHz …")
    clips = make_clips(languages, args.limit, engines, every_voice=args.every_voice)
    ceiling = {x: sum(understood(parser, c.command.spoken, x, c.command) for c in clips if c.language == x)
               / max(1, sum(c.language == x for c in clips)) for x in languages}

    rows: list[Row] = []
    absent: list[str] = []
    failures: list[str] = []
    for backend in backends:
        for model in models:
            log(f"loading {model} ({backend}, {threads} threads) …")
            loaded = load_service(backend, model, threads, cache_dir, args.beam_size, numbers_in_words)
            if isinstance(loaded, str):
                absent.append(f"{backend} {model}: not measured ({loaded})")
                log(absent[-1])
                continue
            multilingual = CATALOGUE[model].multilingual
            for language in languages:
                if not multilingual and language != "en":
                    absent.append(f"{backend} {model} {language}: not measured ({model} reads English only)")
                    continue
                for tts in engines:
                    subset = [c for c in clips if c.language == language and c.tts == tts]
                    if not subset:
                        continue
                    for biased in (False, True):
                        mode = "biased" if biased else "plain"
                        log(f"  {backend} {model} {language} {tts} {mode}: {len(subset)} clips …")
                        readings = run(loaded, parser, subset, biased=biased)
                        rows.append(summarise(backend, model, language, tts, biased, readings))
                        failures += [f"{backend} {model} {language} {mode} {r.clip.voice}: "
                                     f"{r.clip.command.spoken!r} -> {r.text!r}" for r in readings if not r.right]

    flite = f"; Flite voices {', '.join(FLITE_VOICES)} (English)" if FLITE in engines else ""
    print(f"\nSpoken commands: eSpeak NG voices {', '.join(v for x in languages for v in VOICES[x])}{flite} at "
          f"{'/'.join(map(str, RATES))} words/min, 8 kHz 16-bit WAV; {os.cpu_count()} CPU cores, {threads} threads "
          f"for Whisper, beam {args.beam_size}, numbers in words in: {', '.join(numbers_in_words) or 'none'}; "
          "RTF = (VAD + Whisper time) / clip length")
    print("Anchor, the parser on the exact words spoken (the most speech can reach): "
          + ", ".join(f"{x} {ceiling[x]:.0%}" for x in languages))
    print(f"{'backend':<15} {'model':<8} {'lang':<4} {'tts':<6} {'biasing':<7} {'clips':>5} {'WER':>6} {'e2e':>5} "
          f"{'copied':>6} {'RTF p50':>7} {'RTF p90':>7}")
    for r in rows:
        print(f"{r.backend:<15} {r.model:<8} {r.language:<4} {r.tts:<6} {'on' if r.biased else 'off':<7} {r.clips:>5} "
              f"{r.wer:>6.1%} {r.e2e:>5.0%} {r.copied:>6} {r.rtf_p50:>7.2f} {r.rtf_p90:>7.2f}")
    for line in absent:
        print(line)
    default = (FASTER_WHISPER, "base", "en", True)
    for target in (r for r in rows if (r.backend, r.model, r.language, r.biased) == default):
        met = target.e2e >= 0.9 and target.rtf_p50 <= 0.5
        print(f"target (English, faster-whisper base, biased; spoken by {target.tts}): e2e >= 90 % and RTF <= 0.5: "
              f"e2e {target.e2e:.0%}, RTF p50 {target.rtf_p50:.2f} (p90 {target.rtf_p90:.2f}): "
              f"{'met' if met else 'NOT met'}")
    if args.errors:
        print("\nmisunderstood:")
        for line in failures:
            print(f"  {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny.en,base", help="model sizes, comma-separated")
    parser.add_argument("--languages", default="en,sw,fr", help="languages, comma-separated")
    parser.add_argument("--backends", default="faster-whisper,openai-whisper", help="backends, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="commands per language (default: all 20)")
    parser.add_argument("--threads", type=int, default=0, help="Whisper's CPU threads (default: every core)")
    parser.add_argument("--beam-size", type=int, default=SpeechSettings().beam_size,
                        help="beam search width (default: speech.beam_size's default)")
    parser.add_argument("--model-cache-dir", default=str(ROOT / "var" / "models"),
                        help="where split models are assembled")
    parser.add_argument("--numbers-in-words", default=",".join(SpeechSettings().numbers_in_words),
                        help="languages Whisper writes numbers in words in (speech.numbers_in_words; '' for none)")
    parser.add_argument("--tts", default=f"{ESPEAK},{FLITE}",
                        help="text-to-speech engines that speak the commands (Flite: English only, when installed)")
    parser.add_argument("--every-voice", action="store_true",
                        help="speak every command in every voice, not each in one voice in turn")
    parser.add_argument("--errors", action="store_true", help="list every misunderstood clip")
    main(parser.parse_args())
