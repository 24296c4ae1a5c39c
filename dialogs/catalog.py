"""Language catalogs: every text a screen shows, per language, loaded from ``dialogs/catalogs/*.yml``.

A catalog is a flat mapping ``key: text``; texts name the values they show as ``{amount}``. Every
language must have every key, with the same placeholders (checked when the catalogs load), and
texts are normalised to GSM-7 when loaded (`dialogs.gsm7`), so a translator's curly quote or
``ç`` never switches a screen to UCS-2.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from dialogs.gsm7 import normalise

CATALOG_DIR = Path(__file__).resolve().parent / "catalogs"
#: The languages of the USSD screens, in the order a language menu lists them.
LANGUAGES: tuple[str, ...] = ("en", "sw", "fr", "wo")


class CatalogError(Exception):
    """Catalogs that cannot serve every screen; the message names each missing or odd key."""


def placeholders(text: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name)


class _Values(dict):
    """Format values where a missing one shows as nothing rather than failing a screen."""

    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class Catalogs:
    texts: Mapping[str, Mapping[str, str]]
    #: Each text's placeholders, worked out on first use: rendering asks at every hop which values a
    #: screen shows (only those are normalised), and the texts never change once loaded.
    _fields: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict, init=False, repr=False,
                                                           compare=False)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.texts)

    def has(self, key: str) -> bool:
        return all(key in texts for texts in self.texts.values())

    def fields(self, language: str, key: str) -> frozenset[str]:
        """The names of the values the text of ``key`` shows (``{amount}`` → ``amount``)."""
        found = self._fields.get((language, key))
        if found is None:
            found = self._fields[(language, key)] = placeholders((self.texts.get(language) or self.texts["en"])[key])
        return found

    def text(self, language: str, key: str, values: Mapping[str, object] | None = None, *,
             normalised: bool = False) -> str:
        """The text of ``key`` with ``values`` filled in (normalised to GSM-7 unless the caller says
        they already are: rendering normalises a screen's values once, not once per line)."""
        template = (self.texts.get(language) or self.texts["en"])[key]
        if "{" not in template:
            return template
        if not values:
            return template.format_map(_Values())
        if normalised:
            return template.format_map(_Values(values))
        return template.format_map(_Values({k: normalise(str(v)) for k, v in values.items()}))


@functools.cache
def screen_catalogs() -> Catalogs:
    """The channel's catalogs (`CATALOG_DIR`), read and checked once per process: the USSD journeys,
    the voice channel's notes and the SMS receipts all use them, and they never change once loaded."""
    return load_catalogs()


def load_catalogs(directory: Path = CATALOG_DIR, languages: tuple[str, ...] = LANGUAGES) -> Catalogs:
    """Read and check every language's catalog; raises `CatalogError` naming each problem."""
    texts: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for language in languages:
        path = directory / f"{language}.yml"
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CatalogError(f"catalog {path}: {exc}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise CatalogError(f"catalog {path} must map keys to texts")
        texts[language] = {str(k): normalise(v.rstrip("\n")) for k, v in loaded.items()}
    reference = texts[languages[0]]
    for language, catalog in texts.items():
        for key in sorted(set(reference) - set(catalog)):
            problems.append(f"{language}: missing {key}")
        for key in sorted(set(catalog) - set(reference)):
            problems.append(f"{language}: {key} is not in {languages[0]}")
        for key in sorted(set(reference) & set(catalog)):
            if placeholders(reference[key]) != placeholders(catalog[key]):
                problems.append(f"{language}: {key} shows {sorted(placeholders(catalog[key]))}, "
                                f"{languages[0]} shows {sorted(placeholders(reference[key]))}")
    if problems:
        raise CatalogError("catalogs disagree:\n  " + "\n  ".join(problems))
    return Catalogs(MappingProxyType({lang: MappingProxyType(t) for lang, t in texts.items()}))
