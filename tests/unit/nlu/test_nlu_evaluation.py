"""The evaluation report: scores, confusion, exact match and the CLI around it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.commands.nlu import nlu as nlu_cli
from nlu.evaluation import build_report, evaluate
from nlu.intents import CLARIFY
from nlu.results import Entity, Parse
from nlu.training_data import Annotation, Example, parse_document


def _example(text: str, intent: str, *entities: tuple[str, str]) -> Example:
    return Example(text, intent, "en", tuple(Annotation(t, v, 0, 1) for t, v in entities))


def _parse(text: str, intent: str, *entities: tuple[str, int | str], guess: str | None = None) -> Parse:
    return Parse(text, intent, 0.9, tuple(Entity(t, v, "x", 0, 1) for t, v in entities), guess=guess)


def test_scores() -> None:
    examples = [
        _example("a", "send_money", ("amount", "500")),
        _example("b", "send_money", ("amount", "200")),
        _example("c", "check_balance"),
        _example("d", "help"),
    ]
    parses = [
        _parse("a", "send_money", ("amount", 500)),
        _parse("b", CLARIFY, ("amount", 300), guess="send_money"),  # a question counts as wrong
        _parse("c", "send_money", ("amount", 5)),  # an invented amount is an error too
        _parse("d", "help"),
    ]
    report = build_report("test", examples, parses, [1.0, 2.0, 3.0, 4.0])
    assert report.intent_accuracy == pytest.approx(0.5)
    scores = {s.intent: s for s in report.intents}
    assert scores["send_money"].precision == pytest.approx(0.5)
    assert scores["send_money"].recall == pytest.approx(0.5)
    assert scores["help"].f1 == pytest.approx(1.0)
    assert report.exact_match("amount") == pytest.approx(1 / 3)
    assert report.exact_match("phone") == 1.0  # never seen, never wrong
    row = report.confusion[report.labels.index("send_money")]
    assert row[report.labels.index(CLARIFY)] == 1
    assert sum(map(sum, report.confusion)) == 4
    assert (report.latency_p50_ms, report.latency_p99_ms) == (3.0, 4.0)
    text = report.to_text()
    assert "intent accuracy: 50.0%" in text and "clarify(send_money)" in text


def test_evaluate_small_set(parser) -> None:
    data = parse_document(
        'version: "3.1"\ncontacts:\n  - {name: John Kamau, nickname: null, phone: "+254712345678"}\n'
        "nlu:\n- intent: send_money\n  metadata: {language: sw}\n  examples: |\n"
        '    - tuma [elfu moja]{"entity": "amount", "value": "1000"} kwa '
        '[donkamao]{"entity": "recipient", "value": "John Kamau"}\n',
        name="small.yml")
    report = evaluate(parser, data, passes=2)
    assert report.intent_accuracy == 1.0
    assert report.exact_match("amount") == 1.0 and report.exact_match("recipient") == 1.0
    assert 0 < report.latency_p50_ms <= report.latency_p99_ms


def test_cli_eval_embedded(tmp_path: Path, nlu_cache: Path, parser) -> None:
    testset = tmp_path / "t.yml"
    testset.write_text('version: "3.1"\nnlu:\n- intent: check_balance\n  metadata: {language: en}\n'
                       "  examples: |\n    - whats my balance\n")
    result = CliRunner().invoke(nlu_cli, ["eval", "--data", str(testset), "--cache-dir", str(nlu_cache)])
    assert result.exit_code == 0, result.output
    assert "intent accuracy: 100.0%" in result.output and "p99" in result.output


@pytest.mark.parametrize(
    "content",
    ["nlu: [", 'version: "3.1"\nnlu: []\n', "nlu:\n- intent: unknown_thing\n  examples: |\n    - x\n"],
)
def test_cli_eval_rejects_bad_data(tmp_path: Path, content: str) -> None:
    testset = tmp_path / "bad.yml"
    testset.write_text(content)
    result = CliRunner().invoke(nlu_cli, ["eval", "--data", str(testset)])
    assert result.exit_code != 0
    assert "Error" in result.output


def test_cli_eval_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(nlu_cli, ["eval", "--data", str(tmp_path / "nope.yml")])
    assert result.exit_code != 0 and "no such test set" in result.output
