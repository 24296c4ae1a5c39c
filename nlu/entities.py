"""Entity extraction: runs the deterministic extractors in order and masks what they found.

Order matters, because the same digits can be several things: numbers after a keyword ("paybill",
"account", "agent") first, then bank and biller names, then phone numbers, then amounts, and last
the recipient among the words nobody claimed. The masked text ("pay zzamount to paybill zzpaybill
account zzaccountnumber") is what the intent classifier reads.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from nlu.amounts import CURRENCY_AFTER, CURRENCY_WORDS, choose_amount, find_amounts
from nlu.contacts import compact, match_contact
from nlu.intents import ACCOUNT, AMOUNT, BANK, CURRENCY, PHONE, RECIPIENT, RECIPIENT_NAME
from nlu.lookups import LookupMatcher
from nlu.number_spelling import repair_scale_words
from nlu.numbers_words import ALL_NUMBER_WORDS, FR, LANGUAGES
from nlu.phones import KE, SN, find_phones
from nlu.references import FILLERS, KEYWORDS, find_accounts_after_banks, find_references
from nlu.results import Contact, Entity
from nlu.spoken_digits import ALL_DIGIT_WORDS
from nlu.tokens import Token

# Words after which an unknown name is whom the money goes to ("to Wanjiku", "kwa Otieno",
# "à Ndeye", "mpe Baraka", "tuma Kamau 500").
RECIPIENT_CUES = frozenset({"to", "for", "send", "give", "pay", "kwa", "mpe", "umpe", "ampe", "tuma",
                            "mtumie", "a", "pour", "envoie", "envoyer", "envoyez", "transfere"})
_MAX_NAME_WORDS = 3
# How close a word must be to a known word to be taken as its typo rather than a name.
_TYPO_SCORE = 85
_TYPO_MIN_LENGTH = 4
# Currency words said apart from the number ("send 500 to Awa in francs").
_LONE_CURRENCY = frozenset({"francs", "fcfa", "cfa", "shillings", "shilingi", "bob"})
_FRANCOPHONE_WORDS = frozenset({"francs", "fcfa", "cfa", "xof"})


@dataclass(frozen=True, slots=True)
class Extraction:
    """Entities in text order, and the masked text for the intent classifier."""

    entities: tuple[Entity, ...]
    masked: str


class _Claims:
    """Which tokens belong to which entity so far, and the entities found."""

    def __init__(self, text: str, tokens: Sequence[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.kinds: dict[int, str] = {}  # token index -> entity type
        self.entities: list[Entity] = []

    def take(self, kind: str, value: int | str, start: int, end: int, contact: Contact | None = None,
             *, emit: bool = True) -> None:
        """Claim tokens `[start, end)`; `emit=False` masks them without making an entity."""
        for k in range(start, end):
            self.kinds[k] = kind
        if emit:
            first, last = self.tokens[start].start, self.tokens[end - 1].end
            self.entities.append(Entity(kind, value, self.text[first:last], first, last, contact))

    def __contains__(self, index: object) -> bool:
        return index in self.kinds


class EntityExtractor:
    """Extracts entities with the lookups and vocabulary learned from the training data."""

    def __init__(self, lookups: LookupMatcher, vocabulary: Collection[str]) -> None:
        # Words of the requests themselves: never taken for a name.
        self._known = (
            frozenset(vocabulary) | {w for k in KEYWORDS for w in k} | FILLERS | CURRENCY_WORDS
            | frozenset(ALL_DIGIT_WORDS) | ALL_NUMBER_WORDS
        )
        self._known_list = sorted(w for w in self._known if len(w) >= _TYPO_MIN_LENGTH)
        self._lookups = lookups

    def extract(
        self,
        text: str,
        tokens: Sequence[Token],
        *,
        language: str,
        contacts: Sequence[Contact] = (),
        recipient_spans: Sequence[tuple[int, int]] | None = None,
    ) -> Extraction:
        """Find the entities of `text`. `recipient_spans` (token ranges) replaces contact matching
        when training, where the annotated names are known but no address book is."""
        tokens = repair_scale_words(tokens, self._known)
        claims = _Claims(text, tokens)
        self._references(claims)
        self._phones(claims, language)
        self._amount(claims, language)
        if recipient_spans is not None:
            for start, end in recipient_spans:
                claims.take(RECIPIENT, "", start, end, emit=False)
        else:
            self._recipient(claims, contacts)
        entities = sorted(claims.entities, key=lambda e: (e.start, e.end))
        return Extraction(tuple(entities), _mask(tokens, claims.kinds))

    def _references(self, claims: _Claims) -> None:
        """Keyword numbers, then bank and biller names, then an account number after a bank name."""
        for reference in find_references(claims.tokens, claims.text):
            claims.take(reference.type, reference.value, reference.token_start, reference.token_end)
        bank_ends = []
        for lookup in self._lookups.find(claims.tokens, claims.kinds):
            claims.take(lookup.type, lookup.value, lookup.token_start, lookup.token_end)
            if lookup.type == BANK:
                bank_ends.append(lookup.token_end)
        if ACCOUNT not in claims.kinds.values():
            for account in find_accounts_after_banks(claims.tokens, bank_ends, claims.kinds):
                claims.take(account.type, account.value, account.token_start, account.token_end)

    @staticmethod
    def _phones(claims: _Claims, language: str) -> None:
        # A bare "77 123 45 67" is Senegalese when the speaker is francophone, Kenyan otherwise.
        francophone = language == FR or any(t.text in _FRANCOPHONE_WORDS for t in claims.tokens)
        for phone in find_phones(claims.tokens, claims.kinds, (SN, KE) if francophone else (KE, SN)):
            claims.take(PHONE, phone.value, phone.token_start, phone.token_end)

    @staticmethod
    def _amount(claims: _Claims, language: str) -> None:
        order = (language, *(lang for lang in LANGUAGES if lang != language))
        amounts = find_amounts(claims.tokens, claims.kinds, order)
        # Two amounts, or one in doubt (a fraction, a foreign currency, digits left over beside it),
        # give none: the dialog asks "How much?" rather than paying a guess.
        chosen = choose_amount(amounts, claims.tokens, claims.kinds)
        # Every amount is masked, only the chosen one becomes an entity.
        for amount in amounts:
            claims.take(AMOUNT, amount.value, amount.token_start, amount.token_end, emit=amount is chosen)
        if chosen is None:
            return
        if chosen.currency is not None and chosen.currency_token is not None:
            token = claims.tokens[chosen.currency_token]
            claims.entities.append(Entity(CURRENCY, chosen.currency, claims.text[token.start:token.end],
                                          token.start, token.end))
            return
        for k, token in enumerate(claims.tokens):
            if k not in claims and token.text in _LONE_CURRENCY:
                claims.take(CURRENCY, CURRENCY_AFTER[token.text], k, k + 1)
                return

    def _recipient(self, claims: _Claims, contacts: Sequence[Contact]) -> None:
        tokens = claims.tokens
        runs = self._name_runs(claims)
        spans = [
            (compact(" ".join(tokens[k].text for k in range(start, end))), start, end)
            for run_start, run_end in runs
            for start in range(run_start, run_end)
            for end in range(start + 1, min(run_end, start + _MAX_NAME_WORDS) + 1)
        ]
        # Whisper splits the first letter off a name that starts with a vowel sound ("Achieng" as
        # "a chain", "Aminata" as "a mina ta"): a lone letter right before a run is tried as the
        # start of each name there. Where it is a word of its own ("to a friend", "à Awa") the
        # name without it scores higher and wins.
        run_starts = {run_start for run_start, _ in runs}
        spans += [
            (compact(tokens[start - 1].text) + text, start - 1, end)
            for text, start, end in spans
            if start in run_starts and start > 0 and self._lone_letter(claims, start - 1)
        ]
        found = match_contact(spans, contacts)
        if found is not None:
            claims.take(RECIPIENT, found.contact.name, found.token_start, found.token_end, found.contact)
            return
        # No contact: a name right after "to"/"kwa"/"à" is still whom the user means. It is kept
        # unresolved so the dialog can ask for the number.
        for run_start, run_end in runs:
            if run_start == 0 or tokens[run_start - 1].text not in RECIPIENT_CUES:
                continue
            end = run_start
            while end < min(run_end, run_start + _MAX_NAME_WORDS) and not self._is_typo_of_known(tokens[end].text):
                end += 1
            if end > run_start:
                first, last = tokens[run_start].start, tokens[end - 1].end
                name = " ".join(w.capitalize() for w in claims.text[first:last].split())
                claims.take(RECIPIENT_NAME, name, run_start, end)
                return

    def _name_runs(self, claims: _Claims) -> list[tuple[int, int]]:
        """Maximal runs of unclaimed words that are not part of the requests' own vocabulary."""
        runs: list[tuple[int, int]] = []
        start: int | None = None
        for k, token in enumerate([*claims.tokens, None]):
            candidate = (
                token is not None and k not in claims and token.is_word and len(token.text) > 1
                and token.text not in self._known
            )
            if candidate and start is None:
                start = k
            elif not candidate and start is not None:
                runs.append((start, k))
                start = None
        return runs

    @staticmethod
    def _lone_letter(claims: _Claims, k: int) -> bool:
        token = claims.tokens[k]
        return k not in claims and token.is_word and len(compact(token.text)) == 1

    def _is_typo_of_known(self, word: str) -> bool:
        if len(word) < _TYPO_MIN_LENGTH:
            return False
        return process.extractOne(word, self._known_list, scorer=fuzz.ratio, score_cutoff=_TYPO_SCORE) is not None


def _placeholder(kind: str) -> str:
    # A resolved contact and an unknown name play the same part in a sentence.
    if kind in (RECIPIENT, RECIPIENT_NAME):
        return "zzperson"
    return "zz" + kind.replace("_", "")


# Spellings of one word that the tokenizer splits: "m-pesa" and "m pesa" are "mpesa".
_COMPOUNDS = {("m", "pesa"): "mpesa"}


def _mask(tokens: Sequence[Token], kinds: dict[int, str]) -> str:
    words: list[str] = []
    previous: str | None = None
    for k, token in enumerate(tokens):
        kind = kinds.get(k)
        if kind is not None:
            if kind != previous:  # one placeholder per entity, however many words it spans
                words.append(_placeholder(kind))
        elif words and (words[-1], token.text) in _COMPOUNDS:
            words[-1] = _COMPOUNDS[(words[-1], token.text)]
        elif token.is_word:
            words.append(token.text)
        elif token.is_number:
            words.append("zznum")
        previous = kind
    return " ".join(words)
