"""Random walks through every journey: what a hurried, careless or hostile caller types, hop after
hop, through ``POST /ussd`` exactly as Africa's Talking sends it, on the whole gateway (both session
stores). The transcript tests check that each journey does what it should; these check that no
input anywhere leads off the map: every answer is a ``CON``/``END`` screen within 182 GSM-7
characters, never the "something went wrong" screen, never a traceback in the logs; a hop the
network resends answers exactly as it did; and the ledger balances afterwards (the autouse check).

The walks are seeded (``WALKS`` seeds in blocks, one after another, then ``CONCURRENT_WALKS`` eight at
a time): a failure names its seed and prints the walk's transcript; a walk alone reruns the same way."""

from __future__ import annotations

import asyncio
import logging
import random
import re

import pytest

from tests.ussd.test_ussd_agents import agent
from tests.ussd.ussd_world import CATALOGS, PIN, Phone, customer, phone_number

WALKS, BLOCKS, HOPS = 200, 4, 16
CONCURRENT_WALKS = 96
#: The catch-all screen, in every language: a walk that reaches it found a bug.
SORRY = {language: CATALOGS.text(language, "sys.error") for language in CATALOGS.texts}
MOVED = {CATALOGS.text(language, "sys.moved") for language in CATALOGS.texts}

# What callers type, by kind, with how often (weights). Numbers to send to are filled in per walk.
_JUNK = ("abc", "#", "*", "**", "1*2", "'; DROP TABLE users; --", "é", "😀", "x" * 120, "\t", "%00", "١٢٣", "0x1F",
         " 1 ", "1.", "+", "NaN", "1e9", "\x00", "1\x1b", "Wanjiru Kamau", "ACC-1", "888880", "123456")
#: A screen's numbered options ("1. Send money").
OPTION = re.compile(r"^(\d+)\. ", re.MULTILINE)
_AMOUNTS = ("1", "50", "500", "0", "-5", "1.5", "10,000", "2500.50", "999999999999", "70000", "00050")


def _typed(rng: random.Random, numbers: list[str], screen: str = "") -> str:
    """Mostly what the screen asks for (one of its options, a PIN, an amount, a number), so that
    walks get deep into the journeys; otherwise anything at all."""
    if rng.random() < 0.7:
        options = OPTION.findall(screen)
        if "PIN" in screen:
            return PIN if rng.random() < 0.85 else rng.choice(("9999", "1234", "25800"))
        if options:
            return rng.choice(options)
        if "KES" in screen or "XOF" in screen:
            return rng.choice(_AMOUNTS)
        if screen:
            return rng.choice((*numbers, "Wanjiru Kamau", "888880", "ACC-1", "123456"))
    roll = rng.random()
    if roll < 0.34:
        return str(rng.randint(0, 9))
    if roll < 0.42:
        return rng.choice(("0", "00", "98"))
    if roll < 0.54:
        return PIN if rng.random() < 0.85 else rng.choice(("9999", "1234", "25800"))
    if roll < 0.64:
        return rng.choice(numbers)
    if roll < 0.78:
        return rng.choice(_AMOUNTS)
    if roll < 0.84:
        return ""  # a typed "*": an empty segment
    return rng.choice(_JUNK)


async def _callers(gw, rng: random.Random) -> list[tuple[str, str]]:
    """(msisdn, language) of who dials in one walk: a Kenyan or Senegalese customer with money, an
    agent, or a number Sauti has never seen."""
    roll = rng.random()
    if roll < 0.45:
        language = rng.choice(("en", "sw"))
        return [((await customer(gw, language=language, funds=rng.choice((0, 300, 5000)))).phone, language)]
    if roll < 0.65:
        language = rng.choice(("fr", "wo"))
        user = await customer(gw, country="SN", language=language, funds=rng.choice((0, 2000)))
        return [(user.phone, language)]
    if roll < 0.85:
        user, _ = await agent(gw, language=rng.choice(("en", "sw")), float_=rng.choice((0, 2000)))
        return [(user.phone, user.language.value)]
    return [(phone_number(), "en")]


async def _world(gw) -> list[str]:
    """A payee and an agent every walk may name, and the numbers walks type."""
    payee = await customer(gw, name="Juma Mwangi")
    agent_user, agent_number = await agent(gw)
    return ["0" + payee.phone[4:], payee.phone, agent_number, "0712345678", "+221770000001", "12",
            "0" + agent_user.phone[4:]]


async def _checked_walk(phone: Phone, seed: int, language: str, numbers: list[str], caplog) -> None:
    rng = random.Random(seed)
    transcript = [f"seed {seed}, caller {phone.msisdn} ({language}):"]
    try:
        await _walk(phone, rng, numbers, transcript)
    except (AssertionError, RuntimeError) as exc:  # a screen too long, an answer that is not CON/END
        raise AssertionError("\n".join((str(exc), *transcript))) from None
    assert not any(sorry in screen for screen in phone.screens for sorry in SORRY.values()), "\n".join(transcript)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, "\n".join((tracebacks[0].getMessage(), *transcript))


@pytest.mark.parametrize("block", range(BLOCKS))
async def test_random_walks_stay_on_the_map(gw, phone_for, caplog, block):
    caplog.set_level(logging.WARNING)
    numbers = await _world(gw)
    for seed in range(block * WALKS // BLOCKS, (block + 1) * WALKS // BLOCKS):
        (msisdn, language), = await _callers(gw, random.Random(-seed))
        await _checked_walk(phone_for(msisdn), seed, language, numbers, caplog)


async def test_concurrent_random_walks_stay_on_the_map(gw, phone_for, caplog):
    """Walks eight at a time, paying the same payee and agent, and every other pair from one number
    on two sessions at once (Africa's Talking allows it; the store keys sessions, not numbers)."""
    caplog.set_level(logging.WARNING)
    numbers = await _world(gw)
    for group in range(CONCURRENT_WALKS // 8):
        seeds = range(WALKS + group * 8, WALKS + (group + 1) * 8)
        callers = [(await _callers(gw, random.Random(-seed)))[0] for seed in seeds]
        callers = [callers[i - 1] if i % 4 == 3 else caller for i, caller in enumerate(callers)]
        await asyncio.gather(*(_checked_walk(phone_for(msisdn), seed, language, numbers, caplog)
                               for seed, (msisdn, language) in zip(seeds, callers, strict=True)))


async def _walk(phone: Phone, rng: random.Random, numbers: list[str], transcript: list[str]) -> None:
    """Dial (sometimes with a dial-string extension), then ``HOPS`` times: type, have the network
    resend the last hop (the same screen must come back), or hang up and dial again."""
    extension = "*".join(_typed(rng, numbers) for _ in range(rng.choice((0, 0, 0, 1, 2))))
    transcript.append(f"dial {extension!r} -> {await phone.dial(extension)!r}")
    for _ in range(HOPS):
        roll = rng.random()
        if roll < 0.05 and not phone.ended:
            before = phone.screen
            transcript.append(f"(resent) -> {await phone.retry()!r}")
            # Unless another session of the number took this one over (it offered to continue it,
            # and the caller said yes), as a resent hop of a session dropped and redialled would be.
            assert phone.screen in (before, *MOVED), "a resent hop answered differently"
        elif phone.ended or roll < 0.08:
            transcript.append(f"redial -> {await phone.dial()!r}")
        else:
            typed = _typed(rng, numbers, phone.screen)
            transcript.append(f"type {typed!r} -> {await phone.type(typed)!r}")
