"""Webhook endpoints: the URLs where an API key's owner (a merchant, an app's backend) hears of its
payments, without polling. `payments.webhook_events` says which events each endpoint hears;
`payments.webhook_delivery` signs and sends them.

An endpoint belongs to one API key, which manages it (`POST/GET/DELETE /v1/webhook_endpoints`) as
operators can (`sauti webhook`); a key has at most ``max_per_key`` live ones. Its signing secret
(``whsec_`` and 256 random bits) is made here and shown once, when the endpoint is added. It is kept
as it is, not hashed, because every delivery is signed with it. Disabling an endpoint is final, like
revoking a key: events queued for it are dropped when their turn comes. Both are audited.

A secret can be rolled (`roll_secret`: a leaked one, a staff change, a routine): the endpoint gets a
new one, shown once, and the one before keeps signing deliveries beside it, for a day by default
(up to a week, or not at all), so the receiver can take the new one into use without refusing a
delivery meanwhile. Each delivery's ``Sauti-Signature`` then carries one ``v1`` per secret, the
newest first, as Wave's does during its rotations. Rolling again before that ends drops the oldest:
an endpoint signs with two secrets at most.

A URL is absolute ``http(s)``, without ``user:password@`` or ``#fragment``, at most 2,000
characters. Unless ``allow_local`` (tests, a demo on one machine), it is ``https`` and names neither
``localhost`` nor a literal loopback, private, link-local or reserved address: a payments server
must not be turned into a way of POSTing into its own network. A name is not resolved here: the
sender resolves it, keeping public addresses only (`payments.webhook_delivery.PublicOnlyResolver`).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.api_keys import CALLER
from payments.errors import InvalidRequest, PaymentsError
from payments.identities import audit

MAX_URL_LENGTH = 2000
SECRET_PREFIX = "whsec_"  # noqa: S105 -- the prefix every secret is shown with, not a secret
ENDPOINT_PREFIX = "we_"
#: How long the secret before a roll keeps signing, unless the roll says otherwise; and the most it may.
PREVIOUS_SECRET_VALID = timedelta(hours=24)
PREVIOUS_SECRET_VALID_MAX = timedelta(days=7)
_PUBLIC_ID = re.compile(ENDPOINT_PREFIX + r"[A-Za-z0-9_-]{16}")


class InvalidWebhookUrl(InvalidRequest):
    code = "invalid_webhook_url"


class UnknownWebhookEndpoint(PaymentsError):
    code = "unknown_webhook_endpoint"


class TooManyWebhookEndpoints(InvalidRequest):
    code = "too_many_webhook_endpoints"


class WebhookEndpointDisabled(PaymentsError):
    code = "webhook_endpoint_disabled"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """An endpoint as listed: never its secret."""

    id: int
    public_id: str
    api_key_prefix: str
    url: str
    created_at: datetime
    disabled_at: datetime | None
    #: Until when the secret before the last roll still signs deliveries; None when none does.
    previous_secret_expires_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class NewWebhookEndpoint:
    """A freshly added endpoint and its signing secret: give it to the key's owner now; it is not shown again."""

    endpoint: WebhookEndpoint
    secret: str


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Where and how to send one endpoint's events: `payments.webhook_delivery` reads it per delivery."""

    url: str
    #: The secrets a delivery is signed with now: the endpoint's, then the one before its last roll
    #: while that one has not expired.
    secrets: tuple[str, ...]
    live: bool


