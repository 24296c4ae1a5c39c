"""Spoken commands, from the words heard to the money moved: the voice channel's conversation, shared
by the app API (`gateway.voice_api`) and phone calls (`gateway.voice_call`).

One command goes: heard (a transcript from `nlu.speech`, or typed text) → parsed (`nlu`, with the
caller's contacts for recipients) → a question for each slot still missing ("How much?"), answered
by voice or text → priced and read back ("Send 1,000 shillings to Mama (0712 345 678)? Fee 10
shillings.") → confirmed with the PIN typed on a keypad, never spoken → paid through the same
customer actions as USSD (`dialogs.customer_actions`), so fees, limits, PIN lock-out and every
error read the same on both channels. A command expires a few minutes after it was heard.

The payment's idempotency key is the command id: a confirmation sent twice pays once. The payment
keeps the transcript, the recogniser's confidence and that it was confirmed by PIN.
"""

from __future__ import annotations

import inspect
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard

from dialogs.callers import CallerDirectory
from dialogs.catalog import Catalogs
from dialogs.customer_actions import CustomerActions
from dialogs.display import money_text, phone_text
from dialogs.intent_actions import IntentActions, take
from dialogs.steps import Step
from dialogs.voice_requests import LOOKED_AT, READ_OUT, Listed, merchants, narrow, place_said
from dialogs.voice_store import (
    ANSWERED,
    ASKING,
    CANCELLED,
    CONFIRMING,
    EXECUTED,
    FAILED,
    PendingCommand,
    VoiceCommandStore,
)
from nlu import intents as nlu_intents
from nlu.numbers_words import DIGIT_WORDS
from nlu.results import Contact, Parse
from nlu.tokens import tokenize
from payments.commands import Channel
from payments.money import Currency

#: Languages the voice channel speaks: Wolof callers hear French (Whisper and eSpeak NG have no Wolof).
VOICE_LANGUAGES = ("en", "sw", "fr")

#: What each payment intent does, as the customer actions name it; balance and statement need the
#: PIN too, so they are confirmed like payments.
_KINDS = {
    nlu_intents.SEND_MONEY: "send",
    nlu_intents.PAY_BILL: "bill",
    nlu_intents.BUY_GOODS_TILL: "till",
    nlu_intents.BUY_GOODS_POCHI: "pochi",
    nlu_intents.WITHDRAW_TO_MPESA: "withdraw",
    nlu_intents.WITHDRAW_TO_WAVE: "withdraw",
    nlu_intents.DEPOSIT: "deposit",
    nlu_intents.CHECK_BALANCE: "balance",
    nlu_intents.MINI_STATEMENT: "statement",
    nlu_intents.PAY_REQUEST: "request",
}
#: Only to be done on USSD for now (an agent's store, a bank).
_NOT_BY_VOICE = frozenset({nlu_intents.WITHDRAW_CASH, nlu_intents.BANK_TO_MPESA, nlu_intents.MPESA_TO_BANK})
#: The value of the customer actions each slot (`nlu.intents.SLOTS`) fills.
_VALUE_OF_SLOT = {"amount": "typed_amount", "paybill": "paybill", "account_number": "account", "till": "till"}
_RECIPIENT_VALUE = {"send": "to_phone", "pochi": "pochi_phone"}
#: A withdrawal names its provider; it must be the one of the caller's currency.
_WITHDRAW_CURRENCY = {nlu_intents.WITHDRAW_TO_MPESA: Currency.KES, nlu_intents.WITHDRAW_TO_WAVE: Currency.XOF}
#: Someone telling their PIN aloud: refused, whatever else they said.
_SPOKEN_PIN = re.compile(r"\b(pin|pini|nenosiri|code|siri)\b.*\d|\d.*\b(pin|pini|nenosiri|code)\b", re.IGNORECASE)
_PIN_WORDS = frozenset({"pin", "pini", "nenosiri", "code", "siri"})
#: Digits said as words ("four eight two six"): Whisper writes English numbers in words.
_DIGIT_WORDS = frozenset(word for words in DIGIT_WORDS.values() for word in words)
#: How many digits said as words, after a PIN word, make a PIN said aloud (PINs have 4 or more).
_SAID_DIGITS = 3
_DIGITS = re.compile(r"\d")

#: Reply statuses beyond the command's own: the turn's outcome.
WRONG_PIN, LOCKED, EXPIRED, NOT_FOUND = "wrong_pin", "locked", "expired", "not_found"


