"""Users and PINs on a real PostgreSQL: registration from local phone formats, PIN set, verify,
change, and the lock-out after too many wrong PINs, recorded with its end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from payments import errors as pe
from payments.identities import (
    Language,
    PinPolicy,
    PinService,
    Role,
    find_user_by_phone,
    get_user,
    get_user_and_find,
    register_user,
    set_language,
)
from payments.phones import InvalidPhoneNumber
from tests.integration.ledger_helpers import random_kenyan_number
from tests.statements import statements

FAST = PinPolicy(argon2_time_cost=1, argon2_memory_kib=8_192, pepper="test-pepper")


@pytest.fixture(scope="module")
def pins() -> PinService:
    return PinService(FAST)


async def new_user(engine, pins: PinService | None = None, pin: str = "4826", **kwargs):
    async with engine.begin() as conn:
        user = await register_user(conn, random_kenyan_number(), display_name="Wanjiru", **kwargs)
        if pins:
            await pins.set_pin(conn, user.id, pin)
    return user


async def test_register_from_local_formats_and_refuse_duplicates(engine):
    number = random_kenyan_number()
    local = f"0{number[4:7]} {number[7:10]} {number[10:]}"  # as typed: 0712 345 678
    async with engine.begin() as conn:
        user = await register_user(conn, local, display_name="Achieng", language="sw",
                                   roles={Role.CUSTOMER, Role.AGENT}, kyc_tier=1)
    assert user.phone.startswith("+2547") and len(user.phone) == 13
    assert user.language is Language.SW and user.has_role(Role.AGENT) and user.kyc_tier == 1
    async with engine.begin() as conn:
        with pytest.raises(pe.UserExists):
            await register_user(conn, user.phone.removeprefix("+"))
        assert (await find_user_by_phone(conn, "0" + user.phone[4:])).id == user.id
        await set_language(conn, user.id, "fr")
        assert (await get_user(conn, user.id)).language is Language.FR


async def test_a_payer_and_the_user_of_a_number_are_read_together(engine):
    payer, payee = await new_user(engine), await new_user(engine)
    async with engine.connect() as conn:
        with statements(engine) as seen:
            assert await get_user_and_find(conn, payer.id, payee.phone) == (payer, payee)
        assert len(seen) == 1
        assert await get_user_and_find(conn, payer.id, random_kenyan_number()) == (payer, None)
        assert await get_user_and_find(conn, payer.id, payer.phone) == (payer, payer)  # their own number
        with pytest.raises(pe.UnknownUser):
            await get_user_and_find(conn, 0, payee.phone)


async def test_senegalese_number_and_bad_input(engine):
    async with engine.begin() as conn:
        user = await register_user(conn, "77 123 45 67", region="SN", language="wo")
        assert user.phone == "+221771234567"
        for bad in ("", "12", "+1 202 555 0100", "07 12 ab", "0712345678901234567890"):
            with pytest.raises(InvalidPhoneNumber):
                await register_user(conn, bad)
        with pytest.raises(pe.InvalidRequest):
            await register_user(conn, random_kenyan_number(), language="de")
        with pytest.raises(pe.InvalidRequest):
            await register_user(conn, random_kenyan_number(), kyc_tier=9)


async def test_pin_is_hashed_with_argon2_and_verifies(engine, pins):
    user = await new_user(engine, pins)
    async with engine.begin() as conn:
        stored = (await conn.execute(text("SELECT pin_hash FROM users WHERE id = :u"), {"u": user.id})).scalar_one()
        assert stored.startswith("$argon2id$") and "4826" not in stored
        assert (await pins.verify(conn, user.id, "4826")).id == user.id
        with pytest.raises(pe.InvalidRequest):  # a first PIN is set once; later it is changed
            await pins.set_pin(conn, user.id, "5937")


@pytest.mark.parametrize("pin", ["123", "12345", "abcd", "12 4", "1234", "0000", "١٢٣٤"])
async def test_weak_or_malformed_pins_are_refused(engine, pins, pin):
    user = await new_user(engine)
    async with engine.begin() as conn:
        with pytest.raises(pe.InvalidPin):
            await pins.set_pin(conn, user.id, pin)


async def test_three_wrong_pins_lock_the_user_for_15_minutes_and_the_lock_is_recorded(engine, pins):
    user = await new_user(engine, pins)
    now = datetime.now(UTC)
    for attempts_left in (2, 1):
        async with engine.begin() as conn:
            with pytest.raises(pe.WrongPin) as wrong:
                await pins.verify(conn, user.id, "0001", now=now)
        assert wrong.value.attempts_left == attempts_left
    async with engine.begin() as conn:
        with pytest.raises(pe.AccountLocked) as locked:
            await pins.verify(conn, user.id, "0002", now=now)
    assert locked.value.until == now + timedelta(minutes=15)

    # Even the right PIN is refused while locked.
    async with engine.begin() as conn:
        with pytest.raises(pe.AccountLocked):
            await pins.verify(conn, user.id, "4826", now=now + timedelta(minutes=14))
        lock = (await conn.execute(text(
            "SELECT reason, locked_until, unlocked_at FROM user_locks WHERE user_id = :u"), {"u": user.id})).one()
        audit = (await conn.execute(text(
            "SELECT action FROM audit_log WHERE subject = :s ORDER BY id"), {"s": f"user:{user.id}"})).scalars().all()
    assert lock.locked_until == now + timedelta(minutes=15) and lock.unlocked_at is None
    assert "user.locked" in audit

    # After the lock ends the right PIN works again, and the lock's end is recorded.
    async with engine.begin() as conn:
        assert (await pins.verify(conn, user.id, "4826", now=now + timedelta(minutes=16))).id == user.id
        unlocked_at = (await conn.execute(text(
            "SELECT unlocked_at FROM user_locks WHERE user_id = :u"), {"u": user.id})).scalar_one()
        assert unlocked_at is not None
        assert (await get_user(conn, user.id)).status.value == "active"


async def test_lock_out_is_configurable(engine):
    strict = PinService(PinPolicy(max_attempts=1, lock_minutes=60, argon2_time_cost=1, argon2_memory_kib=8_192))
    user = await new_user(engine, strict)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        with pytest.raises(pe.AccountLocked) as locked:
            await strict.verify(conn, user.id, "9999", now=now)
    assert locked.value.until == now + timedelta(minutes=60)


async def test_a_right_pin_resets_the_failure_count(engine, pins):
    user = await new_user(engine, pins)
    for _ in range(3):
        async with engine.begin() as conn:
            with pytest.raises(pe.WrongPin):
                await pins.verify(conn, user.id, "0001")
        async with engine.begin() as conn:
            await pins.verify(conn, user.id, "4826")


async def test_change_pin_needs_the_old_pin(engine, pins):
    user = await new_user(engine, pins)
    async with engine.begin() as conn:
        with pytest.raises(pe.WrongPin):
            await pins.change_pin(conn, user.id, "1357", "2468")
    async with engine.begin() as conn:
        with pytest.raises(pe.InvalidPin):
            await pins.change_pin(conn, user.id, "4826", "4826")
        await pins.change_pin(conn, user.id, "4826", "2468")
    async with engine.begin() as conn:
        await pins.verify(conn, user.id, "2468")
        with pytest.raises(pe.WrongPin):
            await pins.verify(conn, user.id, "4826")


async def test_pepper_matters(engine, pins):
    user = await new_user(engine, pins)
    other = PinService(PinPolicy(argon2_time_cost=1, argon2_memory_kib=8_192, pepper="another"))
    async with engine.begin() as conn:
        with pytest.raises(pe.WrongPin):
            await other.verify(conn, user.id, "4826")


async def test_unknown_and_closed_users(engine, pins):
    user = await new_user(engine, pins)
    async with engine.begin() as conn:
        with pytest.raises(pe.UnknownUser):
            await pins.verify(conn, 987_654_321, "4826")
        await conn.execute(text("UPDATE users SET status = 'closed' WHERE id = :u"), {"u": user.id})
        with pytest.raises(pe.AccountClosed):
            await pins.verify(conn, user.id, "4826")
    nopin = await new_user(engine)
    async with engine.begin() as conn:
        with pytest.raises(pe.PinNotSet):
            await pins.verify(conn, nopin.id, "4826")


async def test_pins_never_reach_the_logs(engine, pins, caplog):
    with caplog.at_level(logging.DEBUG):
        user = await new_user(engine, pins, pin="8264")
        async with engine.begin() as conn:
            with pytest.raises(pe.WrongPin):
                await pins.verify(conn, user.id, "7391")
        async with engine.begin() as conn:
            await pins.change_pin(conn, user.id, "8264", "5173")
    for secret in ("8264", "7391", "5173"):
        assert secret not in caplog.text


async def _failures(engine, user_id: int) -> tuple[str, int]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT status, failed_pin_attempts FROM users WHERE id = :u"),
                                  {"u": user_id})).one()
    return row.status, row.failed_pin_attempts


async def test_a_check_on_its_own_commits_the_count_and_the_lock(engine, pins):
    user = await new_user(engine, pins)
    assert (await pins.check(engine, user.id, "4826")).id == user.id
    with pytest.raises(pe.WrongPin) as wrong:
        await pins.check(engine, user.id, "0001")
    assert wrong.value.attempts_left == 2 and await _failures(engine, user.id) == ("active", 1)
    await pins.check(engine, user.id, "4826")
    assert await _failures(engine, user.id) == ("active", 0)
    for _ in range(2):
        with pytest.raises(pe.WrongPin):
            await pins.check(engine, user.id, "0001")
    with pytest.raises(pe.AccountLocked):
        await pins.check(engine, user.id, "0001")
    with pytest.raises(pe.AccountLocked):
        await pins.check(engine, user.id, "4826")  # the right PIN waits for the lock to end
    assert (await _failures(engine, user.id))[0] == "locked"
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert (await pins.check(engine, user.id, "4826", now=later)).id == user.id
    assert await _failures(engine, user.id) == ("active", 0)


async def test_concurrent_wrong_checks_are_all_counted_and_lock_once(engine, pins):
    user = await new_user(engine, pins)
    outcomes = await asyncio.gather(*(pins.check(engine, user.id, f"10{n:02d}") for n in range(8)),
                                    return_exceptions=True)
    assert sum(isinstance(o, pe.WrongPin) for o in outcomes) == 2
    assert sum(isinstance(o, pe.AccountLocked) for o in outcomes) == 6
    async with engine.connect() as conn:
        locks = (await conn.execute(text("SELECT count(*) FROM user_locks WHERE user_id = :u"),
                                    {"u": user.id})).scalar_one()
    assert locks == 1


class Meanwhile(PinService):
    """A PIN service that runs ``meanwhile`` once, while its first comparison hashes (as a concurrent
    caller would)."""

    def __init__(self, policy: PinPolicy, meanwhile: Callable[[], Awaitable[None]]) -> None:
        super().__init__(policy)
        self._meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    async def _matches(self, pin_hash: str, pin: str) -> bool:
        if self._meanwhile is not None:
            work, self._meanwhile = self._meanwhile, None
            await work()
        return await super()._matches(pin_hash, pin)


async def test_a_pin_changed_while_it_was_hashed_is_compared_again(engine, pins):
    user = await new_user(engine, pins)

    async def change_the_pin() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE users SET pin_hash = :h WHERE id = :u"),
                               {"h": await pins.hash("5173"), "u": user.id})

    racing = Meanwhile(FAST, change_the_pin)
    with pytest.raises(pe.WrongPin):
        await racing.check(engine, user.id, "4826")  # right when read, wrong by the time it counts
    assert (await racing.check(engine, user.id, "5173")).id == user.id


async def test_a_right_pin_with_nothing_to_record_takes_no_lock_and_writes_nothing(engine, pins):
    user = await new_user(engine, pins)
    with statements(engine) as seen:
        assert (await pins.check(engine, user.id, "4826")).id == user.id
    # Two lone reads (the hash, then the row as it is after hashing), outside any transaction.
    assert len(seen) == 2 and all(level == "AUTOCOMMIT" for _, level in seen)
    assert not any("FOR UPDATE" in statement or "UPDATE users" in statement for statement, _ in seen)
    with statements(engine) as seen, pytest.raises(pe.WrongPin):
        await pins.check(engine, user.id, "0001")
    assert any("FOR UPDATE" in statement for statement, _ in seen)  # a miss is counted under the lock


async def test_a_right_pin_checked_while_a_concurrent_guess_locked_the_user_is_refused(engine, pins):
    user = await new_user(engine, pins)

    async def three_wrong_guesses() -> None:
        for _ in range(3):
            with pytest.raises((pe.WrongPin, pe.AccountLocked)):
                await pins.check(engine, user.id, "0001")

    with pytest.raises(pe.AccountLocked):
        await Meanwhile(FAST, three_wrong_guesses).check(engine, user.id, "4826")
    assert (await _failures(engine, user.id))[0] == "locked"


async def test_a_right_pin_checked_while_a_wrong_guess_was_counted_clears_it(engine, pins):
    user = await new_user(engine, pins)

    async def one_wrong_guess() -> None:
        with pytest.raises(pe.WrongPin):
            await pins.check(engine, user.id, "0001")

    assert (await Meanwhile(FAST, one_wrong_guess).check(engine, user.id, "4826")).id == user.id
    assert await _failures(engine, user.id) == ("active", 0)  # the locking path cleared it


# -- keyed check values -----------------------------------------------------------------------------

KEYED = PinPolicy(argon2_time_cost=1, argon2_memory_kib=8_192, pepper="test-pepper",
                  check_key="test-pin-check-key-0123456789abcdef")


class Counting(PinService):
    """A PIN service that counts its argon2 comparisons."""

    def __init__(self, policy: PinPolicy) -> None:
        super().__init__(policy)
        self.argon2 = 0

    async def _matches(self, pin_hash: str, pin: str) -> bool:
        self.argon2 += 1
        return await super()._matches(pin_hash, pin)


async def _check_value(engine, user_id: int) -> str | None:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT pin_check FROM users WHERE id = :u"), {"u": user_id})).scalar_one()


async def test_a_keyed_check_is_one_read_and_no_argon2(engine):
    keyed = Counting(KEYED)
    user = await new_user(engine, keyed)
    stored = await _check_value(engine, user.id)
    assert stored is not None and stored.startswith("v1:") and "4826" not in stored
    assert stored == keyed.check_value(user.id, "4826") != keyed.check_value(user.id + 1, "4826")
    with statements(engine) as seen:
        assert (await keyed.check(engine, user.id, "4826")).id == user.id
    assert len(seen) == 1 and seen[0][1] == "AUTOCOMMIT" and "FOR UPDATE" not in seen[0][0]
    async with engine.begin() as conn:
        assert (await keyed.verify(conn, user.id, "4826")).id == user.id
    assert keyed.argon2 == 0


async def test_wrong_pins_against_a_check_value_count_and_lock(engine):
    keyed = Counting(KEYED)
    user = await new_user(engine, keyed)
    for left in (2, 1):
        with pytest.raises(pe.WrongPin) as wrong:
            await keyed.check(engine, user.id, "0001")
        assert wrong.value.attempts_left == left
    with pytest.raises(pe.AccountLocked):
        await keyed.check(engine, user.id, "0001")
    with pytest.raises(pe.AccountLocked):  # the right PIN too, until the lock runs out
        await keyed.check(engine, user.id, "4826")
    assert (await _failures(engine, user.id))[0] == "locked" and keyed.argon2 == 0
    later = datetime.now(UTC) + timedelta(minutes=FAST.lock_minutes + 1)
    assert (await keyed.check(engine, user.id, "4826", now=later)).id == user.id
    assert await _failures(engine, user.id) == ("active", 0)


async def test_the_first_match_derives_the_check_value_and_another_key_derives_its_own(engine):
    user = await new_user(engine, PinService(FAST))  # set while no check key was configured
    assert await _check_value(engine, user.id) is None
    keyed = Counting(KEYED)
    with pytest.raises(pe.WrongPin):  # a miss derives nothing
        await keyed.check(engine, user.id, "0001")
    assert await _check_value(engine, user.id) is None
    assert (await keyed.check(engine, user.id, "4826")).id == user.id  # clears the failure, derives
    assert await _check_value(engine, user.id) == keyed.check_value(user.id, "4826")
    assert (await keyed.check(engine, user.id, "4826")).id == user.id
    assert keyed.argon2 == 2  # the miss and the first match; the second check was keyed

    rotated = Counting(PinPolicy(argon2_time_cost=1, argon2_memory_kib=8_192, pepper="test-pepper",
                                 check_key="another-pin-check-key-0123456789ab"))
    assert (await rotated.check(engine, user.id, "4826")).id == user.id  # its key id differs: argon2
    assert await _check_value(engine, user.id) == rotated.check_value(user.id, "4826")
    assert (await rotated.check(engine, user.id, "4826")).id == user.id
    assert rotated.argon2 == 1
    with pytest.raises(pe.WrongPin):
        await rotated.check(engine, user.id, "0001")


async def test_a_new_pin_never_leaves_the_old_check_value_behind(engine):
    keyed = Counting(KEYED)
    user = await new_user(engine, keyed)
    async with engine.begin() as conn:
        await keyed.change_pin(conn, user.id, "4826", "7391")
    assert await _check_value(engine, user.id) == keyed.check_value(user.id, "7391")
    # A dialog stores a hash made screens earlier: the check value is derived at the next check.
    async with engine.begin() as conn:
        await keyed.replace_verified(conn, user.id, await keyed.hash("5173"))
    assert await _check_value(engine, user.id) is None
    # Any other write of a new hash (a repair by hand, say) clears the old value: the trigger.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET pin_check = :c WHERE id = :u"),
                           {"c": keyed.check_value(user.id, "7391"), "u": user.id})
        await conn.execute(text("UPDATE users SET pin_hash = :h WHERE id = :u"),
                           {"h": await keyed.hash("5173"), "u": user.id})
    assert await _check_value(engine, user.id) is None
    for old in ("4826", "7391"):
        with pytest.raises(pe.WrongPin):
            await keyed.check(engine, user.id, old)
    assert (await keyed.check(engine, user.id, "5173")).id == user.id


async def test_a_check_value_copied_onto_another_user_does_not_let_their_pin_in(engine):
    keyed = PinService(KEYED)
    mine, theirs = await new_user(engine, keyed, pin="4826"), await new_user(engine, keyed, pin="7391")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET pin_check = (SELECT pin_check FROM users WHERE id = :m) "
                                "WHERE id = :t"), {"m": mine.id, "t": theirs.id})
    with pytest.raises(pe.WrongPin):
        await keyed.check(engine, theirs.id, "4826")  # my PIN, my value, their row