def check_url(url: object, *, allow_local: bool) -> str:
    """``url`` trimmed, or `InvalidWebhookUrl` saying what is wrong with it."""
    text = url.strip() if isinstance(url, str) else ""
    if not text or len(text) > MAX_URL_LENGTH or not text.isprintable() or " " in text:
        raise InvalidWebhookUrl(f"a webhook URL is an absolute http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise InvalidWebhookUrl(f"{text[:80]!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidWebhookUrl("a webhook URL starts with https:// and names a host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidWebhookUrl("a webhook URL carries no user:password@ and no #fragment "
                                "(put a secret in the path or check our signature instead)")
    if not allow_local:
        if parts.scheme != "https":
            raise InvalidWebhookUrl("a webhook URL uses https: events carry payments and phone numbers")
        if _local_host(host):
            raise InvalidWebhookUrl(f"{host} is a local or private address; give a public https URL")
    return text


def _local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            # The resolver also reads IPv4's old forms as addresses: 2130706433, 127.1, 0x7f.1 are
            # all 127.0.0.1.
            address = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return False  # a name: resolved when sending, to public addresses only (see the module's docstring)
    return not public_address(address)


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is on the public internet. ``is_global`` is not enough: before Python 3.13
    it ignores ``is_reserved`` for IPv6, so ``::127.0.0.1`` (IPv4-compatible), ``::ffff:0:7f00:1``
    (IPv4-translated) and ``64:ff9b::7f00:1`` (NAT64) all pass, though each reaches 127.0.0.1; and
    it calls multicast global. An IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4) is
    public only when that IPv4 address is."""
    if not address.is_global or address.is_reserved or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        # NAT64's 64:ff9b::/96 and 64:ff9b:1::/48 lie in ::/8, reserved, refused above.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return public_address(embedded)
    return True


# A previous secret is live until it expires; after that it is as good as gone (never signs again).
_PREVIOUS_LIVE = "e.previous_secret_expires_at > now()"
_COLUMNS = ("e.id, e.public_id, k.prefix, e.url, e.created_at, e.disabled_at, "
            f"CASE WHEN {_PREVIOUS_LIVE} THEN e.previous_secret_expires_at END AS previous_expires_at")
_FROM = "webhook_endpoints e JOIN api_keys k ON k.id = e.api_key_id"


def _endpoint(row) -> WebhookEndpoint:
    return WebhookEndpoint(row.id, row.public_id, row.prefix, row.url, row.created_at, row.disabled_at,
                           row.previous_expires_at)


async def add_endpoint(conn: AsyncConnection, api_key_id: int, url: object, *, allow_local: bool, max_per_key: int,
                       actor: str) -> NewWebhookEndpoint:
    """Add an endpoint for the (active) key ``api_key_id``, in the caller's transaction, audited."""
    checked = check_url(url, allow_local=allow_local)
    # The key's row lock makes concurrent additions count one after the other.
    key = (await conn.execute(sql("SELECT prefix, revoked_at, role FROM api_keys WHERE id = :k FOR UPDATE"),
                              {"k": api_key_id})).first()
    if key is None or key.revoked_at is not None:
        raise InvalidRequest("webhook endpoints belong to an active API key")
    if key.role != CALLER:  # an operator's key makes no payments: nothing would ever be told to it
        raise InvalidRequest("webhook endpoints belong to an app's or merchant's key, not an operator's")
    live = (await conn.execute(sql(
        "SELECT count(*) FROM webhook_endpoints WHERE api_key_id = :k AND disabled_at IS NULL"),
        {"k": api_key_id})).scalar_one()
    if live >= max_per_key:
        raise TooManyWebhookEndpoints(f"this API key already has {live} webhook endpoints, the most it may have; "
                                      "disable one first")
    secret = _new_secret()
    public_id = ENDPOINT_PREFIX + secrets.token_urlsafe(12)
    await conn.execute(sql(
        "INSERT INTO webhook_endpoints (public_id, api_key_id, url, secret) VALUES (:p, :k, :u, :s)"),
        {"p": public_id, "k": api_key_id, "u": checked, "s": secret})
    await audit(conn, actor=actor, action="webhook.added", subject=f"api_key:{key.prefix}",
                details={"endpoint": public_id, "url": checked})
    return NewWebhookEndpoint(await get_endpoint(conn, public_id), secret)


async def get_endpoint(conn: AsyncConnection, public_id: str, *, api_key_id: int | None = None) -> WebhookEndpoint:
    """The endpoint ``public_id`` (of key ``api_key_id`` only, when given: another key's looks unknown)."""
    if not isinstance(public_id, str) or not _PUBLIC_ID.fullmatch(public_id):
        # Not one we made (a typo, a NUL PostgreSQL cannot even compare): unknown, without asking.
        raise UnknownWebhookEndpoint(f"no webhook endpoint {str(public_id)[:40]!r}")
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE e.public_id = :p AND (CAST(:k AS bigint) IS NULL OR e.api_key_id = :k)"),
        {"p": str(public_id), "k": api_key_id})).first()
    if row is None:
        raise UnknownWebhookEndpoint(f"no webhook endpoint {str(public_id)[:40]!r}")
    return _endpoint(row)


async def list_endpoints(conn: AsyncConnection, *, api_key_id: int | None = None) -> list[WebhookEndpoint]:
    """Every endpoint (of key ``api_key_id``, when given), oldest first, disabled ones included."""
    rows = await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE CAST(:k AS bigint) IS NULL OR e.api_key_id = :k ORDER BY e.id"),
        {"k": api_key_id})
    return [_endpoint(r) for r in rows]


