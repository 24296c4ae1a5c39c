"""API keys: who may call the JSON payments API, and for whom.

A key reads ``sk_<prefix>_<secret>``. The prefix (12 characters, not secret) finds the key's row and
names it in listings, logs and the audit log; the secret (256 random bits) is shown once, when the
key is made, and only a keyed hash of it is stored: HMAC-SHA256 with a server-side pepper
(``api.key_pepper``). A slow password hash (argon2) would add nothing here: the secret is random and
long, so nobody can guess it from its hash; it would only make every API call slower.

A key with a ``user_id`` acts for that wallet owner only; a key without one is a platform key (an
app or merchant backend) that may act for any payer. An **operator** key (role ``operator``) is a
person's at the operator API (``/v1/ops``) and dashboard (``/ops``): it has no user and may not call
the payments API, as a caller's key may not call the operator's. A **support** key is a staff key
too, reading only (no refund, verdict or retry). Revoking is immediate and final.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from payments.errors import InvalidRequest, PaymentsError
from payments.identities import audit

KEY_SCHEME = "sk"
PREFIX_LENGTH = 12
# Crockford's base32, lower case: the prefix survives being read aloud and contains no "_".
_PREFIX_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_PREFIX = re.compile(rf"^[{_PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}}$")
# token_urlsafe(32): 43 characters of [A-Za-z0-9_-]; the secret may itself contain "_".
_KEY = re.compile(rf"^{KEY_SCHEME}_([{_PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})_([A-Za-z0-9_-]{{43}})$")
_HASH_SCHEME = "hmac-sha256"
#: How stale ``last_used_at`` may get before a use rewrites it: a busy key must not turn every API
#: call into a write on one hot row.
LAST_USED_RESOLUTION_S = 60
CALLER = "caller"
OPERATOR = "operator"
SUPPORT = "support"
#: The roles of people at the operator API and dashboard (never the payments API).
STAFF_ROLES = frozenset({OPERATOR, SUPPORT})


class UnknownApiKey(PaymentsError):
    code = "unknown_api_key"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed: never its secret nor its hash."""

    id: int
    prefix: str
    name: str
    user_id: int | None
    user_phone: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    role: str = CALLER

    @property
    def is_staff(self) -> bool:
        """A person's key at the operator API and dashboard (an operator's or support's), never
        the payments API's."""
        return self.role in STAFF_ROLES

    @property
    def may_act(self) -> bool:
        """Refunds, verdicts and retries: an operator's key, not a support key (which reads)."""
        return self.role == OPERATOR

    @property
    def actor(self) -> str:
        """How what an operator does with the key is signed in histories and the audit log: the name
        it was given and its prefix (names may repeat). The name is cut to 40 characters, so that
        the prefix survives where a history keeps 60 (a verdict's cause)."""
        return f"{self.name[:40]} ({self.prefix})"

    @property
    def is_platform(self) -> bool:
        """A platform key may act for any payer; a user key only for its own user."""
        return self.user_id is None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly made key: ``secret`` is the whole key to hand to its owner, now and never again."""

    key: ApiKey
    secret: str


class ApiKeyHasher:
    """Hashes and checks secrets with the server's pepper."""

    def __init__(self, pepper: str) -> None:
        self._pepper = pepper.encode()

    def hash(self, prefix: str, secret: str) -> str:
        # The prefix is part of the message: a hash copied onto another row does not verify there.
        digest = hmac.new(self._pepper, f"{prefix}:{secret}".encode(), hashlib.sha256).hexdigest()
        return f"{_HASH_SCHEME}:{digest}"

    def matches(self, prefix: str, secret: str, stored: str) -> bool:
        return hmac.compare_digest(self.hash(prefix, secret).encode(), stored.encode())


