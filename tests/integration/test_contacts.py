"""Contacts on a real PostgreSQL: saved, listed, changed and deleted by hand (numbers normalised,
one per number, a cap per user, another user's never reached), and added and counted by sends
driven through the real orchestrator and the provider sandboxes: once per payment, whether the
command is retried or the provider's success is delivered again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from payments.commands import Channel, SendToPhone, SendToWallet, Withdraw
from payments.contacts import (
    ContactLimitReached,
    ContactNotFound,
    DuplicateContact,
    InvalidContact,
    SavedContact,
    add_contact,
    address_book,
    delete_contact,
    get_contact,
    list_contacts,
    read_caller,
    update_contact,
)
from payments.identities import User
from payments.money import Currency, Money
from payments.resolution import Verdict
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus
CAP = 3  # contacts per user in this module's world


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database(), max_contacts_per_user=CAP) as running:
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


def kenyan(suffix: str = "123") -> str:
    """A Kenyan mobile number nobody uses yet; ``suffix`` picks the sandbox's behaviour."""
    return f"+2547{uuid.uuid4().int % 10**5:05d}{suffix}"


async def add(world: PaymentsWorld, owner: User, name: str, phone: str, **fields) -> SavedContact:
    async with world.engine.begin() as conn:
        return await add_contact(conn, owner.id, name, phone, max_contacts=CAP, **fields)


async def contacts_of(world: PaymentsWorld, owner: User) -> list[SavedContact]:
    async with world.engine.connect() as conn:
        return await list_contacts(conn, owner.id)


async def book_of(world: PaymentsWorld, owner: User) -> list[SavedContact]:
    async with world.engine.connect() as conn:
        return await address_book(conn, owner.id)


# -- by hand ---------------------------------------------------------------------------------------


async def test_a_contact_is_saved_with_its_number_normalised_listed_changed_and_deleted(world: PaymentsWorld):
    owner = await world.user()
    local = kenyan()
    typed = "0" + local.removeprefix("+254")  # as people type it: 07…

    saved = await add(world, owner, "  Wanjiru  ", typed[:4] + " " + typed[4:], nickname="Shosh")

    assert (saved.name, saved.nickname, saved.phone, saved.favourite) == ("Wanjiru", "Shosh", local, False)
    assert (saved.times_paid, saved.total_sent, saved.last_paid_at) == (0, (), None)
    assert saved.sent_in(KES) == Money.zero(KES)
    baba = await add(world, owner, "baba", kenyan(), favourite=True)
    assert [c.name for c in await contacts_of(world, owner)] == ["baba", "Wanjiru"]  # favourites, then by name

    changed = await update_contact_(world, owner, saved.id, name="Wanjiru K", nickname=None, favourite=True)

    assert (changed.name, changed.nickname, changed.favourite) == ("Wanjiru K", None, True)
    assert changed.updated_at >= saved.updated_at
    kept = await update_contact_(world, owner, saved.id)  # nothing given: nothing changes
    assert kept == changed
    async with world.engine.begin() as conn:
        await delete_contact(conn, owner.id, baba.id)
        with pytest.raises(ContactNotFound):
            await get_contact(conn, owner.id, baba.id)
    assert [c.id for c in await contacts_of(world, owner)] == [saved.id]


async def update_contact_(world: PaymentsWorld, owner: User, contact_id: int, **changes) -> SavedContact:
    async with world.engine.begin() as conn:
        return await update_contact(conn, owner.id, contact_id, **changes)


async def test_a_number_saved_already_is_refused_naming_the_saved_contact(world: PaymentsWorld):
    owner = await world.user()
    first = await add(world, owner, "Juma", kenyan())

    with pytest.raises(DuplicateContact) as refused:
        await add(world, owner, "Juma again", first.phone.removeprefix("+"))  # 2547…: the same number

    assert refused.value.contact_id == first.id
    other = await add(world, owner, "Akinyi", kenyan())
    with pytest.raises(DuplicateContact) as renumbered:
        await update_contact_(world, owner, other.id, phone=first.phone)
    assert renumbered.value.contact_id == first.id
    assert [(c.name, c.phone) for c in await contacts_of(world, owner)] == [
        ("Akinyi", other.phone), ("Juma", first.phone)]
    # Another user saves the same number freely.
    assert (await add(world, await world.user(), "Juma", first.phone)).phone == first.phone


@pytest.mark.parametrize(("name", "phone", "nickname", "says"), [
    ("Mama", "12345", None, "digits"),
    ("Mama", "+1 202 555 0143", None, "Sauti serves"),
    ("", None, None, "name is 1 to 60"),
    ("x" * 61, None, None, "name is 1 to 60"),
    ("<script>", None, None, "name is 1 to 60"),
    ("Mama", None, "n" * 31, "nickname is 1 to 30"),
])
async def test_bad_names_nicknames_and_numbers_are_refused_and_nothing_is_saved(
        world: PaymentsWorld, name, phone, nickname, says):
    owner = await world.user()
    with pytest.raises(InvalidContact, match=says):
        await add(world, owner, name, phone or kenyan(), nickname=nickname)
    assert await contacts_of(world, owner) == []