async def disable_endpoint(conn: AsyncConnection, public_id: str, *, api_key_id: int | None = None,
                           actor: str) -> WebhookEndpoint:
    """Disable an endpoint for good (again changes nothing), audited the first time."""
    endpoint = await get_endpoint(conn, public_id, api_key_id=api_key_id)
    disabled = (await conn.execute(sql(
        "UPDATE webhook_endpoints SET disabled_at = now() WHERE id = :i AND disabled_at IS NULL RETURNING id"),
        {"i": endpoint.id})).first()
    if disabled is not None:
        await audit(conn, actor=actor, action="webhook.disabled", subject=f"api_key:{endpoint.api_key_prefix}",
                    details={"endpoint": endpoint.public_id})
    return await get_endpoint(conn, public_id)


async def delivery_target(conn: AsyncConnection, endpoint_id: int) -> DeliveryTarget | None:
    """The URL and secret of endpoint ``endpoint_id``, and whether it still takes events (neither it
    disabled nor its key revoked); None when there is no such endpoint."""
    row = (await conn.execute(sql(
        f"SELECT e.url, e.secret, CASE WHEN {_PREVIOUS_LIVE} THEN e.previous_secret END AS previous, "
        "e.disabled_at IS NULL AND k.revoked_at IS NULL AS live "
        "FROM webhook_endpoints e JOIN api_keys k ON k.id = e.api_key_id WHERE e.id = :i"),
        {"i": endpoint_id})).first()
    if row is None:
        return None
    return DeliveryTarget(row.url, (row.secret, row.previous) if row.previous else (row.secret,), row.live)


def previous_secret_validity(seconds: object) -> timedelta:
    """How long the secret before a roll keeps signing, from a whole number of seconds (0: not at
    all), or `InvalidRequest` saying what is allowed."""
    most = int(PREVIOUS_SECRET_VALID_MAX.total_seconds())
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= most:
        raise InvalidRequest(f"the previous secret keeps signing for a whole number of seconds from 0 (not at "
                             f"all) to {most} (a week)")
    return timedelta(seconds=seconds)


async def roll_secret(conn: AsyncConnection, public_id: str, *, api_key_id: int | None = None,
                      previous_valid: timedelta = PREVIOUS_SECRET_VALID, actor: str) -> NewWebhookEndpoint:
    """Give endpoint ``public_id`` (of key ``api_key_id``, when given) a new signing secret, in the
    caller's transaction, audited. The secret it had keeps signing beside it for ``previous_valid``
    (none when zero); a previous secret from an earlier roll stops at once."""
    if not timedelta(0) <= previous_valid <= PREVIOUS_SECRET_VALID_MAX:
        raise InvalidRequest(f"the previous secret keeps signing for at most {PREVIOUS_SECRET_VALID_MAX}")
    endpoint = await get_endpoint(conn, public_id, api_key_id=api_key_id)
    secret = _new_secret()
    # One statement, so concurrent rolls of one endpoint queue on its row: each keeps the secret the
    # one before it made, never a secret no one was shown.
    rolled = (await conn.execute(sql(
        "UPDATE webhook_endpoints SET previous_secret = CASE WHEN CAST(:keep AS boolean) THEN secret END, "
        "previous_secret_expires_at = CASE WHEN CAST(:keep AS boolean) THEN now() + CAST(:valid AS interval) END, "
        "secret = :s WHERE id = :i AND disabled_at IS NULL "
        "AND EXISTS (SELECT 1 FROM api_keys k WHERE k.id = api_key_id AND k.revoked_at IS NULL) RETURNING id"),
        {"i": endpoint.id, "s": secret, "keep": previous_valid > timedelta(0), "valid": previous_valid})).first()
    if rolled is None:  # it would sign nothing: nothing is sent to it any more
        raise WebhookEndpointDisabled(f"webhook endpoint {endpoint.public_id} is disabled, or its API key revoked; "
                                      "add a new one (for an active key) instead")
    await audit(conn, actor=actor, action="webhook.secret_rolled", subject=f"api_key:{endpoint.api_key_prefix}",
                details={"endpoint": endpoint.public_id, "previous_valid_s": int(previous_valid.total_seconds())})
    return NewWebhookEndpoint(await get_endpoint(conn, public_id), secret)
