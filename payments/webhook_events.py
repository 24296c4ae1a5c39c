"""Webhook events: what a payment's final state tells the endpoints subscribed to it.

`payment_store.transition` finds, in the statement that moves a payment to a final state, the
endpoints (`payments.webhook_endpoints`) that must hear of it, and calls `enqueue_events` in the
same transaction: an event exists exactly when the state it tells of does, and a payment nobody
subscribed to costs nothing more. Each event and endpoint is one outbox job (``webhook.deliver``),
sent by `payments.webhook_delivery` and retried with the outbox's backoff until the endpoint
answers 2xx.

Who hears what:

- ``payment.succeeded``, ``payment.failed``, ``payment.reversed``, ``payment.refunded``: the
  endpoints of the API key whose request made the payment (a refund it asked for included);
- ``payment.received``: the endpoints of a user's keys (a merchant's), when a payment other than a
  refund reaches that user's wallet, whoever made it (a customer paying by USSD, say);
- ``payment_intent.succeeded``, ``.declined``, ``.cancelled``, ``.expired``: the endpoints of the
  key that made the payment intent (`payments.intents`), when it ends (`enqueue_key_event`);
  ``payment_intent.refunded`` when the payment that paid it is refunded.

An event reads ``{"id": "evt_…", "type": "payment.succeeded", "created_at": ISO 8601,
"data": {"payment": {…}}}``; the payment is as ``GET /v1/payments/{id}`` shows it (without its
history) at the moment of the change, plus ``refund_of`` for a refund. An endpoint's owner can also
ask for a ``webhook.test`` event (`send_test_event`), to check its signature checks. Delivery is at
least once and not in order: receivers deduplicate on ``id`` and may read the payment again for its
latest state.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.outbox import Lane, NewJob, enqueue_many
from payments.payment_json import iso, payment_json
from payments.webhook_endpoints import WebhookEndpoint, WebhookEndpointDisabled, get_endpoint

if TYPE_CHECKING:
    from payments.payment_store import Payment

JOB_WEBHOOK = "webhook.deliver"
#: The outbox lane of deliveries: a worker of their own (`gateway.worker_resources.build_workers`),
#: woken on a channel of their own, so that neither kind of job waits on, or wakes, the other's worker.
WEBHOOK_KINDS = frozenset({JOB_WEBHOOK})
WEBHOOK_LANE = Lane(only=WEBHOOK_KINDS, channel="sauti_outbox_webhooks")
RECEIVED = "payment.received"
#: Every type an endpoint may receive, for the docs and the receivers' checks.
EVENT_TYPES = ("payment.succeeded", "payment.failed", "payment.reversed", "payment.refunded", RECEIVED,
               "payment_intent.succeeded", "payment_intent.declined", "payment_intent.cancelled",
               "payment_intent.expired", "payment_intent.refunded")
#: Sent only when its owner asks (`send_test_event`): an endpoint's first check of its signatures.
TEST_EVENT = "webhook.test"
#: Tries of one delivery before it is parked (`sauti webhook deliveries` lists it; `sauti outbox retry`
#: sends it again). With the outbox's default backoff (doubling from 2 s, at most 10 min apart, each
#: wait jittered between half and all of that) thirty tries span 1.8 to 3.6 hours: an endpoint down
#: for a deploy, or for an hour, misses nothing.
DELIVERY_ATTEMPTS = 30

_PARTIES = sql("SELECT (SELECT phone FROM users WHERE id = :payer) AS payer, "
               "(SELECT public_id FROM payments WHERE id = :refund_of) AS refund_of")


def new_event_id() -> str:
    return f"evt_{secrets.token_urlsafe(16)}"


async def enqueue_events(conn: AsyncConnection, payment: Payment, hooks: Sequence[tuple[int, bool]]) -> int:
    """Queue the events of ``payment``'s new (final) state for ``hooks``: (endpoint id, whether the
    endpoint's key made the payment). In the caller's transaction; returns how many were queued."""
    if not hooks:
        return 0
    parties = (await conn.execute(_PARTIES, {"payer": payment.payer_user_id, "refund_of": payment.refund_of})).one()
    snapshot = payment_json(payment, parties.payer)
    if parties.refund_of is not None:
        snapshot["refund_of"] = parties.refund_of
    events: dict[str, dict[str, Any]] = {}
    jobs = []
    for endpoint, own in hooks:
        kind = f"payment.{payment.status.value}" if own else RECEIVED
        event = events.get(kind)
        if event is None:
            # One event per type: every endpoint told of it sees the same id.
            event = events[kind] = {"id": new_event_id(), "type": kind, "created_at": iso(payment.updated_at),
                                    "data": {"payment": snapshot}}
        jobs.append(_delivery(endpoint, event))
    return await enqueue_many(conn, jobs, channel=WEBHOOK_LANE.channel)


_KEY_ENDPOINTS = sql("SELECT e.id FROM webhook_endpoints e JOIN api_keys k ON k.id = e.api_key_id "
                     "WHERE e.api_key_id = :key AND e.disabled_at IS NULL AND k.revoked_at IS NULL ORDER BY e.id")


async def enqueue_key_event(conn: AsyncConnection, api_key_id: int, kind: str, data: dict[str, Any], *,
                            at: datetime) -> int:
    """Queue one event of ``kind`` (carrying ``data``) for every live endpoint of the API key (none
    for a revoked key). In the caller's transaction; returns how many deliveries were queued."""
    endpoints = list((await conn.execute(_KEY_ENDPOINTS, {"key": api_key_id})).scalars())
    if not endpoints:
        return 0
    event = {"id": new_event_id(), "type": kind, "created_at": iso(at), "data": data}
    return await enqueue_many(conn, [_delivery(endpoint, event) for endpoint in endpoints],
                              channel=WEBHOOK_LANE.channel)


