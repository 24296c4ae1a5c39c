"""The Rasa backend against a local HTTP server that answers like Rasa 3.6's `POST /model/parse`.

The server is real HTTP (aiohttp on 127.0.0.1, in its own thread and event loop, so the CLI's
`asyncio.run` can talk to it too); only its answers are canned, in Rasa's exact response format.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web
from click.testing import CliRunner

from gateway.commands.nlu import nlu as nlu_cli
from nlu import intents as i
from nlu.rasa_backend import RasaError, RasaParser
from nlu.results import AsyncParser


def _entity(text: str, said: str, entity: str, value: str, extractor: str = "DIETClassifier") -> dict:
    start = text.index(said)
    answer: dict = {"entity": entity, "start": start, "end": start + len(said)}
    if extractor == "DIETClassifier":
        answer["confidence_entity"] = 0.998
    return answer | {"value": value, "extractor": extractor, "processors": ["EntitySynonymMapper"]}


def _answer(text: str, intent: str, confidence: float, entities: list[dict], ranking: list[tuple[str, float]]) -> dict:
    """A /model/parse answer shaped as Rasa 3.6.21 writes it (checked against a real server running
    the exported project)."""
    tokens, position = [], 0
    for word in text.split():
        start = text.index(word, position)
        tokens.append([start, start + len(word)])
        position = start + len(word)
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "entities": entities,
        "text_tokens": tokens,
        "intent_ranking": [{"name": name, "confidence": c} for name, c in ranking],
    }


SEEN = web.AppKey("seen", list)
SEND = "tuma 500 kwa donkamao"
FALLBACK = "blah blah"
DOUBT = "send 200 maybe"
EXTRA = "pay bill 888880 for my house A12"
OVERLAP = "pay gotv subscription one thousand two hundred"
ANSWERS = {
    SEND: _answer(SEND, "send_money", 0.97,
                  [_entity(SEND, "500", "amount", "500"), _entity(SEND, "donkamao", "recipient", "donkamao")],
                  [("send_money", 0.97), ("pay_bill", 0.02)]),
    FALLBACK: _answer(FALLBACK, "nlu_fallback", 0.4, [],
                      [("nlu_fallback", 0.4), ("help", 0.3), ("out_of_scope", 0.2)]),
    DOUBT: _answer(DOUBT, "send_money", 0.35, [_entity(DOUBT, "200", "amount", "200")],
                   [("send_money", 0.35), ("deposit", 0.3)]),
    EXTRA: _answer(EXTRA, "pay_bill", 0.9, [_entity(EXTRA, "A12", "account_number", "A12")],
                   [("pay_bill", 0.9)]),
    OVERLAP: _answer(OVERLAP, "pay_bill", 0.99,
                     [_entity(OVERLAP, "gotv", "paybill", "423655", "RegexEntityExtractor"),
                      _entity(OVERLAP, "two hundred", "account_number", "two hundred")],
                     [("pay_bill", 0.99)]),
    "balance": _answer("balance", "check_balance", 0.99, [], [("check_balance", 0.99)]),
}


async def _parse(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[SEEN].append((body, dict(request.query)))
    text = body["text"]
    if text == "boom":
        return web.json_response({"version": "3.6.21", "status": "failure", "message": "boom", "code": 500},
                                 status=500)
    if text == "garbage":
        return web.Response(text="<html>not json</html>", content_type="text/html")
    if text == "slow":
        await asyncio.sleep(1.0)
    answer = ANSWERS.get(text) or _answer(text, "out_of_scope", 0.9, [], [("out_of_scope", 0.9)])
    return web.json_response(answer)


@pytest.fixture(scope="module")
def rasa_server() -> Iterator[tuple[str, list]]:
    seen: list = []
    ready = threading.Event()
    state: dict = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app[SEEN] = seen
        app.router.add_post("/model/parse", _parse)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        state["port"] = runner.addresses[0][1]
        state["loop"], state["runner"] = loop, runner
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{state['port']}", seen
    state["loop"].call_soon_threadsafe(state["loop"].stop)
    thread.join(10)


@pytest.fixture
async def rasa(rasa_server, training_data):
    url, _ = rasa_server
    async with RasaParser(url, data=training_data) as parser:
        yield parser


async def test_is_an_async_parser(rasa) -> None:
    assert isinstance(rasa, AsyncParser)


async def test_intent_from_rasa_entities_normalised(rasa, contacts) -> None:
    parse = await rasa.parse(SEND, contacts=contacts)
    assert (parse.intent, parse.confidence, parse.amount, parse.missing) == (i.SEND_MONEY, 0.97, 500, ())
    assert type(parse.amount) is int
    assert parse.recipient == contacts[0]
    assert parse.language == "sw"


async def test_fallback_asks_for_clarification(rasa) -> None:
    parse = await rasa.parse(FALLBACK)
    assert (parse.intent, parse.guess) == (i.CLARIFY, i.HELP)


async def test_low_confidence_is_never_a_payment(rasa) -> None:
    parse = await rasa.parse(DOUBT)
    assert (parse.intent, parse.guess, parse.amount) == (i.CLARIFY, i.SEND_MONEY, 200)


async def test_entity_only_rasa_found_is_added(rasa) -> None:
    parse = await rasa.parse(EXTRA)
    assert parse.intent == i.PAY_BILL
    assert {e.type: e.value for e in parse.entities} == {"paybill": "888880", "account_number": "A12"}
    assert parse.missing == ("amount",)


async def test_rasa_entities_over_claimed_words_are_ignored(rasa) -> None:
    parse = await rasa.parse(OVERLAP)
    assert {e.type: e.value for e in parse.entities} == {"paybill": "423655", "amount": 1200}


async def test_sends_text_and_token(rasa_server, training_data) -> None:
    url, seen = rasa_server
    async with RasaParser(url + "/", token="s3cret", data=training_data) as parser:
        await parser.parse("balance")
    assert seen[-1] == ({"text": "balance"}, {"token": "s3cret"})


@pytest.mark.parametrize("text", ["boom", "garbage"])
async def test_server_errors_raise(rasa, text: str) -> None:
    with pytest.raises(RasaError):
        await rasa.parse(text)


async def test_timeout_raises(rasa_server, training_data) -> None:
    url, _ = rasa_server
    async with RasaParser(url, timeout_s=0.2, data=training_data) as parser:
        with pytest.raises(RasaError):
            await parser.parse("slow")


async def test_unreachable_server_raises(training_data, unused_tcp_port: int) -> None:
    async with RasaParser(f"http://127.0.0.1:{unused_tcp_port}", data=training_data) as parser:
        with pytest.raises(RasaError, match="failed"):
            await parser.parse("balance")


def test_cli_evaluates_the_rasa_backend(rasa_server, tmp_path) -> None:
    url, _ = rasa_server
    testset = tmp_path / "testset.yml"
    testset.write_text(
        'version: "3.1"\n'
        "contacts:\n  - {name: John Kamau, nickname: null, phone: \"+254712345678\"}\n"
        "nlu:\n- intent: send_money\n  metadata: {language: sw}\n  examples: |\n"
        '    - tuma [500](amount) kwa [donkamao]{"entity": "recipient", "value": "John Kamau"}\n'
        "- intent: check_balance\n  metadata: {language: en}\n  examples: |\n    - balance\n"
    )
    result = CliRunner().invoke(nlu_cli, ["eval", "--backend", "rasa", "--rasa-url", url, "--data", str(testset)])
    assert result.exit_code == 0, result.output
    assert "backend=rasa, 2 utterances" in result.output
    assert "intent accuracy: 100.0%" in result.output
    assert re.search(r"recipient\s+100\.0%", result.output)


def test_cli_eval_takes_the_nlu_settings(rasa_server, tmp_path) -> None:
    """`sauti nlu eval` measures the parser the gateway would use: backend, Rasa server and token,
    confidence threshold from the `nlu:` section (it used its own defaults, and no token); options win."""
    from gateway.cli import main

    url, seen = rasa_server
    testset = tmp_path / "testset.yml"
    testset.write_text('version: "3.1"\nnlu:\n- intent: send_money\n  metadata: {language: en}\n  examples: |\n'
                       f"    - {DOUBT.replace('200', '[200](amount)')}\n")
    config = tmp_path / "config.yml"
    config.write_text(f"nlu:\n  backend: rasa\n  rasa_url: {url}\n  rasa_token: t0ken-from-settings\n"
                      "  confidence_threshold: 0.3\n")
    runner = CliRunner()
    sure = runner.invoke(main, ["--config", str(config), "nlu", "eval", "--data", str(testset)])
    assert sure.exit_code == 0, sure.output
    # At 0.3 Rasa's 0.35 is a payment; at the gateway's default (0.4) it would be a question.
    assert "backend=rasa, 1 utterances" in sure.output and "intent accuracy: 100.0%" in sure.output
    assert seen[-1] == ({"text": DOUBT}, {"token": "t0ken-from-settings"})
    doubtful = runner.invoke(main, ["--config", str(config), "nlu", "eval", "--data", str(testset),
                                    "--threshold", "0.4"])
    assert doubtful.exit_code == 0 and "intent accuracy: 0.0%" in doubtful.output, doubtful.output


def test_cli_eval_finds_its_test_set_from_any_directory(rasa_server, tmp_path, monkeypatch) -> None:
    url, _ = rasa_server
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(nlu_cli, ["eval", "--backend", "rasa", "--rasa-url", url, "--failures", "0"])
    assert result.exit_code == 0, result.output
    assert re.search(r"backend=rasa, [0-9]{3,} utterances", result.output)  # tests/nlu/testset.yml