async def test_a_user_cannot_save_their_own_number(world: PaymentsWorld):
    owner = await world.user()
    with pytest.raises(InvalidContact, match="own number"):
        await add(world, owner, "Me", owner.phone)


async def test_the_cap_refuses_one_contact_more_even_when_added_concurrently(world: PaymentsWorld):
    owner, other = await world.user(), await world.user()
    await add(world, other, "Someone", kenyan())  # another user's contacts do not count

    results = await asyncio.gather(*(add(world, owner, f"Friend {i}", kenyan()) for i in range(CAP + 3)),
                                   return_exceptions=True)

    assert sum(isinstance(r, SavedContact) for r in results) == CAP
    refused = [r for r in results if not isinstance(r, SavedContact)]
    assert len(refused) == 3 and all(isinstance(r, ContactLimitReached) for r in refused)
    assert "at most 3 contacts" in str(refused[0])
    assert len(await contacts_of(world, owner)) == CAP
    async with world.engine.begin() as conn:
        await delete_contact(conn, owner.id, (await list_contacts(conn, owner.id))[0].id)
    await add(world, owner, "Room again", kenyan())


async def test_another_users_contact_is_not_found_for_reading_changing_or_deleting(world: PaymentsWorld):
    owner, stranger = await world.user(), await world.user()
    theirs = await add(world, owner, "Otieno", kenyan())

    async with world.engine.begin() as conn:
        with pytest.raises(ContactNotFound):
            await get_contact(conn, stranger.id, theirs.id)
        with pytest.raises(ContactNotFound):
            await update_contact(conn, stranger.id, theirs.id, name="Mine now")
        with pytest.raises(ContactNotFound):
            await delete_contact(conn, stranger.id, theirs.id)
    assert (await contacts_of(world, owner))[0].name == "Otieno"


# -- counted by sends ------------------------------------------------------------------------------


async def test_a_wallet_send_adds_the_recipient_once_even_when_the_command_is_retried(world: PaymentsWorld):
    payer = await world.user(name="Amina")
    payee = await world.user(name="Baraka Otieno")
    await world.fund(payer, Money.of(2000, KES))
    command = SendToWallet("c-p2p-1", payer.id, Money.of(500, KES), Channel.USSD, recipient_user_id=payee.id)

    first = await world.payments.handle(command)
    again = await world.payments.handle(command)  # a retried hop: the same payment, replayed

    assert first.status is S.SUCCEEDED and again.public_id == first.public_id
    [contact] = await contacts_of(world, payer)
    assert (contact.name, contact.phone, contact.times_paid) == ("Baraka Otieno", payee.phone, 1)
    assert contact.total_sent == (Money.of(500, KES),) and contact.last_paid_at is not None
    # The payee's own contacts are untouched: receiving is not paying.
    assert await contacts_of(world, payee) == []

    # A renamed contact keeps its name; a second send by number counts on the same contact.
    await update_contact_(world, payer, contact.id, name="Baba")
    await world.payments.handle(SendToPhone("c-p2p-2", payer.id, Money.of(250, KES), Channel.VOICE,
                                            recipient_phone=payee.phone))
    [counted] = await contacts_of(world, payer)
    assert (counted.id, counted.name, counted.times_paid, counted.sent_in(KES)) == (
        contact.id, "Baba", 2, Money.of(750, KES))


async def test_a_send_that_fails_adds_no_contact(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(100, KES))

    refused = await world.payments.handle(SendToWallet("c-broke", payer.id, Money.of(100, KES), Channel.USSD,
                                                       recipient_user_id=payee.id))
    declined = await world.payments.handle(SendToPhone("c-declined", payer.id, Money.of(50, KES), Channel.USSD,
                                                       recipient_phone=kenyan("001")))  # M-Pesa says no
    assert (await world.settle(declined.public_id)).status is S.FAILED

    assert refused.status is S.FAILED
    assert await contacts_of(world, payer) == []