async def send_test_event(conn: AsyncConnection, endpoint: WebhookEndpoint) -> str:
    """Queue a ``webhook.test`` event (no payment in it) for an active endpoint, delivered, signed
    and retried like any other; returns its id. In the caller's transaction."""
    if not endpoint.active:
        raise WebhookEndpointDisabled(f"webhook endpoint {endpoint.public_id} is disabled")
    event = {"id": new_event_id(), "type": TEST_EVENT, "created_at": iso(datetime.now(UTC)),
             "data": {"endpoint": endpoint.public_id}}
    await enqueue_many(conn, [_delivery(endpoint.id, event)], channel=WEBHOOK_LANE.channel)
    return event["id"]


def _delivery(endpoint_id: int, event: dict[str, Any]) -> NewJob:
    """The outbox job that sends ``event`` to an endpoint, once per (endpoint, event)."""
    return NewJob(JOB_WEBHOOK, {"endpoint": endpoint_id, "event": event},
                  dedupe_key=f"{JOB_WEBHOOK}:{endpoint_id}:{event['id']}", max_attempts=DELIVERY_ATTEMPTS)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's delivery to one endpoint, as the outbox has it (for `sauti webhook deliveries` and
    ``GET /v1/webhook_endpoints/{id}/deliveries``)."""

    job_id: int
    endpoint: str
    event_id: str | None
    event_type: str | None
    payment: str | None
    status: str  # the outbox job's: pending, running, done, parked
    attempts: int
    last_error: str | None  # as the outbox keeps it: for operators (`public_error` for the endpoint's owner)
    created_at: datetime
    run_after: datetime
    finished_at: datetime | None

    def status_for(self, endpoint: WebhookEndpoint) -> str:
        """The status the endpoint's owner reads: the job's, except that one done after the endpoint
        was disabled was ``dropped``, not sent (`payments.webhook_delivery.WebhookSender.deliver`)."""
        if (self.status == "done" and endpoint.disabled_at is not None and self.finished_at is not None
                and self.finished_at >= endpoint.disabled_at):
            return "dropped"
        return self.status


async def deliveries(conn: AsyncConnection, *, endpoint: str | None = None, undelivered: bool = False,
                     limit: int = 20, before: int | None = None) -> list[Delivery]:
    """The newest deliveries (to the endpoint whose public id is ``endpoint``, when given; only those
    not delivered yet or parked, with ``undelivered``; older than job ``before``), newest first."""
    if endpoint is not None:
        return await deliveries_to(conn, await get_endpoint(conn, endpoint), undelivered=undelivered, limit=limit,
                                    before=before)
    rows = await conn.execute(sql(
        f"SELECT j.id, e.public_id, {_DELIVERY_COLUMNS} "
        # Compared as text: a job whose payload names no number (none of ours) must not fail the list.
        "FROM outbox_jobs j JOIN webhook_endpoints e ON CAST(e.id AS text) = j.payload->>'endpoint' "
        "WHERE j.kind = :kind AND j.id < :before "
        "AND (NOT :undelivered OR j.status <> 'done') ORDER BY j.id DESC LIMIT :limit"),
        {"kind": JOB_WEBHOOK, "undelivered": undelivered, "limit": limit, "before": before or 2**63 - 1})
    return [Delivery(*row) for row in rows]


_DELIVERY_COLUMNS = ("j.payload->'event'->>'id' AS event_id, j.payload->'event'->>'type' AS event_type, "
                     "j.payload->'event'->'data'->'payment'->>'public_id' AS payment, j.status, j.attempts, "
                     "j.last_error, j.created_at, j.run_after, j.finished_at")


async def deliveries_to(conn: AsyncConnection, endpoint: WebhookEndpoint, *, undelivered: bool = False,
                        limit: int = 20, before: int | None = None) -> list[Delivery]:
    """``endpoint``'s deliveries as `deliveries` lists them, through their own index: every one, or
    only those not done (their own index: what waits is read without what was delivered)."""
    # The conditions are written out, not bound: the partial indexes of migration 0016 are chosen only
    # where the statement itself says kind = 'webhook.deliver' (JOB_WEBHOOK) and status <> 'done'.
    waiting = "AND j.status <> 'done' " if undelivered else ""
    rows = await conn.execute(sql(
        f"SELECT j.id, CAST(:public_id AS text), {_DELIVERY_COLUMNS} FROM outbox_jobs j "
        "WHERE j.kind = 'webhook.deliver' AND j.payload->>'endpoint' = :endpoint AND j.id < :before "
        f"{waiting}ORDER BY j.id DESC LIMIT :limit"),
        {"public_id": endpoint.public_id, "endpoint": str(endpoint.id), "limit": limit, "before": before or 2**63 - 1})
    return [Delivery(*row) for row in rows]
