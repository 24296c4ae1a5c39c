"""People: users keyed by their phone number, their roles and language, and their PINs.

PINs are argon2 hashes (with an optional server-side pepper); they are never logged and never
returned. After ``max_attempts`` wrong PINs in a row the user is locked for ``lock_minutes``; each
lock, with its end, is recorded in ``user_locks`` and in the audit log.

Checking a PIN need not cost an argon2 verify (tens of milliseconds of CPU) each time: with a check
key (``PinPolicy.check_key``, a secret kept outside the database), each user also has a *check
value*, HMAC-SHA256 of their id and PIN under that key, as the card industry keeps a PIN
verification value under a key the database never holds. A PIN of four digits is one of 10,000;
no hash cost protects it from someone holding the database and whatever the hash needs (the pepper):
what does is a key they do not hold, and the lock-out online. The check value is derived at the
first argon2 verify that matches, so no back-fill is needed, and one made under another key is
ignored and derived again; the argon2 hash stays the PIN's record, from which a new key's values
come. Whenever the hash changes the check value changes with it (a trigger clears a stale one).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import autocommit
from db.sql import sql
from payments.errors import (
    AccountClosed,
    AccountLocked,
    InvalidPin,
    InvalidRequest,
    PinNotSet,
    UnknownUser,
    UserExists,
    WrongPin,
)
from payments.phones import parse_msisdn
from payments.plain_text import CONTROL


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    MERCHANT = "merchant"
    ADMIN = "admin"


class Language(enum.StrEnum):
    EN = "en"
    SW = "sw"
    FR = "fr"
    WO = "wo"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    phone: str
    display_name: str
    language: Language
    roles: frozenset[Role]
    kyc_tier: int
    status: UserStatus
    has_pin: bool
    locked_until: datetime | None

    def has_role(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class PinPolicy:
    """How PINs are checked and stored. A 4-digit PIN is protected by the lock-out online and by
    secrets the database does not hold (the pepper, the check key), not by the hash cost: with a
    check key, argon2 is paid when a PIN is set and when its check value is first derived."""

    max_attempts: int = 3
    lock_minutes: int = 15
    length: int = 4
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    pepper: str = ""
    #: Secret for keyed check values (see the module's docstring); empty: every check is an argon2
    #: verify.
    check_key: str = ""
    #: Threads that hash PINs; 0: one per core but one (see `hash_threads_here`).
    hash_threads: int = 0

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(time_cost=self.argon2_time_cost, memory_cost=self.argon2_memory_kib,
                              parallelism=self.argon2_parallelism)

    def hash_threads_here(self) -> int:
        """`hash_threads`, or by default every core but one, at least one. The core left over keeps
        the event loop serving menu hops while PINs are hashed: on `bench.ussd`'s realistic mix on 2
        cores, one hashing thread instead of two served 5-15 % more hops, with p50 down from 55-92 ms
        to 17-33 ms and the p99 of hops without a PIN from 360-470 ms to 130-185 ms; PIN hops queue
        longer for it (p99 up by about a fifth)."""
        return self.hash_threads or max(1, (os.cpu_count() or 1) - 1)


_WEAK_PINS = frozenset({"0000", "1111", "2222", "3333", "4444", "5555", "6666", "7777", "8888", "9999",
                        "1234", "4321", "0123", "1212"})
T = TypeVar("T")

_NAME = re.compile(r"^[^\x00-\x1f<>{}]{1,60}$")


_PIN_ROW = ("SELECT status, pin_hash, pin_check, failed_pin_attempts, locked_until, last_pin_attempt FROM users "
            "WHERE id = :u")
#: A check value's form: scheme, key id (so a value made under another key is recognised), HMAC.
_CHECK_SCHEME = "v1"


def _nothing_to_record(row: Any) -> bool:
    """Whether a matching PIN would change nothing on this user row: active, no failures counted."""
    return row.status == UserStatus.ACTIVE and not row.failed_pin_attempts


def _refuse_early(row: Any, user_id: int, now: datetime) -> None:
    """What no PIN can get past: no such user, a closed account, a lock still running, no PIN."""
    if row is None:
        raise UnknownUser(f"no user {user_id}")
    if row.status == UserStatus.CLOSED:
        raise AccountClosed("this account is closed")
    if row.status == UserStatus.LOCKED and row.locked_until is not None and row.locked_until > now:
        raise AccountLocked(row.locked_until)
    if row.pin_hash is None:
        raise PinNotSet("no PIN set yet")


class PinService:
    """Sets, verifies and changes PINs: against a keyed check value when the user has one made under
    this service's key (microseconds, on the event loop), else by argon2. Argon2 runs on threads of
    its own (it releases the GIL), by default one per core but one (`PinPolicy.hash_threads_here`):
    the event loop keeps serving, and PIN checks do not crowd the default executor's threads, which
    would only make them wait on each other for the same cores."""

    def __init__(self, policy: PinPolicy) -> None:
        self.policy = policy
        self._hasher = policy.hasher()
        self._threads = ThreadPoolExecutor(max_workers=policy.hash_threads_here(), thread_name_prefix="argon2")
        self._check_key = policy.check_key.encode() or None
        self._check_prefix = (
            f"{_CHECK_SCHEME}:{hmac.new(self._check_key, b'sauti pin-check key id', hashlib.sha256).hexdigest()[:8]}:"
            if self._check_key else None)

    def close(self) -> None:
        """Let the hashing threads go (the app's cleanup calls it)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)

    def _secret(self, pin: str) -> str:
        if not self.policy.pepper:
            return pin
        return hmac.new(self.policy.pepper.encode(), pin.encode(), hashlib.sha256).hexdigest()

    def check_value(self, user_id: int, pin: str) -> str | None:
        """``pin``'s check value for ``user_id`` (None without a check key). The user's id is part of
        the message: a value copied onto another user's row does not match there."""
        if self._check_key is None:
            return None
        mac = hmac.new(self._check_key, f"pin-check:{user_id}:{pin}".encode(), hashlib.sha256).hexdigest()
        return f"{self._check_prefix}{mac}"

    def _keyed(self, user_id: int, stored: str | None, pin: str) -> bool | None:
        """Whether ``pin`` matches the stored check value; None when that cannot tell (no check key,
        no value yet, or one made under another key): argon2 must."""
        if stored is None or self._check_prefix is None or not stored.startswith(self._check_prefix):
            return None
        if not isinstance(pin, str) or len(pin) > 32:
            return False
        return hmac.compare_digest(self.check_value(user_id, pin) or "", stored)

    async def _compare(self, user_id: int, row: Any, pin: str) -> tuple[bool, str | None]:
        """Whether ``pin`` is ``row``'s, and the check value to store: keyed when the row's value
        allows, else an argon2 verify, whose match derives the value (None when nothing to store)."""
        keyed = self._keyed(user_id, row.pin_check, pin)
        return (keyed, None) if keyed is not None else await self._by_argon2(user_id, row.pin_hash, pin)

    async def _by_argon2(self, user_id: int, pin_hash: str, pin: str) -> tuple[bool, str | None]:
        matched = await self._matches(pin_hash, pin)
        return matched, self.check_value(user_id, pin) if matched else None

    def validate_new_pin(self, pin: str) -> None:
        if not isinstance(pin, str) or not pin.isascii() or not pin.isdigit() or len(pin) != self.policy.length:
            raise InvalidPin(f"a PIN is exactly {self.policy.length} digits")
        if pin in _WEAK_PINS:
            raise InvalidPin("that PIN is too easy to guess; choose another")

    async def hash(self, pin: str) -> str:
        return await self._run(lambda: self._hasher.hash(self._secret(pin)))

    async def matches(self, pin_hash: str, pin: str) -> bool:
        """Whether ``pin`` is the one ``pin_hash`` was made from (a new PIN typed twice, say). It
        counts toward nothing: use `verify` for a user's PIN."""
        return await self._matches(pin_hash, pin)

    async def _matches(self, pin_hash: str, pin: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(pin_hash, self._secret(pin))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        if not isinstance(pin, str) or len(pin) > 32:
            return False
        return await self._run(verify)

    async def set_pin(self, conn: AsyncConnection, user_id: int, pin: str) -> None:
        """Set a first PIN (registration). Changing an existing PIN goes through `change_pin`."""
        self.validate_new_pin(pin)
        digest = await self.hash(pin)
        result = await conn.execute(sql(
            "UPDATE users SET pin_hash = :h, pin_check = :c, failed_pin_attempts = 0, updated_at = now() "
            "WHERE id = :u AND pin_hash IS NULL"), {"h": digest, "c": self.check_value(user_id, pin), "u": user_id})
        if result.rowcount == 0:
            await get_user(conn, user_id)  # raises UnknownUser
            raise InvalidRequest("this user already has a PIN; change it with the old PIN")
        await audit(conn, actor=f"user:{user_id}", action="pin.set", subject=f"user:{user_id}")

    async def verify(self, conn: AsyncConnection, user_id: int, pin: str, *, now: datetime | None = None) -> User:
        """Check a PIN, counting failures and locking the user after too many; returns the user.

        The user's row is locked for the duration, so concurrent wrong guesses are all counted.
        Commit the transaction even when this raises `WrongPin` or `AccountLocked`: the count and the
        lock must persist. A check on its own is `check`, which holds no connection while hashing.
        """
        now = now or datetime.now(UTC)
        row = (await conn.execute(sql(_PIN_ROW + " FOR UPDATE"), {"u": user_id})).first()
        _refuse_early(row, user_id, now)
        matched, derived = await self._compare(user_id, row, pin)
        return await self._record(conn, user_id, row, matched, now, derived)

    async def check(self, engine: AsyncEngine, user_id: int, pin: str, *, now: datetime | None = None,
                    attempt: str | None = None) -> User:
        """`verify` in transactions of its own, holding no connection while the PIN is hashed (tens of
        milliseconds of CPU, during which a pooled connection would serve nobody): read the hash,
        compare, then lock the row and record the outcome, provided the hash is still the one
        compared against (a PIN changed meanwhile is compared again). Concurrent wrong guesses are
        all counted, each under the row's lock; one that matched while others locked the user is
        refused. The count and the lock are committed before `WrongPin` / `AccountLocked` is raised.
        A right PIN that leaves nothing to record (an active user, no failures) takes no lock: with a
        check value, one single-statement read (the comparison awaits nothing, so the row as read is
        the row now); after an argon2 verify, a second statement confirms the row is still as
        compared (and stores the check value derived, if any). ``attempt`` names the try (a USSD
        hop's key): copies of one try, which a network's retries run side by side, count one failure.
        """
        now = now or datetime.now(UTC)
        reads = autocommit(engine)
        for _ in range(3):
            async with reads.connect() as conn:
                seen = (await conn.execute(sql(_USER_PIN_ROW), {"u": user_id})).first()
            _refuse_early(seen, user_id, now)
            keyed = self._keyed(user_id, seen.pin_check, pin)
            if keyed and _nothing_to_record(seen):
                return user_from_row(seen)
            matched, derived = (keyed, None) if keyed is not None else await self._by_argon2(
                user_id, seen.pin_hash, pin)
            if matched and _nothing_to_record(seen):
                # The usual argon2 case, a right PIN with no failures to clear: the row as it is now,
                # in one statement, is enough. Whatever changed meanwhile (a new PIN, a failure
                # counted or a lock by a concurrent guess) takes the locking path below.
                async with reads.connect() as conn:
                    if derived is None:
                        now_row = (await conn.execute(sql(_USER_PIN_ROW), {"u": user_id})).first()
                    else:  # the first match since the PIN was set (or the key changed): keep its value
                        now_row = (await conn.execute(_DERIVE, {"u": user_id, "h": seen.pin_hash,
                                                                "c": derived})).first()
                if now_row is not None and now_row.pin_hash == seen.pin_hash and _nothing_to_record(now_row):
                    return user_from_row(now_row)
            failure: WrongPin | AccountLocked | None = None
            async with engine.begin() as conn:
                row = (await conn.execute(sql(_PIN_ROW + " FOR UPDATE"), {"u": user_id})).first()
                if row is not None and row.pin_hash != seen.pin_hash:
                    continue  # a new PIN since it was read: compare against that one
                _refuse_early(row, user_id, now)
                try:
                    return await self._record(conn, user_id, row, matched, now, derived, attempt=attempt)
                except (WrongPin, AccountLocked) as exc:
                    failure = exc  # raised once the transaction has committed the count
            assert failure is not None
            raise failure
        raise PinNotSet("the PIN kept changing while it was checked; try again")

    async def _record(self, conn: AsyncConnection, user_id: int, row: Any, matched: bool, now: datetime,
                      derived: str | None = None, *, attempt: str | None = None) -> User:
        """Apply a comparison's outcome to the (locked) user row ``row``: a lock that has run out
        ends, a match clears the failures (and stores the check value it ``derived``, if any), a
        miss counts and may lock the user."""
        if row.status == UserStatus.LOCKED:
            await self._unlock(conn, user_id, now)  # `_refuse_early` let it through: it has run out
        if matched:
            if row.failed_pin_attempts or derived:
                await conn.execute(sql(
                    "UPDATE users SET failed_pin_attempts = 0, pin_check = coalesce(:c, pin_check) WHERE id = :u"),
                    {"u": user_id, "c": derived})
            return await get_user(conn, user_id)
        if attempt is not None and row.last_pin_attempt == attempt:
            # A copy of a try whose miss was counted (the row's lock queued it behind the first): the
            # same answer, nothing counted again.
            raise WrongPin(self.policy.max_attempts - row.failed_pin_attempts)
        failures = (await conn.execute(sql(
            "UPDATE users SET failed_pin_attempts = failed_pin_attempts + 1, last_pin_attempt = :a, updated_at = now() "
            "WHERE id = :u RETURNING failed_pin_attempts"), {"u": user_id, "a": attempt})).scalar_one()
        if failures >= self.policy.max_attempts:
            until = now + timedelta(minutes=self.policy.lock_minutes)
            await conn.execute(sql(
                "UPDATE users SET status = 'locked', locked_until = :t, failed_pin_attempts = 0 WHERE id = :u"),
                {"t": until, "u": user_id})
            await conn.execute(sql(
                "INSERT INTO user_locks (user_id, reason, locked_at, locked_until) VALUES (:u, :r, :now, :t)"),
                {"u": user_id, "r": f"{failures} wrong PINs", "now": now, "t": until})
            await audit(conn, actor="system", action="user.locked", subject=f"user:{user_id}",
                        details={"until": until.isoformat(), "reason": "wrong PINs"})
            raise AccountLocked(until)
        raise WrongPin(self.policy.max_attempts - failures)

    async def _unlock(self, conn: AsyncConnection, user_id: int, now: datetime) -> None:
        await conn.execute(sql(
            "UPDATE users SET status = 'active', locked_until = NULL, failed_pin_attempts = 0 WHERE id = :u"),
            {"u": user_id})
        await conn.execute(sql(
            "UPDATE user_locks SET unlocked_at = :now WHERE user_id = :u AND unlocked_at IS NULL"),
            {"u": user_id, "now": now})
        await audit(conn, actor="system", action="user.unlocked", subject=f"user:{user_id}")

    async def change_pin(self, conn: AsyncConnection, user_id: int, old_pin: str, new_pin: str) -> None:
        """Change a PIN: the old one is verified first (and counts towards the lock-out)."""
        self.validate_new_pin(new_pin)
        if new_pin == old_pin:
            raise InvalidPin("the new PIN must differ from the old one")
        await self.verify(conn, user_id, old_pin)
        await self.replace_verified(conn, user_id, await self.hash(new_pin),
                                    new_pin_check=self.check_value(user_id, new_pin))

    async def replace_verified(self, conn: AsyncConnection, user_id: int, new_pin_hash: str,
                               *, new_pin_check: str | None = None, channel: str | None = None) -> None:
        """Store a new PIN's hash (made by `hash`) for a user whose current PIN the caller has just
        verified: a dialog that asks for the old PIN, then the new one twice, across several screens.
        Its check value, when the caller has none (a dialog keeps only the hash between screens), is
        derived at the next check."""
        await conn.execute(sql("UPDATE users SET pin_hash = :h, pin_check = :c, failed_pin_attempts = 0, "
                                "updated_at = now() WHERE id = :u"),
                           {"h": new_pin_hash, "c": new_pin_check, "u": user_id})
        await audit(conn, actor=f"user:{user_id}", action="pin.changed", subject=f"user:{user_id}",
                    details={"channel": channel} if channel else None)


#: The columns `user_from_row` reads, for queries of other modules that read a user with their own rows.
USER_COLUMNS = (
    "id, phone, display_name, language, roles, kyc_tier, status, pin_hash IS NOT NULL AS has_pin, locked_until")


#: The user and what a PIN check looks at, in one read.
_USER_PIN_ROW = f"SELECT {USER_COLUMNS}, pin_hash, pin_check, failed_pin_attempts FROM users WHERE id = :u"
#: `_USER_PIN_ROW` after an argon2 match, storing the check value it derived if the hash is still the
#: one compared against (no row otherwise: the locking path sorts it out).
_DERIVE = sql(f"UPDATE users SET pin_check = :c WHERE id = :u AND pin_hash = :h "
               f"RETURNING {USER_COLUMNS}, pin_hash, pin_check, failed_pin_attempts")


def user_from_row(row: Any) -> User:
    """A `User` from a row holding `USER_COLUMNS`."""
    return User(row.id, row.phone, row.display_name, Language(row.language), frozenset(Role(r) for r in row.roles),
                row.kyc_tier, UserStatus(row.status), row.has_pin, row.locked_until)


async def register_user(
    conn: AsyncConnection,
    phone: str,
    *,
    display_name: str = "",
    language: Language | str = Language.EN,
    roles: frozenset[Role] | set[Role] = frozenset({Role.CUSTOMER}),
    kyc_tier: int = 0,
    region: str | None = None,
) -> User:
    """Create a user for a phone number in any local format; `UserExists` if it is already registered."""
    msisdn = parse_msisdn(phone, region)
    name = display_name.strip()
    if name and (not _NAME.match(name) or CONTROL.search(name)):
        raise InvalidRequest("a name is 1 to 60 printable characters")
    try:
        lang = Language(language)
    except ValueError:
        raise InvalidRequest(f"unsupported language {language!r}; choose en, sw, fr or wo") from None
    if not roles:
        raise InvalidRequest("a user needs at least one role")
    if not 0 <= kyc_tier <= 3:
        raise InvalidRequest("KYC tier is 0 to 3")
    try:
        async with conn.begin_nested():
            row = (await conn.execute(sql(
                f"INSERT INTO users (phone, display_name, language, roles, kyc_tier) "
                f"VALUES (:p, :n, :l, :r, :k) RETURNING {USER_COLUMNS}"),
                {"p": msisdn, "n": name, "l": lang.value, "r": sorted(Role(r).value for r in roles),
                 "k": kyc_tier})).one()
    except IntegrityError:
        raise UserExists(f"{msisdn} is already registered") from None
    await audit(conn, actor="system", action="user.registered", subject=f"user:{row.id}")
    return user_from_row(row)


#: A payer's row, locked until the transaction ends: ``FOR NO KEY UPDATE``, which the foreign keys of
#: the rows a payment writes (``FOR KEY SHARE``) do not wait for.
_LOCKED = " FOR NO KEY UPDATE"


async def get_user(conn: AsyncConnection, user_id: int, *, lock: bool = False) -> User:
    """The user; with ``lock``, their row locked until the transaction ends (a payer's: see
    `payments.orchestrator`)."""
    row = (await conn.execute(sql(f"SELECT {USER_COLUMNS} FROM users WHERE id = :u{_LOCKED if lock else ''}"),
                              {"u": user_id})).first()
    if row is None:
        raise UnknownUser(f"no user {user_id}")
    return user_from_row(row)


async def lock_user_by_phone(conn: AsyncConnection, phone: str) -> User | None:
    """The user with this (E.164) number, their row locked ``FOR NO KEY UPDATE`` until the transaction
    ends (as each of their commands locks it), or None."""
    row = (await conn.execute(sql(f"SELECT {USER_COLUMNS} FROM users WHERE phone = :p FOR NO KEY UPDATE"),
                              {"p": parse_msisdn(phone)})).first()
    return user_from_row(row) if row else None


async def find_user_by_phone(conn: AsyncConnection, phone: str, region: str | None = None) -> User | None:
    msisdn = parse_msisdn(phone, region)
    row = (await conn.execute(sql(f"SELECT {USER_COLUMNS} FROM users WHERE phone = :p"), {"p": msisdn})).first()
    return user_from_row(row) if row else None


async def get_user_and_find(conn: AsyncConnection, user_id: int, phone: str) -> tuple[User, User | None]:
    """`get_user` with ``lock`` and `find_user_by_phone` (``phone`` in E.164) in one statement: a
    payer, their row locked until the transaction ends, and the user a number they pay belongs to
    (not locked: two people paying each other must not wait for each other). The second is None when
    no user has the number."""
    rows = (await conn.execute(sql(
        f"WITH payer AS (SELECT {USER_COLUMNS} FROM users WHERE id = :u{_LOCKED}) "
        f"SELECT * FROM payer UNION ALL SELECT {USER_COLUMNS} FROM users WHERE phone = :p AND id <> :u"),
        {"u": user_id, "p": phone})).all()
    found = [user_from_row(row) for row in rows]
    user = next((u for u in found if u.id == user_id), None)
    if user is None:
        raise UnknownUser(f"no user {user_id}")
    return user, next((u for u in found if u.phone == phone), None)


async def set_language(conn: AsyncConnection, user_id: int, language: Language | str) -> None:
    try:
        lang = Language(language)
    except ValueError:
        raise InvalidRequest(f"unsupported language {language!r}") from None
    await conn.execute(sql("UPDATE users SET language = :l, updated_at = now() WHERE id = :u"),
                       {"l": lang.value, "u": user_id})


async def audit(conn: AsyncConnection, *, actor: str, action: str, subject: str, details: dict | None = None) -> None:
    """Append to the audit log (never with a PIN or a secret in ``details``)."""
    await conn.execute(sql(
        "INSERT INTO audit_log (actor, action, subject, details) VALUES (:a, :act, :s, CAST(:d AS jsonb))"),
        {"a": actor, "act": action, "s": subject, "d": json.dumps(details or {})})


async def grant_role(conn: AsyncConnection, user_id: int, role: Role, *, actor: str) -> bool:
    """Give the user ``role`` (audited); False when they had it already (nothing written)."""
    changed = (await conn.execute(sql(
        "UPDATE users SET roles = array_append(roles, CAST(:r AS text)), updated_at = now() "
        "WHERE id = :u AND NOT (CAST(:r AS text) = ANY(roles)) RETURNING id"), {"r": role.value, "u": user_id})).first()
    if changed is not None:
        await audit(conn, actor=actor, action="user.role_granted", subject=f"user:{user_id}",
                    details={"role": role.value})
    return changed is not None
