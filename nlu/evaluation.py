"""Evaluation: runs a backend over a labelled test set and reports how well it does.

Intent accuracy (overall and per language), per-intent precision/recall/F1, a confusion matrix,
entity exact match per entity type, and parse latency p50/p99. A parse that asks for clarification
counts as wrong: the figure is what users get, not what the model guessed.

Entity exact match for a type counts the utterances where the gold data or the parse has that type,
and is right when both have the same values: a missed amount and an invented one are both errors.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nlu.intents import CLARIFY, ENTITY_TYPES, INTENTS
from nlu.results import AsyncParser, Contact, Parse, Parser
from nlu.training_data import Example, TrainingData

# The embedded parser is timed over this many passes after one warm-up pass, so p99 is the
# steady state of a running server and not one cold cache.
TIMED_PASSES = 3


@dataclass(frozen=True, slots=True)
class IntentScore:
    intent: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class EntityScore:
    """Exact match for one entity type over the utterances where it appears (gold or parsed)."""

    type: str
    matched: int
    total: int

    @property
    def exact_match(self) -> float:
        return self.matched / self.total if self.total else 1.0


@dataclass(frozen=True, slots=True)
class Failure:
    """One utterance the backend got wrong, for the report's tail."""

    text: str
    language: str
    expected: str
    predicted: str
    confidence: float
    wrong_entities: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    """The outcome of one evaluation run."""

    backend: str
    examples: int
    intent_accuracy: float
    accuracy_by_language: dict[str, float]
    intents: tuple[IntentScore, ...]
    entities: tuple[EntityScore, ...]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: expected, columns: predicted, in `labels` order
    latency_p50_ms: float
    latency_p99_ms: float
    failures: tuple[Failure, ...]

    def exact_match(self, entity_type: str) -> float:
        return next((e.exact_match for e in self.entities if e.type == entity_type), 1.0)

    def to_text(self, *, failures: int = 25) -> str:
        lines = [
            f"NLU evaluation: backend={self.backend}, {self.examples} utterances",
            f"intent accuracy: {self.intent_accuracy:.1%}  ("
            + ", ".join(f"{lang} {acc:.1%}" for lang, acc in sorted(self.accuracy_by_language.items())) + ")",
            f"latency: p50 {self.latency_p50_ms:.3f} ms, p99 {self.latency_p99_ms:.3f} ms",
            "",
            "entity exact match:",
        ]
        lines += [f"  {e.type:<16} {e.exact_match:7.1%}  ({e.matched}/{e.total})" for e in self.entities]
        lines += ["", f"  {'intent':<18} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}"]
        lines += [f"  {s.intent:<18} {s.precision:9.2f} {s.recall:7.2f} {s.f1:6.2f} {s.support:4d}"
                  for s in self.intents]
        lines += ["", "confusion matrix (rows expected, columns predicted):"]
        lines.append("  " + " " * 21 + "".join(f"{k:>4}" for k in range(len(self.labels))))
        for k, (label, row) in enumerate(zip(self.labels, self.confusion, strict=True)):
            cells = "".join(f"{v:>4}" if v else "   ." for v in row)
            lines.append(f"  {k:>2} {label:<18}{cells}")
        if self.failures and failures:
            lines += ["", f"failures (first {min(failures, len(self.failures))} of {len(self.failures)}):"]
            for f in self.failures[:failures]:
                wrong = f"  entities: {', '.join(f.wrong_entities)}" if f.wrong_entities else ""
                lines.append(f"  [{f.language}] {f.text!r}: {f.expected} -> {f.predicted} "
                             f"({f.confidence:.2f}){wrong}")
        return "\n".join(lines)


def _values(pairs: Sequence[tuple[str, str]], entity_type: str) -> Counter[str]:
    return Counter(v for t, v in pairs if t == entity_type)


def _gold(example: Example) -> list[tuple[str, str]]:
    return [(a.type, a.value) for a in example.entities]


