"""Contacts: the people a user pays, with what the user has sent them.

- Saved by hand through the app API (`add_contact`, `update_contact`, `delete_contact`), read as a
  list (`list_contacts`: favourites first, then by name) or as the address book the voice channel
  resolves spoken names against (`address_book`: favourites first, then the most paid).
- Added and counted by a successful send (`record_send`, through `count_send`): the
  orchestrator calls it when a wallet-to-wallet send succeeds and the resolver when a provider
  confirms a send to a phone, IN the transaction that moves the payment to ``succeeded``. That
  move happens once per payment (a replayed callback or a retried command finds the payment
  succeeded already and stops before it), so a send is counted once, or not at all if that
  transaction rolls back. A new contact is named after the recipient's registered name when they
  have a Sauti wallet, else after their number; an existing one keeps the name its user gave it.

Numbers are normalised like every other (`payments.phones.parse_msisdn`, a local form read in the
owner's country). A user has one contact per number: adding a number already saved is a
`DuplicateContact` naming the saved one, never an upsert, which would silently rename a contact its
user named and let a client believe it made a new one; change the saved one with `update_contact`.

A user keeps at most ``max_contacts`` (`payments.max_contacts_per_user`, 500): adding one more by
hand is a `ContactLimitReached`; a send to a new number past the cap adds no contact (a payment never
fails for its address book). Every insert first takes a transaction lock of the owner's contacts
(an advisory lock, not the user's row: `PinService.verify` holds that row through an argon2 hash,
and a payout's settlement must not wait on it), so concurrent adds cannot overshoot the cap.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.commands import PaymentKind
from payments.errors import InvalidRequest, PaymentsError, UnknownUser
from payments.identities import USER_COLUMNS, User, user_from_row
from payments.intent_store import PAYABLE, PAYABLE_JOINS
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.phones import InvalidPhoneNumber, parse_msisdn, region_of
from payments.plain_text import CONTROL

log = logging.getLogger(__name__)

#: How many contacts a user keeps when the settings say nothing (`payments.max_contacts_per_user`).
DEFAULT_MAX_CONTACTS = 500
NAME_MAX, NICKNAME_MAX = 60, 30
#: The payments that count as paying someone: sends to a person, inside Sauti or out to their
#: mobile money. Not withdrawals (the payer's own number), bills, tills or refunds.
SEND_KINDS = frozenset({PaymentKind.P2P, PaymentKind.SEND_TO_PHONE})
#: Where each currency's total lives (fixed column names: never built from input).
_TOTAL_COLUMNS: Mapping[Currency, str] = MappingProxyType({Currency.KES: "total_sent_kes",
                                                            Currency.XOF: "total_sent_xof"})
# Printable, and nothing a screen or an SMS template could take for markup (as users' names).
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f<>{}]+$")


class ContactNotFound(PaymentsError):
    """No such contact among the user's own (another user's is not found either)."""

    code = "contact_not_found"


class InvalidContact(InvalidRequest):
    code = "invalid_contact"


class DuplicateContact(PaymentsError):
    """The user has saved this number already, as ``contact_id``."""

    code = "duplicate_contact"

    def __init__(self, phone: str, contact_id: int) -> None:
        super().__init__(f"{phone} is saved already (contact {contact_id}); change that contact instead")
        self.phone, self.contact_id = phone, contact_id


class ContactLimitReached(PaymentsError):
    code = "contact_limit_reached"

    def __init__(self, limit: int) -> None:
        super().__init__(f"a user keeps at most {limit} contacts; delete one to add another")
        self.limit = limit


class _Keep(enum.Enum):
    KEEP = "keep"


#: "Leave this field as it is", for `update_contact`'s nickname (whose None clears it).
KEEP = _Keep.KEEP


@dataclass(frozen=True, slots=True)
class SavedContact:
    """A contact as its user sees it. ``total_sent`` holds one amount per currency ever sent to
    them (none for a contact never paid); `sent_in` reads one."""

    id: int
    user_id: int
    name: str
    nickname: str | None
    phone: str
    favourite: bool
    times_paid: int
    total_sent: tuple[Money, ...]
    last_paid_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def sent_in(self, currency: Currency) -> Money:
        return next((m for m in self.total_sent if m.currency is currency), Money.zero(currency))


_COLUMNS = ("id, user_id, name, nickname, phone, favourite, times_paid, total_sent_kes, total_sent_xof, "
            "last_paid_at, created_at, updated_at")


def _contact(row: Any, prefix: str = "") -> SavedContact:
    """A contact from a row holding `_COLUMNS`, each named with ``prefix`` before it."""
    def get(column: str) -> Any:
        return getattr(row, prefix + column)

    totals = tuple(Money(int(get(column)), currency) for currency, column in _TOTAL_COLUMNS.items() if get(column))
    return SavedContact(get("id"), get("user_id"), get("name"), get("nickname"), get("phone"), get("favourite"),
                        get("times_paid"), totals, get("last_paid_at"), get("created_at"), get("updated_at"))


def _text(value: object, what: str, most: int) -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    # CONTROL too: C1 controls and halves of surrogate pairs, which PostgreSQL cannot store.
    if not 1 <= len(cleaned) <= most or not _PRINTABLE.match(cleaned) or CONTROL.search(cleaned):
        raise InvalidContact(f"a contact's {what} is 1 to {most} printable characters")
    return cleaned


def _nickname(value: object) -> str | None:
    return None if value is None else _text(value, "nickname", NICKNAME_MAX)


def _phone(value: object, owner_phone: str) -> str:
    """The E.164 form of a contact's number, a local form read in the owner's country."""
    try:
        msisdn = parse_msisdn(value if isinstance(value, str) else "", region_of(owner_phone))
    except InvalidPhoneNumber as exc:
        raise InvalidContact(str(exc)) from None
    if msisdn == owner_phone:
        raise InvalidContact("that is the user's own number")
    return msisdn


async def _owner_phone(conn: AsyncConnection, user_id: int, *, lock: bool = False) -> str:
    """The owner's number; ``lock`` also takes the lock of the owner's contacts until the
    transaction ends, which every insert does first, so that counting a user's contacts and adding
    one are not raced. The statements after it see every contact its previous holder added."""
    lock_it = ", pg_advisory_xact_lock(hashtextextended('sauti.contacts:' || id, 0))" if lock else ""
    phone = (await conn.execute(sql(f"SELECT phone{lock_it} FROM users WHERE id = :u"),
                                {"u": user_id})).scalar_one_or_none()
    if phone is None:
        raise UnknownUser(f"no user {user_id}")
    return phone


# -- reading ---------------------------------------------------------------------------------------


async def list_contacts(conn: AsyncConnection, user_id: int) -> list[SavedContact]:
    """The user's contacts as a contacts screen lists them: favourites first, then by name."""
    rows = await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM contacts WHERE user_id = :u ORDER BY favourite DESC, lower(name), id"),
        {"u": user_id})
    return [_contact(r) for r in rows]