@dataclass(frozen=True, slots=True)
class VoiceCaller:
    """Who speaks: a registered user, in the language the voice channel will use with them."""

    user_id: int
    phone: str
    name: str
    language: str

    @classmethod
    def of(cls, user_id: int, phone: str, name: str, language: str) -> VoiceCaller:
        return cls(user_id, phone, name, language if language in VOICE_LANGUAGES else "fr")


@dataclass(frozen=True, slots=True)
class Heard:
    """One turn's words: recognised speech (with the recogniser's `confidence`) or typed text (None).
    `contacts` is the caller's address book when the channel already read it (to prime the
    recogniser), so the turn does not read it again."""

    text: str
    confidence: float | None = None
    contacts: tuple[Contact, ...] | None = None


@dataclass(frozen=True, slots=True)
class VoiceReply:
    """What a channel shows or says after a turn. `status` is the command's (``asking``,
    ``confirming``, ``answered``, ``executed``, ``cancelled``, ``failed``) or the turn's outcome
    (``wrong_pin``, ``locked``, ``expired``, ``not_found``); `text` is in the caller's language."""

    command: PendingCommand | None
    status: str
    text: str
    parse: Parse | None = None


AddressBook = Callable[[int], Awaitable[Sequence[Contact]]]


class VoiceCommands:
    """The conversation. Built once by the gateway (`gateway.voice_resources`)."""

    def __init__(self, *, actions: CustomerActions, parser: Any, store: VoiceCommandStore, texts: Catalogs,
                 notes: Catalogs, callers: CallerDirectory, address_book: AddressBook, ttl_s: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.actions = actions
        self.parser = parser
        self.store = store
        self.texts = texts
        self.notes = notes
        self.callers = callers
        self.address_book = address_book
        self.ttl_s = ttl_s
        self.clock = clock
        # Requests to pay are picked, priced and paid as on USSD, by the same actions.
        self.requests = IntentActions(actions, notes)

    # -- turns ---------------------------------------------------------------------------------

    async def start(self, caller: VoiceCaller, heard: Heard, *, channel: Channel) -> VoiceReply:
        """A new command from its first words."""
        now = self.clock()
        command = PendingCommand(id=secrets.token_urlsafe(12), user_id=caller.user_id, phone=caller.phone,
                                 language=caller.language, channel=channel.value, created_at=now,
                                 expires_at=now + self.ttl_s, values=self.callers.values_for(caller.phone))
        reply = await self._first_turn(command, caller, heard)
        await self.store.save(command)
        return reply

    async def answer(self, caller: VoiceCaller, command_id: str, heard: Heard) -> VoiceReply:
        """The caller's answer to a question (or words said while the read-back waits for a PIN)."""
        command, refusal = await self._open(caller, command_id)
        if refusal is not None:
            return refusal
        assert command is not None
        if spoken_pin(heard.text):
            # IMPORTANT: before the words are kept: a command's transcripts go on its payment, which
            # operators read. What was said is dropped whole.
            return await self._saved(command, command.status, self._text(command, "pin_by_voice"), None)
        self._heard(command, heard)
        parse = await self._parse(heard, caller)
        if parse.intent in (nlu_intents.CANCEL, nlu_intents.DENY) and not _picks_a_place(command, parse):
            return await self._saved(command, CANCELLED, self._text(command, "cancelled"), parse)
        if command.status == CONFIRMING:
            # Only the keypad confirms: repeat the read-back and how to confirm.
            return await self._saved(command, CONFIRMING, self._confirm_text(command), parse)
        if command.kind == "request":
            reply = await self._request_turn(command, caller, heard, answering=True)
            await self.store.save(command)
            return reply
        filled = await self._fill(command, parse, answering=command.missing[0] if command.missing else None,
                                  said=heard.text)
        if not filled.progressed and filled.note is None:
            filled = _Fill(False, "not_understood", {})
        reply = await self._next(command, filled.note, filled.note_values, parse)
        await self.store.save(command)
        return reply

    async def confirm(self, caller: VoiceCaller, command_id: str, pin: str) -> VoiceReply:
        """The PIN, typed: check it and move the money. Confirming an executed command again
        answers its result again (nothing is paid twice)."""
        command = await self.store.load(command_id)
        if command is None or command.user_id != caller.user_id:
            return VoiceReply(None, NOT_FOUND, self._text_in(caller.language, "expired"))
        if command.status == EXECUTED:
            return VoiceReply(command, EXECUTED, command.text)
        if command.status != CONFIRMING:
            return VoiceReply(command, command.status, command.text)
        if command.expired(self.clock()):
            return await self._saved(command, FAILED, self._text(command, "expired"), None, status=EXPIRED)
        step = self._step(command, secret=pin)
        kind = command.kind or ""
        if kind == "balance":
            outcome = await self.actions.balance(step)
        elif kind == "statement":
            outcome = await self.actions.statement(step)
        elif kind == "request":
            outcome = await self.requests.pay(step)
        else:
            outcome = await self.actions.pay(step)
        if outcome == "wrong_pin":
            pin_key = "pin.call" if command.channel == Channel.VOICE.value else "pin.app"
            wrong = "wrong_pin_last" if step.note == "err.wrong_pin_last" else "wrong_pin"
            text = f'{self._text(command, wrong, tries=step.values.get("tries", ""))} {self._text(command, pin_key)}'
            return await self._saved(command, CONFIRMING, text, None, status=WRONG_PIN)
        if outcome == "locked":
            return await self._saved(command, FAILED, self._text(command, "locked"), None, status=LOCKED)
        command.result = {k: step.values[k] for k in ("ref", "balance") if k in step.values}
        command.result["outcome"] = outcome
        if outcome == "gone":
            # Paid, declined, cancelled or expired since it was read back: nothing moved.
            return await self._saved(command, FAILED, self._text(command, "request.gone"), None)
        if outcome in ("failed", "refused") or (outcome == "empty" and kind != "statement"):
            return await self._saved(command, FAILED, self._failure(command, step), None)
        return await self._saved(command, EXECUTED, self._result_text(command, outcome, step), None)

    async def cancel(self, caller: VoiceCaller, command_id: str) -> VoiceReply:
        command, refusal = await self._open(caller, command_id)
        if refusal is not None:
            return refusal
        assert command is not None
        return await self._saved(command, CANCELLED, self._text(command, "cancelled"), None)

    async def get(self, caller: VoiceCaller, command_id: str) -> VoiceReply:
        command = await self.store.load(command_id)
        if command is None or command.user_id != caller.user_id:
            return VoiceReply(None, NOT_FOUND, self._text_in(caller.language, "expired"))
        if command.is_open and command.expired(self.clock()):
            return VoiceReply(command, EXPIRED, self._text(command, "expired"))
        return VoiceReply(command, command.status, command.text)

    def whole_command_check(self, caller: VoiceCaller, contacts: Sequence[Contact]) -> Callable[[str], bool] | None:
        """For the recogniser (`nlu.speech`): whether a reading of a first turn is a whole command
        this caller could mean. None with a parser that answers asynchronously (a Rasa server):
        the check runs on the recogniser's thread."""
        if inspect.iscoroutinefunction(self.parser.parse):
            return None

        def whole(text: str) -> bool:
            parse = self.parser.parse(text, language=caller.language, contacts=contacts)
            return nlu_intents.is_whole_command(parse.intent, parse.missing)

        return whole

    # -- understanding ---------------------------------------------------------------------------

    async def _first_turn(self, command: PendingCommand, caller: VoiceCaller, heard: Heard) -> VoiceReply:
        if spoken_pin(heard.text):  # as in `answer`: not kept
            return self._set(command, ANSWERED, self._text(command, "pin_by_voice"), None)
        self._heard(command, heard)
        parse = await self._parse(heard, caller)
        command.intent = parse.intent
        if parse.intent in (nlu_intents.CANCEL, nlu_intents.DENY):
            return self._set(command, CANCELLED, self._text(command, "cancelled"), parse)
        if parse.intent == nlu_intents.HELP:
            return self._set(command, ANSWERED, self._text(command, "help"), parse)
        if parse.intent in _NOT_BY_VOICE:
            return self._set(command, ANSWERED, self._text(command, "unavailable"), parse)
        kind = _KINDS.get(parse.intent)
        wanted = _WITHDRAW_CURRENCY.get(parse.intent)
        if kind is None:
            # A doubtful reading (CLARIFY), "yes" out of the blue, or nothing Sauti does.
            return self._set(command, ANSWERED, self._text(command, "not_understood"), parse)
        if wanted is not None and wanted.value != command.values["currency"]:
            return self._set(command, ANSWERED, self._text(command, "unavailable"), parse)
        command.kind = kind
        if kind == "request":
            return await self._request_turn(command, caller, heard, answering=False)
        command.missing = [slot.name for slot in nlu_intents.SLOTS.get(parse.intent, ())]
        filled = await self._fill(command, parse, answering=None, said=heard.text)
        return await self._next(command, filled.note, filled.note_values, parse)

    async def _request_turn(self, command: PendingCommand, caller: VoiceCaller, heard: Heard, *,
                            answering: bool) -> VoiceReply:
        """Which request to pay (`dialogs.voice_requests`): the one the words name, else the list
        (again) and a question. A first turn reads the caller's open requests; an answer picks
        among those listed."""
        if answering:
            listed = [Listed.loads(raw) for raw in command.values.get("_requests", [])]
        else:
            views = await self.requests.intents.pending_for_payer(caller.user_id, limit=LOOKED_AT)
            listed = [Listed.of(view) for view in views]
            if not listed:
                return self._set(command, ANSWERED, self._text(command, "request.none"), None)
        # The merchants asking are the address book the name is read against.
        parse = await self._parse(Heard(heard.text, contacts=merchants(listed)), caller)
        places = narrow(listed, parse, answering=answering)
        if len(places) == 1:
            return await self._request_chosen(command, listed[places[0]], parse)
        lead = self._text(command, "request.no_match") + " " if not places else ""
        shown = [listed[k] for k in places] if places else listed
        command.values["_requests"] = [item.dumps() for item in shown]
        command.missing = ["request"]
        lines = " ".join(self._text(command, "request.line", n=n, merchant=item.merchant,
                                    amount=money_text(item.amount), about=self._about(command, item.description))
                         for n, item in enumerate(shown[:READ_OUT], 1))
        more = " " + self._text(command, "request.more", count=len(shown) - READ_OUT) if len(shown) > READ_OUT else ""
        return self._set(command, ASKING,
                         lead + self._text(command, "ask.request", count=len(shown), list=lines + more), parse)

    async def _request_chosen(self, command: PendingCommand, item: Listed, parse: Parse) -> VoiceReply:
        """One request picked: priced as USSD prices it, and read back (or why it cannot be paid)."""
        step = self._step(command)
        take(step, item.pick)
        command.values.pop("_requests", None)
        command.missing = []
        # Said with its number in brackets and what it is for, rather than as the screen writes them.
        command.values.update(name=item.said_as, about=self._about(command, item.description))
        if await self.requests.quote(step) != "ok":
            return self._set(command, FAILED, self._failure(command, step), parse)
        return self._set(command, CONFIRMING, self._confirm_text(command), parse)

    def _about(self, command: PendingCommand, description: str | None) -> str:
        return self._text(command, "request.about", description=description) if description else ""

    async def _parse(self, heard: Heard, caller: VoiceCaller) -> Parse:
        contacts = heard.contacts if heard.contacts is not None else await self.address_book(caller.user_id)
        parsed = self.parser.parse(heard.text, language=caller.language, contacts=contacts)
        return await parsed if inspect.isawaitable(parsed) else parsed

    async def _fill(self, command: PendingCommand, parse: Parse, *, answering: str | None, said: str) -> _Fill:
        """Take what `parse` says into the command's slots; a note explains what could not be taken."""
        progressed = False
        note: str | None = None
        note_values: dict[str, str] = {}
        values = command.values
        amount = parse.entity(nlu_intents.AMOUNT)
        currency = parse.currency
        if amount is not None and "amount" in command.missing:
            if currency is not None and currency != values["currency"]:
                note, note_values = "wrong_currency", {}
            else:
                values["typed_amount"] = str(amount.value)
                progressed = True
        if command.kind in _RECIPIENT_VALUE and "recipient" in command.missing:
            recipient = parse.recipient
            phone = parse.entity(nlu_intents.PHONE)
            unknown = parse.entity(nlu_intents.RECIPIENT_NAME)
            if recipient is not None:
                values[_RECIPIENT_VALUE[command.kind]] = recipient.phone
                values["_contact"] = recipient.nickname or recipient.name
                progressed = True
            elif phone is not None:
                values[_RECIPIENT_VALUE[command.kind]] = str(phone.value)
                values.pop("_contact", None)
                progressed = True
            elif unknown is not None:
                note, note_values = "unknown_contact", {"name": str(unknown.raw)}
        for slot in ("paybill", "account_number", "till"):
            if slot not in command.missing:
                continue
            entity = parse.entity(slot)
            if entity is not None:
                values[_VALUE_OF_SLOT[slot]] = str(entity.value)
                progressed = True
            elif answering == slot and len(digits := "".join(_DIGITS.findall(said))) >= 3:
                # The answer to "What is the till number?" is often the number alone.
                values[_VALUE_OF_SLOT[slot]] = digits
                progressed = True
        command.missing = [slot for slot in command.missing if not self._has(command, slot)]
        return _Fill(progressed, note, note_values)

    def _has(self, command: PendingCommand, slot: str) -> bool:
        if slot == "recipient":
            return bool(command.values.get(_RECIPIENT_VALUE.get(command.kind or "", "")))
        return bool(command.values.get(_VALUE_OF_SLOT[slot]))

    async def _next(self, command: PendingCommand, note: str | None, note_values: dict[str, str],
                    parse: Parse | None) -> VoiceReply:
        """Ask for the next missing slot, or price the command and read it back."""
        lead = self._text(command, note, **note_values) + " " if note else ""
        if command.missing:
            return self._set(command, ASKING, lead + self._text(command, f"ask.{command.missing[0]}"), parse)
        if command.kind in ("balance", "statement"):
            return self._set(command, CONFIRMING, self._confirm_text(command), parse)
        step = self._step(command)
        outcome = await self.actions.quote(step)
        if outcome == "ok":
            contact = command.values.get("_contact")
            phone = command.values.get(_RECIPIENT_VALUE.get(command.kind or "", ""))
            if contact and phone:
                command.values["recipient"] = f"{contact} ({phone_text(phone)})"
            return self._set(command, CONFIRMING, self._confirm_text(command), parse)
        reason = self._note(command, step)
        if outcome == "fix_amount":
            command.values.pop("typed_amount", None)
            command.missing = ["amount"]
        elif outcome == "fix_recipient":
            for key in ("to_phone", "pochi_phone", "_contact"):
                command.values.pop(key, None)
            command.missing = ["recipient"]
        else:
            return self._set(command, FAILED, self._text(command, "failed", reason=reason), parse)
        return self._set(command, ASKING, f"{reason} {self._text(command, f'ask.{command.missing[0]}')}".strip(),
                         parse)

    # -- texts -----------------------------------------------------------------------------------

    def _confirm_text(self, command: PendingCommand) -> str:
        kind = command.kind or ""
        pin = "pin.call" if command.channel == Channel.VOICE.value else "pin.app"
        return f"{self._text(command, f'confirm.{kind}')} {self._text(command, pin)}"

    def _result_text(self, command: PendingCommand, outcome: str, step: Step) -> str:
        kind = command.kind or ""
        if kind == "balance":
            return self._text(command, "balance")
        if kind == "statement":
            lines = "; ".join(step.values.pop("lines", []) if outcome == "ok" else [])
            return self._text(command, "statement", lines=lines) if lines else self._text(command, "statement.empty")
        if outcome == "done":
            return self._text(command, {"send": "done.send", "request": "done.request"}.get(kind, "done.pay"))
        if kind == "deposit":
            return self._text(command, "pending.mpesa_deposit" if outcome == "pending_mpesa"
                              else "pending.wave_deposit")
        return self._text(command, "pending.payout")

    def _note(self, command: PendingCommand, step: Step) -> str:
        """The customer actions' note (an ``err.*`` key of the USSD catalogs), in words."""
        if not step.note:
            return ""
        return speakable(self.notes.text(command.language, step.note, command.values), command.language)

    def _failure(self, command: PendingCommand, step: Step) -> str:
        return self._text(command, "failed", reason=self._note(command, step))

    def _text(self, command: PendingCommand, key: str, **extra: object) -> str:
        values = {**command.values, **extra}
        if values.get("ref"):
            # Said one character at a time ("K 7 Q 2 …"), as a caller writes it down; a speech engine
            # reads "K7Q2M9BXA4" as words and numbers. The API answer carries it whole.
            values["ref"] = " ".join(str(values["ref"]))
        return speakable(self.texts.text(command.language, key, values), command.language)

    def _text_in(self, language: str, key: str) -> str:
        return speakable(self.texts.text(language if language in VOICE_LANGUAGES else "fr", key), language)

    # -- state -----------------------------------------------------------------------------------

    def _heard(self, command: PendingCommand, heard: Heard) -> None:
        command.transcripts.append(heard.text)
        if heard.confidence is not None:
            command.confidence = heard.confidence if command.confidence is None else min(command.confidence,
                                                                                         heard.confidence)

    def _step(self, command: PendingCommand, *, secret: str | None = None) -> Step:
        confidence = None if command.confidence is None else Decimal(f"{command.confidence:.3f}")
        return Step(session_id=command.id, phone=command.phone, user_id=command.user_id, language=command.language,
                    values=command.values, args={"kind": command.kind or ""},
                    idempotency_key=f"voice:{command.id}", secret=secret,
                    spoken={"channel": command.channel, "transcript": " / ".join(command.transcripts)[:2000],
                            "confidence": confidence})

    async def _open(self, caller: VoiceCaller, command_id: str) -> tuple[PendingCommand | None, VoiceReply | None]:
        command = await self.store.load(command_id)
        if command is None or command.user_id != caller.user_id:
            return None, VoiceReply(None, NOT_FOUND, self._text_in(caller.language, "expired"))
        if not command.is_open:
            return None, VoiceReply(command, command.status, command.text)
        if command.expired(self.clock()):
            return None, await self._saved(command, FAILED, self._text(command, "expired"), None, status=EXPIRED)
        return command, None

    def _set(self, command: PendingCommand, status: str, text: str, parse: Parse | None) -> VoiceReply:
        command.status, command.text = status, text
        return VoiceReply(command, status, text, parse)

    async def _saved(self, command: PendingCommand, state: str, text: str, parse: Parse | None, *,
                     status: str | None = None) -> VoiceReply:
        command.status, command.text = state, text
        await self.store.save(command)
        return VoiceReply(command, status or state, text, parse)



def _picks_a_place(command: PendingCommand, parse: Parse) -> bool:
    """Whether an answer to the list of requests that the intent layer reads as a "no" names one
    place in it all the same ("la seconde", "numéro 2", "ombi la pili", "no. 2", "no, the second"):
    it picks that request, whose read-back the PIN still has to confirm. "No" alone, or a cancel
    ("cancel", "stop", "ghairi"), cancels whatever it names."""
    return (command.kind == "request" and command.status == ASKING and command.missing == ["request"]
            and parse.intent == nlu_intents.DENY and place_said(parse) is not None)


def pin_shaped(pin: object, length: int) -> TypeGuard[str]:
    """Whether what the keypad (a call's DTMF, the app's field) gave is a PIN at all: ``length`` ASCII
    digits. Anything else is refused before the check, so it costs no try."""
    return isinstance(pin, str) and pin.isascii() and pin.isdigit() and len(pin) == length


def spoken_pin(text: str) -> bool:
    """Whether ``text`` tells a PIN aloud: a PIN word with digits ("my pin is 4826"), or with
    digits said as words after it ("my pin is four eight two six", "pini yangu ni nne nane")."""
    if _SPOKEN_PIN.search(text):
        return True
    words = [token.text for token in tokenize(text)]
    for k, word in enumerate(words):
        if word in _PIN_WORDS and sum(w in _DIGIT_WORDS for w in words[k + 1:k + 12]) >= _SAID_DIGITS:
            return True
    return False


@dataclass(frozen=True, slots=True)
class _Fill:
    progressed: bool
    note: str | None
    note_values: dict[str, str]


_KSH = re.compile(r"Ksh (\d{1,3}(?:,\d{3})*(?:\.\d+)?)")
_FCFA = re.compile(r"(\d[\d ]*) FCFA")
#: How an amount of each currency is said, per language: (one, more than one). Swahili's nouns
#: do not change with the number; English and French ones take an s after any number but 1.
_SHILLINGS = {"en": ("{} shilling", "{} shillings"), "sw": ("shilingi {}", "shilingi {}"),
              "fr": ("{} shilling", "{} shillings")}
_FRANCS = {"en": ("{} franc", "{} francs"), "sw": ("faranga {}", "faranga {}"), "fr": ("{} franc", "{} francs")}


def _say(forms: dict[str, tuple[str, str]], language: str) -> Callable[[re.Match[str]], str]:
    one, many = forms.get(language, forms["en"])

    def said(match: re.Match[str]) -> str:
        number = match.group(1).strip()
        return (one if number in ("1", "1.00") else many).format(number)

    return said


def speakable(text: str, language: str) -> str:
    """Amounts as they are said rather than written: ``Ksh 1,000`` → ``1,000 shillings``,
    ``5 000 FCFA`` → ``5 000 francs``, ``Ksh 1`` → ``1 shilling`` (a speech engine spells "Ksh"
    out letter by letter)."""
    text = _KSH.sub(_say(_SHILLINGS, language), text)
    return _FCFA.sub(_say(_FRANCS, language), text)