def _predicted(parse: Parse) -> list[tuple[str, str]]:
    return [(e.type, str(e.value)) for e in parse.entities]


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build_report(backend: str, examples: Sequence[Example], parses: Sequence[Parse],
                 latencies_ms: Sequence[float]) -> Report:
    """Score parses against their examples."""
    labels = (*INTENTS, CLARIFY)
    position = {label: k for k, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    right_by_language: Counter[str] = Counter()
    seen_by_language: Counter[str] = Counter()
    entity_hits: Counter[str] = Counter()
    entity_seen: Counter[str] = Counter()
    failures: list[Failure] = []
    for example, parse in zip(examples, parses, strict=True):
        matrix[position[example.intent]][position.get(parse.intent, position[CLARIFY])] += 1
        seen_by_language[example.language] += 1
        right = parse.intent == example.intent
        right_by_language[example.language] += right
        gold, predicted = _gold(example), _predicted(parse)
        wrong: list[str] = []
        for entity_type in ENTITY_TYPES:
            expected, got = _values(gold, entity_type), _values(predicted, entity_type)
            if not expected and not got:
                continue
            entity_seen[entity_type] += 1
            if expected == got:
                entity_hits[entity_type] += 1
            else:
                wrong.append(f"{entity_type} {sorted(expected.elements())} != {sorted(got.elements())}")
        if not right or wrong:
            said = f"{CLARIFY}({parse.guess})" if parse.intent == CLARIFY else parse.intent
            failures.append(Failure(example.text, example.language, example.intent, said,
                                    parse.confidence, tuple(wrong)))
    scores = []
    for intent in INTENTS:
        k = position[intent]
        true_positive = matrix[k][k]
        predicted_total = sum(row[k] for row in matrix)
        support = sum(matrix[k])
        precision = true_positive / predicted_total if predicted_total else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(IntentScore(intent, precision, recall, f1, support))
    total = len(examples)
    return Report(
        backend=backend,
        examples=total,
        intent_accuracy=sum(right_by_language.values()) / total if total else 0.0,
        accuracy_by_language={lang: right_by_language[lang] / n for lang, n in seen_by_language.items()},
        intents=tuple(scores),
        entities=tuple(EntityScore(t, entity_hits[t], entity_seen[t]) for t in ENTITY_TYPES if entity_seen[t]),
        labels=labels,
        confusion=tuple(tuple(row) for row in matrix),
        latency_p50_ms=_percentile(latencies_ms, 0.50),
        latency_p99_ms=_percentile(latencies_ms, 0.99),
        failures=tuple(failures),
    )


def _timed(call: Callable[[], Parse]) -> tuple[Parse, float]:
    start = time.perf_counter_ns()
    parse = call()
    return parse, (time.perf_counter_ns() - start) / 1e6


def evaluate(parser: Parser, data: TrainingData, *, backend: str = "embedded",
             passes: int = TIMED_PASSES) -> Report:
    """Evaluate a synchronous backend on `data` (parsed with the data's contacts)."""
    contacts: tuple[Contact, ...] = data.contacts
    for example in data.examples:  # warm-up: caches, lazily built address book
        parser.parse(example.text, contacts=contacts)
    parses: list[Parse] = []
    latencies: list[float] = []
    for run in range(max(1, passes)):
        for example in data.examples:
            parse, elapsed = _timed(lambda e=example: parser.parse(e.text, contacts=contacts))
            latencies.append(elapsed)
            if run == 0:
                parses.append(parse)
    return build_report(backend, data.examples, parses, latencies)


async def evaluate_async(parser: AsyncParser, data: TrainingData, *, backend: str = "rasa") -> Report:
    """Evaluate an asynchronous backend (one pass: a network round trip dominates its latency)."""
    parses: list[Parse] = []
    latencies: list[float] = []
    for example in data.examples:
        start = time.perf_counter_ns()
        parses.append(await parser.parse(example.text, contacts=data.contacts))
        latencies.append((time.perf_counter_ns() - start) / 1e6)
    return build_report(backend, data.examples, parses, latencies)
