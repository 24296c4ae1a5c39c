"""Business numbers introduced by a keyword: paybill, till, account, agent and store numbers.

"paybill 888880 account 12345", "namba ya biashara 247247", "till no. 5123456", "agent 123456 store
001", "akaunti 0123-456", "numéro de compteur 14123456789", spoken "till five one two three ...".
The keyword is what tells an account number from an amount, so a number without one is left to the
amount and phone extractors.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from nlu.amounts import CURRENCY_AFTER, CURRENCY_BEFORE
from nlu.numbers_words import read_number_words
from nlu.spoken_digits import ALL_DIGIT_WORDS, read_digit_run
from nlu.tokens import Token

PAYBILL, TILL, ACCOUNT, AGENT, STORE = "paybill", "till", "account_number", "agent_number", "store_number"
REFERENCE_TYPES = (PAYBILL, TILL, ACCOUNT, AGENT, STORE)

# Folded word sequences that announce each kind of number; the longest match wins.
KEYWORDS: dict[tuple[str, ...], str] = {
    ("paybill",): PAYBILL, ("paybil",): PAYBILL, ("pay", "bill"): PAYBILL, ("bill",): PAYBILL,
    ("bili",): PAYBILL,  # "lipa bili 888880": Swahili speakers say the English word their way
    ("business",): PAYBILL, ("biashara",): PAYBILL, ("biz",): PAYBILL,
    ("till",): TILL, ("til",): TILL, ("goods",): TILL, ("marchand",): TILL, ("merchant",): TILL,
    ("agent",): AGENT, ("wakala",): AGENT, ("ajenti",): AGENT,
    ("store",): STORE, ("stoo",): STORE, ("duka",): STORE,
    ("account",): ACCOUNT, ("acc",): ACCOUNT, ("acct",): ACCOUNT, ("ac",): ACCOUNT,
    ("a", "/", "c"): ACCOUNT, ("akaunti",): ACCOUNT, ("akaunt",): ACCOUNT, ("compte",): ACCOUNT,
    ("reference",): ACCOUNT, ("ref",): ACCOUNT, ("meter",): ACCOUNT, ("mita",): ACCOUNT,
    ("compteur",): ACCOUNT, ("contrat",): ACCOUNT, ("smartcard",): ACCOUNT, ("smart", "card"): ACCOUNT,
    ("id",): ACCOUNT,
}
# Single keywords long enough to be recognised through a typo ("acount", "tilll", "paybil").
_FUZZY_KEYWORDS = sorted(k[0] for k in KEYWORDS if len(k) == 1 and len(k[0]) >= 4)
_TYPO_SCORE = 85
# "my account 5000" names where money goes, then how much: after a possessive, a short number is
# an amount, not an account number.
_POSSESSIVES = frozenset({"my", "mon", "ma", "mes"})
_MIN_DIGITS_AFTER_POSSESSIVE = 6
_LONGEST_KEYWORD = max(len(k) for k in KEYWORDS)
# Words allowed between a keyword and its number: "paybill number ni 888880", "till no. 123456".
FILLERS = frozenset({"no", "number", "num", "nambari", "namba", "nomba", "numero", "#", ":", ".", "ni",
                     "is", "ya", "de", "du", "est", "yake", "the", "n", "°", "code"})
# How many digits each kind of number has; outside this, the number is something else (an amount).
_DIGITS = {PAYBILL: (5, 7), TILL: (5, 7), AGENT: (5, 7), STORE: (1, 5), ACCOUNT: (1, 24)}
# Characters an account number may carry between its digits ("0123-456", "KCA/123").
_ACCOUNT_JOINERS = frozenset({"-", "/"})


@dataclass(frozen=True, slots=True)
class ReferenceMatch:
    """A keyword-introduced number: its value spans tokens `[token_start, token_end)`, and the
    keyword starts at `keyword_start`."""

    type: str
    value: str
    token_start: int
    token_end: int
    keyword_start: int


def _keyword_at(words: Sequence[str], i: int) -> tuple[str, int] | None:
    for length in range(_LONGEST_KEYWORD, 0, -1):
        kind = KEYWORDS.get(tuple(words[i:i + length]))
        if kind is not None:
            return kind, i + length
    return None


def _misspelt_keyword_at(tokens: Sequence[Token], words: Sequence[str], i: int) -> tuple[str, int] | None:
    """A keyword typed with a typo ("acount 123"); only tried where a number follows."""
    if len(words[i]) < 4 or not words[i].isalpha() or words[i] in FILLERS or words[i] in ALL_DIGIT_WORDS:
        return None  # a digit said in words is never a misspelt keyword ("mbili" is two, not "bili")
    after = i + 1
    while after < len(words) and words[after] in FILLERS:
        after += 1
    if after >= len(words) or not (tokens[after].is_number or words[after] in ALL_DIGIT_WORDS):
        return None
    found = process.extractOne(words[i], _FUZZY_KEYWORDS, scorer=fuzz.ratio, score_cutoff=_TYPO_SCORE)
    return (KEYWORDS[(found[0],)], i + 1) if found is not None else None


def _followed_by_currency(tokens: Sequence[Token], words: Sequence[str], end: int) -> bool:
    """Whether a currency comes right after the number ending at `end`, or after the rest of a
    French space-grouped number ("compte 10 000 F")."""
    if len(tokens[end - 1].text) <= 3:
        while end < len(tokens) and tokens[end].is_number and len(tokens[end].text) == 3:
            end += 1
    if end + 1 < len(tokens) and tokens[end].text in CURRENCY_BEFORE and (
            tokens[end + 1].is_number or read_number_words(words, end + 1) is not None):
        # "account 12345 ksh 500", "akaunti 12345 shilingi elfu moja": the currency belongs to the
        # amount after it
        return False
    return end < len(tokens) and tokens[end].text in CURRENCY_AFTER


def _read_account(tokens: Sequence[Token], text: str, i: int) -> tuple[str, int] | None:
    """An account number: touching letters, digits and joiners, with at least one digit."""
    end = i + 1
    while (
        end < len(tokens)
        and tokens[end].start == tokens[end - 1].end
        and (tokens[end].kind != "symbol" or tokens[end].text in _ACCOUNT_JOINERS)
    ):
        end += 1
    while end > i + 1 and tokens[end - 1].text in _ACCOUNT_JOINERS:
        end -= 1
    value = text[tokens[i].start:tokens[end - 1].end]
    return (value.upper(), end) if any(c.isdigit() for c in value) else None


def _read_value(
    tokens: Sequence[Token], words: Sequence[str], text: str, kind: str, i: int, claimed: Collection[int]
) -> tuple[str, int] | None:
    """The number after a keyword, typed or read out digit by digit."""
    if i >= len(tokens) or i in claimed:
        return None
    spoken = read_digit_run(tokens, i, claimed, spoken_only=True)
    if spoken:
        return "".join(g.digits for g in spoken), spoken[-1].end
    if kind == ACCOUNT and tokens[i].kind != "symbol":
        return _read_account(tokens, text, i)
    if kind == STORE:
        # A store is a small number, often said as one: "store twelve", "duka kumi na mbili".
        said = read_number_words(words, i)
        if said is not None and not any(k in claimed for k in range(i, said.end)):
            return str(said.value), said.end
    if tokens[i].is_number and tokens[i].text.isdigit():
        return tokens[i].text, i + 1
    return None


def find_references(tokens: Sequence[Token], text: str, claimed: Collection[int] = ()) -> list[ReferenceMatch]:
    """Every keyword-introduced number in the utterance (`text` is the original, for account
    numbers that keep their letters)."""
    words = [t.text for t in tokens]
    found: list[ReferenceMatch] = []
    i = 0
    while i < len(tokens):
        keyword = _keyword_at(words, i) if i not in claimed else None
        if keyword is None and i not in claimed:
            keyword = _misspelt_keyword_at(tokens, words, i)
        if keyword is None:
            i += 1
            continue
        kind, pos = keyword
        while pos < len(tokens) and words[pos] in FILLERS:
            pos += 1
        read = _read_value(tokens, words, text, kind, pos, claimed)
        if read is None:
            i += 1
            continue
        value, end = read
        low, high = _DIGITS[kind]
        if kind == ACCOUNT and i > 0 and words[i - 1] in _POSSESSIVES:
            low = max(low, _MIN_DIGITS_AFTER_POSSESSIVE)
        digits = sum(c.isdigit() for c in value)
        # A number with a currency after it is money, whatever came before ("pay bill 10000 bob").
        if not low <= digits <= high or _followed_by_currency(tokens, words, end):
            i += 1
            continue
        found.append(ReferenceMatch(kind, value, pos, end, i))
        i = end
    return found


def find_accounts_after_banks(
    tokens: Sequence[Token], bank_ends: Sequence[int], claimed: Collection[int] = ()
) -> list[ReferenceMatch]:
    """Account numbers said right after a bank's name ("my Equity 0123456789", "akaunti ya KCB
    1234567890"): the bank name is the keyword. Only long numbers count, so an amount after the
    name stays an amount."""
    found: list[ReferenceMatch] = []
    for end in bank_ends:
        pos = end
        while pos < len(tokens) and (tokens[pos].text in FILLERS or KEYWORDS.get((tokens[pos].text,)) == ACCOUNT):
            pos += 1
        if (
            pos < len(tokens) and pos not in claimed and tokens[pos].is_number and tokens[pos].text.isdigit()
            and _MIN_DIGITS_AFTER_POSSESSIVE <= len(tokens[pos].text) <= _DIGITS[ACCOUNT][1]
        ):
            found.append(ReferenceMatch(ACCOUNT, tokens[pos].text, pos, pos + 1, end - 1))
    return found
