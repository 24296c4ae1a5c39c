"""A config.yml section read into one of nlu's settings dataclasses (`NluSettings`,
`SpeechSettings`): unknown keys are an error, not a silent typo, and paths become `Path`s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(cls: type[T], section: str, values: Mapping[str, Any], *, paths: Iterable[str] = ()) -> T:
    """``cls`` built from ``values`` (the ``section:`` of config.yml); ``paths`` are the keys
    holding a path."""
    unknown = set(values) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"unknown {section} settings: {', '.join(sorted(unknown))}")
    converted = dict(values)
    for key in paths:
        if converted.get(key) is not None:
            converted[key] = Path(converted[key])
    return cls(**converted)
