"""Contextual biasing: what Whisper is told before it listens, so that it hears Sauti's commands and
the caller's own contacts rather than the nearest common English words.

Whisper reads an *initial prompt* as if it were the text just before the clip and continues in its
vocabulary and style. A short context of natural sentences (not a word list: Whisper imitates what
it is shown) carrying the command words of the caller's language ("send", "pay bill", "till",
"M-Pesa", "Wave", "shillings"/"francs", amounts written in digits, or in words where Whisper is to
write numbers as words: `nlu.numeral_tokens`) and the names in their address
book makes Whisper write "Check my balance" where, unprimed, it heard "Here's my melon" on a
poor phone line (on `bench.voice`'s English clips, base's end-to-end accuracy goes from 25 % to 50 %).

Names are what a caller says: the nickname ("Mama") and the given name ("Juma" for "Juma Otieno");
full names are left out, as Whisper then strings surnames together ("Kamau Otieno") where one name
was said.

Two rules keep the prompt from doing harm:
- It never holds a paybill, till, agent or phone number: Whisper copies digits it was shown into
  what it writes, and a copied account number is a payment to the wrong place. Example amounts are
  round numbers, and a dialog reads every amount back before the PIN is asked.
- It fits: Whisper keeps at most 223 tokens of prompt (faster-whisper drops the oldest). Names are
  added in the order given (callers put favourites and the most-paid first) until `max_chars` is
  reached (about 2.3 characters a token in these languages: 440 characters stay under 200 tokens).
  Names that do not fit go to `hotwords` (faster-whisper's own biasing, put before the prompt
  with a budget of its own); when all fit, there are none (repeating them there made no
  difference on `bench.voice`'s clips but a longer context).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nlu.results import Contact

#: Whisper keeps 223 prompt tokens; these languages average ~2.3 characters a token.
DEFAULT_MAX_CHARS = 440
#: Names listed at most (a long address book is cut to its first entries).
DEFAULT_MAX_NAMES = 24


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """One language's command context: `sentences` (the vocabulary, in natural sentences), the same
    with its amounts in words (`sentences_in_words`; None: they are already), and how a list of
    names is introduced and closed ("Send money to" … "or" …)."""

    sentences: str
    names_intro: str
    names_or: str
    sentences_in_words: str | None = None


VOCABULARIES: dict[str, Vocabulary] = {
    "en": Vocabulary(
        sentences=("Send 1,500 shillings to Mama. Send 2,000 to this number. Pay bill, account number, "
                   "amount 1,000. Buy goods, till number, 300 shillings. Withdraw 5,000 from the agent, "
                   "store number. Withdraw to M-Pesa. Withdraw to Wave. Deposit 500. Top up from M-Pesa. "
                   "Check my balance. Mini statement."),
        names_intro="Send money to", names_or="or",
        # Whisper forbidden to write digits but shown them writes "$$$" for the amounts it hears.
        sentences_in_words=("Send one thousand five hundred shillings to Mama. Send two thousand to this number. "
                            "Pay bill, account number, amount one thousand. Buy goods, till number, three "
                            "hundred shillings. Withdraw five thousand from the agent, store number. Withdraw "
                            "to M-Pesa. Withdraw to Wave. Deposit five hundred. Top up from M-Pesa. Check my "
                            "balance. Mini statement.")),
    "sw": Vocabulary(
        sentences=("Tuma shilingi elfu moja kwa Mama. Tuma pesa kwa namba hii. Lipa bili, namba ya "
                   "akaunti, kiasi. Lipa till, mia tatu. Toa pesa kwa wakala, namba ya stoo. Toa elfu "
                   "mbili kwenda M-Pesa. Toa kwenda Wave. Weka pesa. Angalia salio. Taarifa fupi."),
        names_intro="Tuma pesa kwa", names_or="au"),
    "fr": Vocabulary(
        sentences=("Envoie 5 000 francs à Awa. Envoie de l'argent à ce numéro. Payer la facture Senelec, "
                   "numéro de compte, montant. Payer le marchand, code marchand. Retirer 10 000 francs "
                   "chez l'agent. Retirer vers Wave. Retirer vers M-Pesa. Déposer 2 000. Recharger mon "
                   "compte. Mon solde. Mes dernières transactions."),
        names_intro="Envoie de l'argent à", names_or="ou",
        sentences_in_words=("Envoie cinq mille francs à Awa. Envoie de l'argent à ce numéro. Payer la facture "
                            "Senelec, numéro de compte, montant. Payer le marchand, code marchand. Retirer dix "
                            "mille francs chez l'agent. Retirer vers Wave. Retirer vers M-Pesa. Déposer deux "
                            "mille. Recharger mon compte. Mon solde. Mes dernières transactions.")),
}

#: Spoken languages Whisper cannot read are decoded as the one their speakers mix in (Wolof
#: callers pay in French words: "envoie", "retrait", "francs").
DECODE_AS = {"wo": "fr"}


def decoding_language(language: str | None) -> str | None:
    """The Whisper language to decode `language` as (None: let Whisper detect it)."""
    if language is None:
        return None
    return DECODE_AS.get(language, language)


@dataclass(frozen=True, slots=True)
class Bias:
    """What a recognizer is primed with: `prompt` (initial prompt, previous-text context) and
    `hotwords` (faster-whisper); None when there is nothing to say."""

    prompt: str | None
    hotwords: str | None


NO_BIAS = Bias(None, None)


def contact_names(contacts: Sequence[Contact], *, limit: int = DEFAULT_MAX_NAMES) -> list[str]:
    """The names a caller says for `contacts`, in their order, without repeats: the nickname
    ("Mama") before the given name ("Grace" of "Grace Wanjiru")."""
    names: list[str] = []
    seen: set[str] = set()
    for contact in contacts:
        given = contact.name.split()[0] if contact.name.split() else ""
        for name in (contact.nickname, given):
            cleaned = " ".join((name or "").split())
            if cleaned and cleaned.casefold() not in seen:
                seen.add(cleaned.casefold())
                names.append(cleaned)
        if len(names) >= limit:
            break
    return names[:limit]


def _name_sentence(vocabulary: Vocabulary | None, names: Sequence[str]) -> str:
    if vocabulary is None:  # no language: the names alone
        return ", ".join(names) + "."
    if len(names) == 1:
        return f"{vocabulary.names_intro} {names[0]}."
    return f"{vocabulary.names_intro} {', '.join(names[:-1])} {vocabulary.names_or} {names[-1]}."


def build_bias(language: str | None, contacts: Sequence[Contact] = (), *,
               max_chars: int = DEFAULT_MAX_CHARS, max_names: int = DEFAULT_MAX_NAMES,
               numbers_in_words: bool = False) -> Bias:
    """The prompt and hotwords for a caller speaking `language` ("en", "sw", "fr", "wo"; None:
    unknown, then only the names are given, as they are the same in every language) with address
    book `contacts` (favourites and most-paid first); its amounts in words when Whisper is to
    write `numbers_in_words`."""
    names = contact_names(contacts, limit=max_names)
    decode_as = decoding_language(language)
    vocabulary = VOCABULARIES.get(decode_as) if decode_as else None
    if vocabulary is None and not names:
        return NO_BIAS
    context = ""
    if vocabulary is not None:
        context = (vocabulary.sentences_in_words or vocabulary.sentences) if numbers_in_words else vocabulary.sentences
    # Names go in while the whole still fits (the vocabulary alone is well under the budget).
    kept: list[str] = []
    for name in names:
        if len(f"{context} {_name_sentence(vocabulary, [*kept, name])}".strip()) > max_chars:
            break
        kept.append(name)
    prompt = f"{context} {_name_sentence(vocabulary, kept)}".strip() if kept else context
    left = names[len(kept):]
    return Bias(_fit(prompt, max_chars) or None, " ".join(left) or None)


def _fit(text: str, max_chars: int) -> str:
    """`text` cut at a word boundary to `max_chars`."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0]
