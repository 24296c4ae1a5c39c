"""Who is signed in to the operator dashboard (`gateway.ops_dashboard`): sessions opened with a
staff key (an operator's or support's, `payments.api_keys`), held by the browser as a random token
in a cookie.

Only the token's SHA-256 is stored (the token is 256 random bits: a slow hash would add nothing), so
the table read by someone else opens no session. A session lasts ``ttl_s`` from sign-in, ends at
sign-out, and ends with its key: a revoked key's sessions are refused at once. Each session has its
own CSRF token, which every form the dashboard renders carries and every action checks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.api_keys import ApiKey, get_api_key_by_id
from payments.identities import audit

#: A token as the cookie holds it: token_urlsafe(32).
_TOKEN_CHARS = 43


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OperatorSession:
    key: ApiKey
    csrf_token: str

    def csrf_matches(self, presented: object) -> bool:
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


async def open_session(conn: AsyncConnection, key: ApiKey, *, ttl_s: int) -> str:
    """Open a session for an (active, operator's) key, audited; returns the cookie's token, which
    is shown nowhere else. Expired sessions are cleared on the way."""
    if not key.is_staff or not key.active:
        raise ValueError("only an active operator or support key opens a dashboard session")
    await conn.execute(sql("DELETE FROM operator_sessions WHERE expires_at < now()"))
    token = secrets.token_urlsafe(32)
    await conn.execute(sql(
        "INSERT INTO operator_sessions (token_hash, api_key_id, csrf_token, expires_at) "
        "VALUES (:h, :k, :c, now() + make_interval(secs => :ttl))"),
        {"h": _hash(token), "k": key.id, "c": secrets.token_urlsafe(32), "ttl": ttl_s})
    await audit(conn, actor=key.actor, action="dashboard.signed_in", subject=f"api_key:{key.prefix}")
    return token


async def find_session(conn: AsyncConnection, token: object) -> OperatorSession | None:
    """The live session ``token`` opens, or None (malformed, unknown, expired, or its key revoked
    or no longer an operator's)."""
    if not isinstance(token, str) or len(token) != _TOKEN_CHARS or not token.isascii():
        return None
    row = (await conn.execute(sql(
        "SELECT api_key_id, csrf_token FROM operator_sessions WHERE token_hash = :h AND expires_at > now()"),
        {"h": _hash(token)})).first()
    if row is None:
        return None
    key = await get_api_key_by_id(conn, row.api_key_id)
    if key is None or not key.active or not key.is_staff:
        return None
    return OperatorSession(key, row.csrf_token)


async def close_session(conn: AsyncConnection, token: object) -> None:
    """End the session ``token`` opens, if any (signing out twice changes nothing)."""
    if isinstance(token, str) and len(token) == _TOKEN_CHARS:
        await conn.execute(sql("DELETE FROM operator_sessions WHERE token_hash = :h"), {"h": _hash(token)})