#: The address book's order (`address_book`), for a table or subquery named ``c``.
_BOOK_ORDER = "c.favourite DESC, c.times_paid DESC, c.last_paid_at DESC NULLS LAST, lower(c.name), c.id"
#: `_COLUMNS` of a contact ``c`` named ``c_id``, ``c_name``… beside another table's columns.
_PREFIXED = ", ".join(f"c.{column} AS c_{column}" for column in _COLUMNS.split(", "))


async def address_book(conn: AsyncConnection, user_id: int, *, limit: int | None = None) -> list[SavedContact]:
    """The user's contacts in the order a spoken name is matched against them: favourites first,
    then the most paid, then the most recently paid (ties between two "Mama"s go to the one the
    user pays); the first `limit` of them when given (the USSD send screen lists three)."""
    rows = await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM contacts c WHERE user_id = :u ORDER BY {_BOOK_ORDER} LIMIT :n"),
        {"u": user_id, "n": limit})
    return [_contact(r) for r in rows]


@dataclass(frozen=True, slots=True)
class DialRead:
    """What a USSD session's first hop needs of its caller (`read_caller`): the user, the top of
    their `address_book`, and how many payment intents ask them to pay (`payments.intents`: pending
    and not past their expiry), which decides whether the menu offers "Requests to pay"."""

    user: User
    contacts: list[SavedContact]
    open_intents: int


#: The caller's open payment intents, for a subquery beside the user's row ``users``: those they may
#: still pay (`payments.intent_store.PAYABLE`, as the USSD list shows them), found on the partial
#: index ``payment_intents_payer_pending``.
_OPEN_INTENTS = (f"(SELECT count(*) FROM payment_intents i {PAYABLE_JOINS} "
                 f"WHERE i.payer_user_id = users.id AND {PAYABLE}) AS open_intents")


