"""The intent classifier: TF-IDF over words, word pairs and character n-grams of the masked
utterance, and a multinomial logistic regression.

Entities are masked before classification ("tuma elfu moja kwa Mama" reads "tuma zzamount kwa
zzperson"), so the model learns the shape of a request, not the amounts in the examples; character
n-grams carry it through typos and missing accents. scikit-learn fits the model (imported only when
training); parsing is a handful of numpy operations over the features present, well under a
millisecond. The fitted weights are saved as a plain `.npz` (no pickle) keyed by the data's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump when features or training change, so cached models from older code are not reused.
FORMAT_VERSION = 1
# Inverse regularisation strength: the data is small and clean, so fit it closely; this also makes
# probabilities sharp enough for a meaningful confidence threshold.
DEFAULT_C = 30.0
_CHAR_SIZES = (2, 3, 4, 5)
_SKIP_WINDOW = 3


def features(masked: str) -> list[str]:
    """Words, word pairs (with sentence edges) and character n-grams of each non-placeholder word."""
    words = masked.split()
    found = [f"w:{w}" for w in words]
    found += [f"b:{a}|{b}" for a, b in zip(["<s>", *words], [*words, "</s>"], strict=True)]
    # Word pairs a little apart keep direction: "from my bank account to mpesa" vs "from mpesa to bank".
    found += [f"s:{words[i]}|{words[j]}" for i in range(len(words))
              for j in range(i + 2, min(len(words), i + 1 + _SKIP_WINDOW))]
    for word in words:
        if word.startswith("zz"):
            continue
        padded = f" {word} "
        for size in _CHAR_SIZES:
            found += [f"c:{padded[i:i + size]}" for i in range(len(padded) - size + 1)]
    return found


@dataclass(frozen=True)
class IntentModel:
    """Fitted weights: one row per feature, one column per intent."""

    classes: tuple[str, ...]
    vocabulary: dict[str, int]
    idf: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def rank(self, masked: str) -> list[tuple[str, float]]:
        """Intents with their probabilities, most likely first."""
        counts: dict[int, int] = {}
        lookup = self.vocabulary.get
        for feature in features(masked):
            k = lookup(feature)
            if k is not None:
                counts[k] = counts.get(k, 0) + 1
        if counts:
            index = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            # sublinear tf x idf, L2-normalised: what TfidfVectorizer(sublinear_tf=True) computes.
            values = (1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))) * self.idf[index]
            values /= np.sqrt(values @ values)
            scores = values @ self.weights[index] + self.bias
        else:
            scores = self.bias.copy()
        scores = np.exp(scores - scores.max())
        scores /= scores.sum()
        order = np.argsort(-scores)
        return [(self.classes[k], float(scores[k])) for k in order]

    def save(self, path: Path) -> None:
        names = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez_compressed(temporary, format_version=np.array(FORMAT_VERSION), classes=np.array(self.classes),
                            features=np.array(names), idf=self.idf, weights=self.weights, bias=self.bias)
        temporary.replace(path)  # atomic: a parser starting meanwhile never reads half a file

    @classmethod
    def load(cls, path: Path) -> IntentModel | None:
        """The model saved at `path`, or None when missing, unreadable or from older code."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                if int(saved["format_version"]) != FORMAT_VERSION:
                    return None
                names = saved["features"].tolist()
                return cls(tuple(saved["classes"].tolist()), {n: i for i, n in enumerate(names)},
                           saved["idf"], saved["weights"], saved["bias"])
        except (OSError, KeyError, ValueError):
            return None


def train(texts: Sequence[str], labels: Sequence[str], *, c: float = DEFAULT_C) -> IntentModel:
    """Fit the model on masked texts."""
    # Imported here: scikit-learn takes a second to import and is only needed to train.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer=features, sublinear_tf=True)
    matrix = vectorizer.fit_transform(texts)
    # A loose tolerance: the ranking is settled long before lbfgs' default one (0.7 s, not 3 s).
    model = LogisticRegression(C=c, max_iter=500, tol=1e-3, class_weight="balanced")
    model.fit(matrix, labels)
    classes = tuple(str(k) for k in model.classes_)
    return IntentModel(
        classes,
        {str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
        vectorizer.idf_.astype(float),
        np.ascontiguousarray(model.coef_.T, dtype=float),
        model.intercept_.astype(float),
    )