async def test_a_payout_to_a_number_without_a_wallet_counts_once_when_its_result_comes_twice(world: PaymentsWorld):
    payer = await world.user()
    await world.fund(payer, Money.of(2000, KES))
    number = kenyan("902")  # the sandbox POSTs the B2C result twice
    outcomes_before = len(world.callbacks.outcomes)

    payment = await world.payments.handle(SendToPhone("c-b2c", payer.id, Money.of(300, KES), Channel.APP,
                                                      recipient_phone=number))
    assert payment.status is S.PENDING
    assert await contacts_of(world, payer) == []  # not until M-Pesa has paid
    await world.settle(payment.public_id)
    for _ in range(100):  # the second delivery follows the first
        if len(world.callbacks.outcomes) - outcomes_before >= 2:
            break
        await world.worker.drain()
        await asyncio.sleep(0.02)
    assert sorted(o for _, o in world.callbacks.outcomes[outcomes_before:]) == ["duplicate", "settled"]
    # And the same success applied once more, as recovery racing a callback would: changes nothing.
    _, changed = await world.payments.resolver.apply(payment.public_id, Verdict(True, "recovery"))
    assert not changed

    [contact] = await contacts_of(world, payer)
    assert (contact.name, contact.phone, contact.times_paid, contact.total_sent) == (
        number, number, 1, (Money.of(300, KES),))  # no Sauti name to give it: its number


async def test_a_wave_payout_counts_in_francs_and_a_withdrawal_adds_nobody(world: PaymentsWorld):
    payer = await world.user(XOF)
    await world.fund(payer, Money.of(20_000, XOF))
    number = f"+22177{uuid.uuid4().int % 10**4:04d}123"

    sent = await world.payments.handle(SendToPhone("c-wave", payer.id, Money.of(5000, XOF), Channel.VOICE,
                                                   recipient_phone=number))
    withdrawn = await world.payments.handle(Withdraw("c-wd", payer.id, Money.of(1000, XOF), Channel.USSD))

    assert (await world.settle(sent.public_id)).status is S.SUCCEEDED
    assert (await world.settle(withdrawn.public_id)).status is S.SUCCEEDED
    [contact] = await contacts_of(world, payer)
    assert (contact.phone, contact.times_paid, contact.total_sent) == (number, 1, (Money.of(5000, XOF),))
    assert contact.sent_in(KES) == Money.zero(KES)


async def test_past_the_cap_a_send_is_paid_and_adds_no_contact(world: PaymentsWorld):
    payer = await world.user()
    await world.fund(payer, Money.of(5000, KES))
    for i in range(CAP):
        await add(world, payer, f"Saved {i}", kenyan())
    payee = await world.user(name="New Friend")

    payment = await world.payments.handle(SendToWallet("c-capped", payer.id, Money.of(100, KES), Channel.USSD,
                                                       recipient_user_id=payee.id))

    assert payment.status is S.SUCCEEDED
    assert payee.phone not in {c.phone for c in await contacts_of(world, payer)}
    assert len(await contacts_of(world, payer)) == CAP


async def test_the_address_book_lists_favourites_then_the_most_paid(world: PaymentsWorld):
    payer = await world.user()
    await world.fund(payer, Money.of(5000, KES))
    often, once = await world.user(name="Often"), await world.user(name="Once")
    favourite = await add(world, payer, "Mama", kenyan(), favourite=True)
    for i, payee in enumerate((often, often, once)):
        await world.payments.handle(SendToWallet(f"c-book-{i}", payer.id, Money.of(100, KES), Channel.USSD,
                                                 recipient_user_id=payee.id))

    book = await book_of(world, payer)

    assert [(c.name, c.times_paid) for c in book] == [("Mama", 0), ("Often", 2), ("Once", 1)]
    assert book[0].id == favourite.id
    # A session's first hop reads the caller and the top of this book in one statement: the same.
    async with world.engine.connect() as conn:
        read = await read_caller(conn, payer.phone, limit=2)
        nobody = await read_caller(conn, kenyan(), limit=2)
        lonely = await read_caller(conn, often.phone, limit=2)
    assert read is not None and read.user == payer and read.contacts == book[:2] and read.open_intents == 0
    assert nobody is None
    assert lonely is not None and lonely.user == often and lonely.contacts == []


async def test_a_contact_that_cannot_be_counted_never_fails_its_payment(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user(name="Counted Out")
    await world.fund(payer, Money.of(1000, KES))
    await world.payments.handle(SendToWallet("c-full-1", payer.id, Money.of(100, KES), Channel.USSD,
                                             recipient_user_id=payee.id))
    async with world.engine.begin() as conn:  # a counter at its very top: the next +1 overflows
        await conn.execute(text("UPDATE contacts SET times_paid = 2147483647 WHERE user_id = :u"), {"u": payer.id})

    payment = await world.payments.handle(SendToWallet("c-full-2", payer.id, Money.of(200, KES), Channel.USSD,
                                                       recipient_user_id=payee.id))

    assert payment.status is S.SUCCEEDED
    assert await world.wallet(payee) == Money.of(300, KES)
    [contact] = await contacts_of(world, payer)
    assert (contact.times_paid, contact.total_sent) == (2147483647, (Money.of(100, KES),))  # uncounted, not undone