async def read_caller(conn: AsyncConnection, phone: str, *, limit: int) -> DialRead | None:
    """The user registered to ``phone`` (E.164), the first ``limit`` contacts of their
    `address_book` and how many payment intents are open for them, in one statement: one round
    trip instead of three. None for a number with no user."""
    rows = (await conn.execute(sql(
        f"SELECT u.*, {_PREFIXED} FROM (SELECT {USER_COLUMNS}, {_OPEN_INTENTS} FROM users WHERE phone = :p) u "
        f"LEFT JOIN LATERAL (SELECT * FROM contacts c WHERE c.user_id = u.id ORDER BY {_BOOK_ORDER} LIMIT :n) c "
        f"ON true ORDER BY {_BOOK_ORDER}"), {"p": phone, "n": limit})).all()
    if not rows:
        return None
    return DialRead(user_from_row(rows[0]), [_contact(r, "c_") for r in rows if r.c_id is not None],
                    int(rows[0].open_intents))


async def get_contact(conn: AsyncConnection, user_id: int, contact_id: int) -> SavedContact:
    """One of the user's contacts; `ContactNotFound` for any other id, another user's included."""
    row = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM contacts WHERE id = :i AND user_id = :u"),
                              {"i": contact_id, "u": user_id})).first()
    if row is None:
        raise ContactNotFound(f"no contact {contact_id}")
    return _contact(row)


# -- changing by hand ------------------------------------------------------------------------------


async def add_contact(
    conn: AsyncConnection, user_id: int, name: str, phone: str, nickname: str | None = None,
    favourite: bool = False, *, max_contacts: int = DEFAULT_MAX_CONTACTS,
) -> SavedContact:
    """Save a contact, in the caller's transaction. `DuplicateContact` when the number is saved
    already, `ContactLimitReached` past ``max_contacts``, `InvalidContact` for a bad name, nickname
    or number (or the user's own), `UnknownUser`."""
    name, nickname = _text(name, "name", NAME_MAX), _nickname(nickname)
    if not isinstance(favourite, bool):
        raise InvalidContact("favourite is true or false")
    msisdn = _phone(phone, await _owner_phone(conn, user_id, lock=True))
    held = (await conn.execute(sql(
        "SELECT count(*) AS n, max(id) FILTER (WHERE phone = :p) AS same FROM contacts WHERE user_id = :u"),
        {"u": user_id, "p": msisdn})).one()
    if held.same is not None:
        raise DuplicateContact(msisdn, held.same)
    if held.n >= max_contacts:
        raise ContactLimitReached(max_contacts)
    row = (await conn.execute(sql(
        f"INSERT INTO contacts (user_id, name, nickname, phone, favourite) VALUES (:u, :n, :nick, :p, :f) "
        f"ON CONFLICT (user_id, phone) DO NOTHING RETURNING {_COLUMNS}"),
        {"u": user_id, "n": name, "nick": nickname, "p": msisdn, "f": favourite})).first()
    if row is None:  # another contact of this user was just renumbered to it
        raise DuplicateContact(msisdn, await _id_of(conn, user_id, msisdn))
    return _contact(row)


async def update_contact(
    conn: AsyncConnection, user_id: int, contact_id: int, *, name: str | None = None,
    nickname: str | _Keep | None = KEEP, phone: str | None = None, favourite: bool | None = None,
) -> SavedContact:
    """Change what is given of one of the user's contacts (None / `KEEP`: unchanged; a nickname of
    None clears it). A new number keeps the contact's counters: "Mama has a new number" is still
    the person most paid. `DuplicateContact` when another contact has that number."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _text(name, "name", NAME_MAX)
    if nickname is not KEEP:
        changes["nickname"] = _nickname(nickname)
    if favourite is not None:
        if not isinstance(favourite, bool):
            raise InvalidContact("favourite is true or false")
        changes["favourite"] = favourite
    if phone is not None:
        changes["phone"] = _phone(phone, await _owner_phone(conn, user_id))
    if not changes:
        return await get_contact(conn, user_id, contact_id)
    sets = ", ".join(f"{column} = :{column}" for column in changes)
    try:
        async with conn.begin_nested():
            row = (await conn.execute(sql(
                f"UPDATE contacts SET {sets}, updated_at = now() WHERE id = :i AND user_id = :u RETURNING {_COLUMNS}"),
                {"i": contact_id, "u": user_id, **changes})).first()
    except IntegrityError:
        # Only the (user, phone) key can refuse it: every value was checked above.
        raise DuplicateContact(changes["phone"], await _id_of(conn, user_id, changes["phone"])) from None
    if row is None:
        raise ContactNotFound(f"no contact {contact_id}")
    return _contact(row)


async def delete_contact(conn: AsyncConnection, user_id: int, contact_id: int) -> None:
    """Forget one of the user's contacts (a later send to the number adds it again, counted anew)."""
    gone = (await conn.execute(sql("DELETE FROM contacts WHERE id = :i AND user_id = :u RETURNING id"),
                               {"i": contact_id, "u": user_id})).first()
    if gone is None:
        raise ContactNotFound(f"no contact {contact_id}")