def split_key(presented: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None."""
    match = _KEY.match(presented.strip()) if isinstance(presented, str) else None
    return (match.group(1), match.group(2)) if match else None


def key_prefix(typed: str) -> str:
    """The prefix an operator means: the prefix typed, or that of a whole key pasted in."""
    whole = split_key(typed)
    return whole[0] if whole else typed.strip()


def _new_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


_COLUMNS = ("k.id, k.prefix, k.name, k.user_id, u.phone AS user_phone, k.created_at, k.last_used_at, "
            "k.revoked_at, k.role")
_FROM = "api_keys k LEFT JOIN users u ON u.id = k.user_id"


def _key(row) -> ApiKey:
    return ApiKey(row.id, row.prefix, row.name, row.user_id, row.user_phone, row.created_at, row.last_used_at,
                  row.revoked_at, row.role)


async def create_api_key(conn: AsyncConnection, hasher: ApiKeyHasher, name: str, *, user_id: int | None = None,
                         role: str = CALLER, actor: str = "operator") -> NewApiKey:
    """Make a key (a caller's: for ``user_id``, or a platform key; or a staff ``role``'s) in the
    caller's transaction, audited."""
    name = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= 200 or not name.isprintable():
        raise InvalidRequest("a key's name is 1 to 200 printable characters")
    if role not in (CALLER, *STAFF_ROLES):
        raise InvalidRequest(f"a key's role is {CALLER}, {OPERATOR} or {SUPPORT}")
    if role != CALLER and user_id is not None:
        raise InvalidRequest("an operator or support key is a person's, not a wallet's: it acts for no user")
    secret = secrets.token_urlsafe(32)
    for _ in range(5):  # 60 bits of prefix: a collision is rare, but the column is unique
        prefix = _new_prefix()
        row = (await conn.execute(text(
            "INSERT INTO api_keys (prefix, secret_hash, name, user_id, role) VALUES (:p, :h, :n, :u, :r) "
            "ON CONFLICT (prefix) DO NOTHING RETURNING id"),
            {"p": prefix, "h": hasher.hash(prefix, secret), "n": name, "u": user_id, "r": role})).first()
        if row is not None:
            break
    else:
        raise RuntimeError("could not find a free API key prefix")
    await audit(conn, actor=actor, action="api_key.created", subject=f"api_key:{prefix}",
                details={"name": name, "user_id": user_id, "role": role})
    key = await get_api_key(conn, prefix)
    return NewApiKey(key, f"{KEY_SCHEME}_{prefix}_{secret}")


async def get_api_key(conn: AsyncConnection, prefix: str) -> ApiKey:
    row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE k.prefix = :p"), {"p": prefix})).first()
    if row is None:
        raise UnknownApiKey(f"no API key {prefix!r}")
    return _key(row)


async def get_api_key_by_id(conn: AsyncConnection, key_id: int) -> ApiKey | None:
    row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM {_FROM} WHERE k.id = :i"), {"i": key_id})).first()
    return _key(row) if row is not None else None


async def list_api_keys(conn: AsyncConnection, *, include_revoked: bool = True) -> list[ApiKey]:
    where = "" if include_revoked else " WHERE k.revoked_at IS NULL"
    rows = await conn.execute(text(f"SELECT {_COLUMNS} FROM {_FROM}{where} ORDER BY k.id"))
    return [_key(r) for r in rows]


async def revoke_api_key(conn: AsyncConnection, prefix: str, *, actor: str = "operator") -> ApiKey:
    """Revoke a key for good (revoking it again changes nothing), audited."""
    if not _PREFIX.match(prefix or ""):
        raise UnknownApiKey(f"no API key {prefix!r}")
    revoked = (await conn.execute(text(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = :p AND revoked_at IS NULL RETURNING id"),
        {"p": prefix})).first()
    key = await get_api_key(conn, prefix)
    if revoked is not None:
        await audit(conn, actor=actor, action="api_key.revoked", subject=f"api_key:{prefix}")
    return key


async def verify_api_key(conn: AsyncConnection, hasher: ApiKeyHasher, presented: str) -> ApiKey | None:
    """The active key ``presented`` is, or None (malformed, unknown, wrong secret or revoked: the
    caller must not tell which). Records the use, at most once a minute per key."""
    parts = split_key(presented)
    if parts is None:
        return None
    prefix, secret = parts
    row = (await conn.execute(text(f"SELECT {_COLUMNS}, k.secret_hash FROM {_FROM} WHERE k.prefix = :p"),
                              {"p": prefix})).first()
    if row is None:
        hasher.hash(prefix, secret)  # the same work as for a known prefix: timing tells nothing
        return None
    if not hasher.matches(prefix, secret, row.secret_hash) or row.revoked_at is not None:
        return None
    await conn.execute(text(
        "UPDATE api_keys SET last_used_at = now() WHERE id = :i "
        "AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => :s))"),
        {"i": row.id, "s": LAST_USED_RESOLUTION_S})
    return _key(row)
