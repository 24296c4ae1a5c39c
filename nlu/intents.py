"""The intents Sauti understands, the slots each needs, and which entities each may carry.

A slot is what a dialog must know before it can act ("amount", "recipient"); several entity types
may fill one slot (a recipient is a contact or a phone number). What is missing becomes a question
("How much?"), never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nlu.results import Entity

SEND_MONEY = "send_money"
PAY_BILL = "pay_bill"
BUY_GOODS_TILL = "buy_goods_till"
BUY_GOODS_POCHI = "buy_goods_pochi"
WITHDRAW_CASH = "withdraw_cash"
WITHDRAW_TO_MPESA = "withdraw_to_mpesa"
WITHDRAW_TO_WAVE = "withdraw_to_wave"
DEPOSIT = "deposit"
CHECK_BALANCE = "check_balance"
MINI_STATEMENT = "mini_statement"
BANK_TO_MPESA = "bank_to_mpesa"
MPESA_TO_BANK = "mpesa_to_bank"
#: Pay what a merchant asked this customer to pay (a payment intent), picked by the merchant's name,
#: the amount, or its place in the list read out.
PAY_REQUEST = "pay_request"
CANCEL = "cancel"
AFFIRM = "affirm"
DENY = "deny"
HELP = "help"
OUT_OF_SCOPE = "out_of_scope"

INTENTS = (SEND_MONEY, PAY_BILL, BUY_GOODS_TILL, BUY_GOODS_POCHI, WITHDRAW_CASH, WITHDRAW_TO_MPESA,
           WITHDRAW_TO_WAVE, DEPOSIT, CHECK_BALANCE, MINI_STATEMENT, BANK_TO_MPESA, MPESA_TO_BANK,
           PAY_REQUEST, CANCEL, AFFIRM, DENY, HELP, OUT_OF_SCOPE)

# Not a trained intent: what a parse says when its best guess is not confident enough.
CLARIFY = "clarify"

# IMPORTANT: these move money. A dialog starts one only from a confident parse, and always asks
# for the PIN on the keypad.
PAYMENT_INTENTS = frozenset({SEND_MONEY, PAY_BILL, BUY_GOODS_TILL, BUY_GOODS_POCHI, WITHDRAW_CASH,
                             WITHDRAW_TO_MPESA, WITHDRAW_TO_WAVE, DEPOSIT, BANK_TO_MPESA, MPESA_TO_BANK,
                             PAY_REQUEST})

#: What a spoken command can ask for and be done with: a payment, the balance, the statement.
COMMAND_INTENTS = PAYMENT_INTENTS | {CHECK_BALANCE, MINI_STATEMENT}

# IMPORTANT: a doubtful reading of these must become a question. The rest (balance, help, cancel,
# deny, out of scope) cost nothing when wrong, so their best guess is returned as it is.
GUARDED_INTENTS = PAYMENT_INTENTS | {AFFIRM}

AMOUNT, CURRENCY, PHONE, RECIPIENT, RECIPIENT_NAME = "amount", "currency", "phone", "recipient", "recipient_name"
PAYBILL, TILL, ACCOUNT, AGENT, STORE, BANK = ("paybill", "till", "account_number", "agent_number",
                                              "store_number", "bank_code")
ENTITY_TYPES = (AMOUNT, CURRENCY, PHONE, RECIPIENT, RECIPIENT_NAME, PAYBILL, TILL, ACCOUNT, AGENT, STORE,
                BANK)


@dataclass(frozen=True, slots=True)
class Slot:
    """Something an intent needs, filled by any of `filled_by` entity types."""

    name: str
    filled_by: tuple[str, ...]


_AMOUNT = Slot(AMOUNT, (AMOUNT,))
# An unresolved name does not fill the recipient: the dialog still has to ask who (or which number).
_RECIPIENT = Slot(RECIPIENT, (RECIPIENT, PHONE))

SLOTS: dict[str, tuple[Slot, ...]] = {
    SEND_MONEY: (_AMOUNT, _RECIPIENT),
    PAY_BILL: (Slot(PAYBILL, (PAYBILL,)), Slot(ACCOUNT, (ACCOUNT,)), _AMOUNT),
    BUY_GOODS_TILL: (Slot(TILL, (TILL,)), _AMOUNT),
    BUY_GOODS_POCHI: (_RECIPIENT, _AMOUNT),
    WITHDRAW_CASH: (Slot(AGENT, (AGENT,)), Slot(STORE, (STORE,)), _AMOUNT),
    WITHDRAW_TO_MPESA: (_AMOUNT,),
    WITHDRAW_TO_WAVE: (_AMOUNT,),
    DEPOSIT: (_AMOUNT,),
    BANK_TO_MPESA: (Slot(BANK, (BANK,)), _AMOUNT),
    MPESA_TO_BANK: (Slot(BANK, (BANK,)), Slot(ACCOUNT, (ACCOUNT,)), _AMOUNT),
}

_MONEY = frozenset({AMOUNT, CURRENCY})
_PERSON = frozenset({PHONE, RECIPIENT, RECIPIENT_NAME})
# Entities that mean something for each intent; the rest are dropped ("last 5 transactions" has no
# amount in it). A parse that needs clarification keeps everything.
ALLOWED: dict[str, frozenset[str]] = {
    SEND_MONEY: _MONEY | _PERSON,
    PAY_BILL: _MONEY | {PAYBILL, ACCOUNT},
    BUY_GOODS_TILL: _MONEY | {TILL},
    BUY_GOODS_POCHI: _MONEY | _PERSON,
    WITHDRAW_CASH: _MONEY | {AGENT, STORE},
    WITHDRAW_TO_MPESA: _MONEY | {PHONE},
    WITHDRAW_TO_WAVE: _MONEY | {PHONE},
    DEPOSIT: _MONEY | {PHONE},
    BANK_TO_MPESA: _MONEY | {BANK, ACCOUNT, PHONE},
    MPESA_TO_BANK: _MONEY | {BANK, ACCOUNT},
    # Which request: the merchant's name (resolved against the merchants asking) or its amount.
    PAY_REQUEST: _MONEY | _PERSON,
}


def keep_entities(intent: str, entities: Iterable[Entity]) -> tuple[Entity, ...]:
    """The entities that belong to `intent` (all of them while it needs clarification)."""
    if intent == CLARIFY:
        return tuple(entities)
    allowed = ALLOWED.get(intent, frozenset())
    return tuple(e for e in entities if e.type in allowed)


def is_whole_command(intent: str, missing: Iterable[str]) -> bool:
    """A confident command with every slot filled: what a reading of speech should come to (a
    reading that does not is worth reading again without the prompt, `nlu.speech`)."""
    return intent in COMMAND_INTENTS and not tuple(missing)


def missing_slots(intent: str, entities: Iterable[Entity]) -> tuple[str, ...]:
    """The slots of `intent` no entity fills, in asking order."""
    present = {e.type for e in entities}
    return tuple(slot.name for slot in SLOTS.get(intent, ()) if not present.intersection(slot.filled_by))