async def _id_of(conn: AsyncConnection, user_id: int, phone: str) -> int:
    return (await conn.execute(sql("SELECT id FROM contacts WHERE user_id = :u AND phone = :p"),
                               {"u": user_id, "p": phone})).scalar_one()


# -- counting sends --------------------------------------------------------------------------------


async def record_send(
    conn: AsyncConnection, payer_user_id: int, phone: str, amount: Money, name_hint: str | None = None, *,
    payment_id: int, max_contacts: int = DEFAULT_MAX_CONTACTS,
) -> SavedContact | None:
    """Count a succeeded send of ``amount`` to ``phone`` (E.164) by payment ``payment_id``, adding
    the contact when the number is new (named ``name_hint``, else the number's registered name,
    else the number). Returns the contact, or None when none was counted: a send to the payer's
    own number, a new number past ``max_contacts``, or this payment counted already.

    IMPORTANT: call it in the transaction that moves the payment to succeeded, which happens once;
    ``last_payment_id`` only stops the same payment being counted twice in a row."""
    column = _TOTAL_COLUMNS.get(amount.currency)
    if column is None:
        raise InvalidRequest(f"contacts do not total {amount.currency}")
    bump = (f"times_paid = contacts.times_paid + 1, {column} = contacts.{column} + :amount, "
            "last_payment_id = :payment, last_paid_at = now(), updated_at = now()")
    params = {"u": payer_user_id, "p": phone, "amount": amount.minor, "payment": payment_id}
    # The usual case, a number saved already: one statement, no lock.
    row = (await conn.execute(sql(
        f"UPDATE contacts SET {bump} WHERE user_id = :u AND phone = :p "
        f"AND last_payment_id IS DISTINCT FROM :payment RETURNING {_COLUMNS}"), params)).first()
    if row is not None:
        return _contact(row)
    if await _owner_phone(conn, payer_user_id, lock=True) == phone:
        return None
    hint = name_hint.strip() if isinstance(name_hint, str) else ""
    if not (1 <= len(hint) <= NAME_MAX and _PRINTABLE.match(hint)):
        hint = ""
    # Under the owner's lock, this statement's snapshot counts every contact added before it. The
    # conflict arm covers a contact saved (or renumbered) to this number since the UPDATE above.
    row = (await conn.execute(sql(
        f"INSERT INTO contacts (user_id, name, phone, times_paid, {column}, last_payment_id, last_paid_at) "
        "SELECT CAST(:u AS bigint), coalesce(CAST(nullif(:hint, '') AS text), "
        "(SELECT left(nullif(btrim(display_name), ''), :name_max) FROM users WHERE phone = :p), :p), "
        "CAST(:p AS varchar), 1, CAST(:amount AS bigint), CAST(:payment AS bigint), now() "
        "WHERE (SELECT count(*) FROM contacts WHERE user_id = :u) < :max "
        f"ON CONFLICT (user_id, phone) DO UPDATE SET {bump} "
        f"WHERE contacts.last_payment_id IS DISTINCT FROM :payment RETURNING {_COLUMNS}"),
        {**params, "hint": hint, "name_max": NAME_MAX, "max": max_contacts})).first()
    if row is None:
        log.info("user %s: send not added to contacts (at the cap of %d, or counted already)", payer_user_id,
                 max_contacts)
        return None
    return _contact(row)


async def count_send(
    conn: AsyncConnection, payment: Payment, *, recipient_name: str | None = None,
    max_contacts: int = DEFAULT_MAX_CONTACTS,
) -> SavedContact | None:
    """`record_send` for ``payment`` if it is a send to a person (`SEND_KINDS`).

    IMPORTANT: call it in the transaction that moves the payment to succeeded, before or after the
    move (the resolver calls it before settling, so that a payout's settlement holds the clearing
    account's lock no longer for it): the count commits exactly when the move does.
    The contact is a convenience: should counting it fail, the failure is logged and undone alone
    (a savepoint), and the payment goes on uncounted, never rolled back for it."""
    if payment.kind not in SEND_KINDS or payment.recipient_phone is None:
        return None
    try:
        async with conn.begin_nested():
            return await record_send(conn, payment.payer_user_id, payment.recipient_phone, payment.amount,
                                     recipient_name, payment_id=payment.id, max_contacts=max_contacts)
    except (SQLAlchemyError, PaymentsError):
        log.exception("payment %s: its send could not be added to the payer's contacts", payment.public_id)
        return None
