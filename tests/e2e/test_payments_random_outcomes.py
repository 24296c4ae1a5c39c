"""Every kind of payment, at once, against every failure mode the sandboxes know: seeded random
commands (p2p, payouts to numbers without a wallet, withdrawals, M-Pesa and Wave deposits, paybill,
till and pochi payments, customers paying our paybill) whose payers, recipients, paybills and tills
end in the sandboxes' outcome suffixes (insufficient funds, cancelled, unreachable, wrong initiator,
no callback, the callback twice, the callback before the answer, a slow answer, HTTP 429 and 500,
queue time-outs), a fifth of them sent twice at the same moment, then refunds of some of what
succeeded (again some twice at once; the first the providers are asked for fail) and of some of
what did not. Wave payers approve or decline their checkouts in the app.

The gateway runs as `sauti serve` does (its own outbox worker, the providers' callbacks over HTTP,
recovery every second); nothing is told what to expect of any one payment. When everything is
done, what must hold whatever happened to each:

- every payment is in a final state, reached once;
- a command sent twice at once gave one payment at most (or the same refusal twice);
- every wallet holds exactly what its final payments say (a model computed from the payments, not
  from the ledger), and no wallet is negative;
- the sandbox never carried out one of our payments twice;
- `sauti ledger check` passes and `sauti reconcile` finds nothing to review;
- half the commands come from an API key with a webhook endpoint, and a merchant's key has one too
  (its endpoint failing a fifth of the deliveries): the first heard of every final state of every
  payment its key made exactly once, the merchant of every payment that reached its wallet, each
  event signed, none parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import pytest
import yaml

from gateway.keys import API_KEY_HASHER
from gateway.settings import Settings
from payments.api_keys import create_api_key
from payments.commands import (
    BuyGoods,
    Channel,
    Command,
    Deposit,
    PayBill,
    PayPochi,
    Refund,
    SendToPhone,
    SendToWallet,
    Withdraw,
)
from payments.errors import PaymentsError
from payments.identities import User
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.providers.daraja import DarajaError
from payments.providers.errors import ProviderTimeout
from payments.review import PROVIDER_REQUESTS, OperatorVerdict, flagged
from payments.webhook_delivery import SIGNATURE_HEADER, verify_delivery
from payments.webhook_endpoints import add_endpoint
from payments.webhook_events import JOB_WEBHOOK
from tests.e2e.gateway_payments_world import Gateway, free_port, running_gateway
from tests.e2e.test_gateway_payments_recovery import sandboxes_at_a_port_base
from tests.e2e.test_payments_crash_recovery import (
    all_final,
    config_tree,
    orphans_settled,
    sauti,
    statement,
)
from tests.http_servers import serve_app
from tests.numbers import unique_digits

KES, XOF = Currency.KES, Currency.XOF
#: The sandboxes' outcome suffixes (`payments.sandbox.outcomes`), success ("123") among them twice
#: as often as any failure, as in life.
SUFFIXES = ("123", "123", "001", "002", "003", "019", "032", "037", "201", "429", "500", "900", "902", "903",
            "904", "905")
COMMANDS = 72
AT_ONCE = 8
#: Another seed explores other mixes: SAUTI_PAYMENTS_SEED=7 pytest tests/e2e/test_payments_random_outcomes.py
SEED = int(os.environ.get("SAUTI_PAYMENTS_SEED", "20261130"))


def kes_number(rng: random.Random) -> str:
    """A Kenyan number without a wallet, its outcome picked by its suffix."""
    return f"+2547{unique_digits(5)}{rng.choice(SUFFIXES)}"


def command(rng: random.Random, n: int, kes: list[User], xof: list[User]) -> Command:
    """One random command of any kind; amounts sometimes under a provider's minimum or over the
    payer's balance."""
    key = f"random-{n}"
    payer, other = rng.sample(kes, 2)
    amount = Money.of(rng.choice([rng.randint(1, 9), rng.randint(10, 400), rng.randint(10, 400), 50_000]), KES)
    match rng.randrange(10):
        case 0:
            return SendToWallet(key, payer.id, amount, Channel.APP, recipient_user_id=other.id)
        case 1:
            return SendToPhone(key, payer.id, amount, Channel.USSD, recipient_phone=rng.choice(
                [kes_number(rng), other.phone]))
        case 2:
            return Withdraw(key, payer.id, amount, Channel.USSD, phone=rng.choice([None, kes_number(rng)]))
        case 3:
            return Deposit(key, payer.id, amount, Channel.USSD)
        case 4:
            return PayBill(key, payer.id, amount, Channel.USSD, paybill=f"40{rng.randrange(10)}{rng.choice(SUFFIXES)}",
                           account_number=f"ACC{n}")
        case 5:
            return BuyGoods(key, payer.id, amount, Channel.VOICE, till=f"52{rng.randrange(10)}{rng.choice(SUFFIXES)}")
        case 6:
            return PayPochi(key, payer.id, amount, Channel.USSD, phone=kes_number(rng))
        case _:
            payer, other = rng.sample(xof, 2)
            amount = Money.of(rng.choice([rng.randint(100, 5_000), 900_000]), XOF)
            match rng.randrange(4):
                case 0:
                    return SendToPhone(key, payer.id, amount, Channel.APP,
                                       recipient_phone=rng.choice([other.phone, f"+22177{unique_digits(4)}"
                                                                                f"{rng.choice(SUFFIXES)}"]))
                case 1:
                    return Withdraw(key, payer.id, amount, Channel.USSD)
                case _:
                    return Deposit(key, payer.id, amount, Channel.APP)


async def control(url: str, body: dict[str, Any]) -> None:
    """A sandbox's control API (`payments.sandbox.outcomes`, the Wave payer's app)."""
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        assert resp.status in (200, 201, 409), await resp.text()


async def payers_answer_checkouts(gateway: Gateway, wave_url: str, made: list[Payment], rng: random.Random) -> None:
    """Wave payers open their checkouts in the app once they exist and pay (or, one in four,
    decline; their numbers' suffixes may fail a payment too)."""
    waiting = {p.public_id for p in made if p.kind == "deposit" and p.amount.currency is XOF}
    deadline = asyncio.get_running_loop().time() + 30
    while waiting:
        assert asyncio.get_running_loop().time() < deadline, f"checkouts never opened: {waiting}"
        for public_id in sorted(waiting):
            payment = await gateway.payment(public_id)
            if payment.provider_ref:
                answer = "decline" if rng.random() < 0.25 else "approve"
                await control(f"{wave_url}/_sandbox/checkout/sessions/{payment.provider_ref}/{answer}", {})
                waiting.discard(public_id)
            elif payment.status.is_final:  # the checkout could not be opened (429, 500 …)
                waiting.discard(public_id)
        await asyncio.sleep(0.1)


def refusal_code(answer: str) -> str:
    """A refusal's code: sent twice at once, a command may be refused twice with other figures in
    the message (a daily limit's remainder moved with other payments in between)."""
    return answer.partition(":")[0]


async def outcome(gateway: Gateway, cmd: Command) -> Payment | str:
    """The payment a command gave, or the refusal's code and message (never anything else)."""
    try:
        return await gateway.payments.handle(cmd)
    except PaymentsError as refused:
        return f"{refused.code}: {refused}"


async def run(gateway: Gateway, rng: random.Random, commands: list[Command]) -> list[Payment]:
    """The commands, ``AT_ONCE`` at a time, a fifth of them twice at the same moment; the payments made."""
    made: list[Payment] = []
    for start in range(0, len(commands), AT_ONCE):
        batch = commands[start:start + AT_ONCE]
        copies = [2 if rng.random() < 0.2 else 1 for _ in batch]
        tasks = [outcome(gateway, cmd) for cmd, times in zip(batch, copies, strict=True) for _ in range(times)]
        results = iter(await asyncio.gather(*tasks))
        for cmd, times in zip(batch, copies, strict=True):
            answers = [next(results) for _ in range(times)]
            # One payment at most; with none, the same refusal. (A copy refused beside a payment is
            # no second result: the copies are served one after the other.)
            payments = [a for a in answers if isinstance(a, Payment)]
            assert len({p.public_id for p in payments}) <= 1, f"{cmd} sent {times} times at once gave {answers}"
            if payments:
                made.append(payments[0])
            else:
                assert len({refusal_code(a) for a in answers}) == 1, f"{cmd} sent {times} times gave {answers}"
    return made


async def customers_pay_our_paybill(gateway: Gateway, rng: random.Random, kes: list[User]) -> None:
    """M-Pesa customers (some with failing numbers) paying our paybill with a wallet's number as the
    account, or a number that is no wallet's (parked in suspense)."""
    daraja = gateway.payments.providers.daraja
    for n in range(9):
        owner = rng.choice(kes)
        account = rng.choice(["0" + owner.phone.removeprefix("+254"), "0799999999"]) if n else \
            "0" + owner.phone.removeprefix("+254")
        # The first: M-Pesa takes the money and its confirmation never comes (suffix 900).
        phone = kes_number(rng) if n else f"+2547{unique_digits(5)}900"
        # The sandbox refused the customer (429, 500): nothing paid; or its answer outlasted the
        # gateway's short M-Pesa timeout (a C2B waits on our validation): M-Pesa goes on all the same.
        with contextlib.suppress(DarajaError, ProviderTimeout):
            await daraja.simulate_c2b(phone=phone, amount=Money.of(rng.randint(10, 300), KES), bill_ref_number=account)


def mpesa_reverses(sandboxes: Any, payment: Payment) -> None:
    """M-Pesa's customer care reverses a payout (at the recipient's request), on its own books: the
    only case in which an operator may refund an M-Pesa payout (`payments.refunds`)."""
    books = sandboxes.daraja.books
    original = books.find(payment.provider_refs["receipt"])
    books.record(transaction_id=f"RV{original.transaction_id[2:]}", kind="reversal", account=original.account,
                 amount_minor=-original.amount_minor, party=original.party, at=datetime.now(UTC),
                 reverses=original.transaction_id)
    books.mark(original.transaction_id, "reversed")


async def refunds(gateway: Gateway, sandboxes: Any, rng: random.Random, finished: list[Payment]) -> list[Payment]:
    """Refunds of about half the succeeded payments and of a few that are not refundable."""
    made: list[Payment] = []
    for n, payment in enumerate(finished):
        if payment.status.value != "succeeded" and rng.random() < 0.8:
            continue
        if payment.status.value == "succeeded" and rng.random() < 0.5:
            continue
        receipt = None
        if payment.status.value == "succeeded" and payment.provider == "mpesa" and payment.kind != "deposit":
            mpesa_reverses(sandboxes, payment)
        elif payment.provider == "mpesa" and payment.kind == "deposit" and "receipt" not in payment.provider_refs:
            # Credited by recovery's STK query, which names no receipt: the operator reads it on the
            # statement (the push's line, by its CheckoutRequestID).
            receipt = next((e.transaction_id for e in sandboxes.daraja.books.entries()
                            if e.reference == payment.provider_ref), None)
        refund = Refund(f"refund-{n}", payment.public_id, "customer asked", requested_by="test", receipt=receipt)
        answers = await asyncio.gather(*[outcome(gateway, refund) for _ in range(rng.choice([1, 2]))])
        refunds_made = [a for a in answers if isinstance(a, Payment)]
        assert len({r.public_id for r in refunds_made}) <= 1, f"{refund} sent twice at once gave {answers}"
        if refunds_made:
            made.append(refunds_made[0])
        else:
            assert payment.status.value != "succeeded" or answers[0].startswith("insufficient_funds"), \
                (payment.kind, payment.provider, answers, payment.provider_refs)
    return made


async def settled_or_flagged(gateway: Gateway, created: list[Payment], *, within_s: float) -> None:
    """Wait until each payment is final, or flagged for a person with no provider job left that
    could still reach the provider for it."""
    deadline = asyncio.get_running_loop().time() + within_s
    waiting = {p.public_id for p in created}
    while waiting:
        for public_id in sorted(waiting):
            payment = await gateway.payment(public_id)
            live = await gateway.scalar(
                "SELECT count(*) FROM outbox_jobs WHERE dedupe_key = ANY(:keys) AND status IN ('pending', 'running')",
                keys=[f"{job}:{public_id}" for job in PROVIDER_REQUESTS])
            if payment.status.is_final or (payment.provider_refs.get("needs_review") and not live):
                waiting.discard(public_id)
        if waiting and asyncio.get_running_loop().time() > deadline:
            await all_final(gateway, [await gateway.payment(p) for p in waiting], within_s=0)  # says their stories
        await asyncio.sleep(0.1)


async def operator_reviews(gateway: Gateway, sandboxes: Any) -> list[tuple[str, str, bool]]:
    """What an operator does with the review queue: finds each flagged payment in its provider's
    statement (by our id, or for a B2B, whose answer was lost, by till or paybill, account and
    amount), and decides it by what the statement shows."""
    decided = []
    used: set[str] = set(await gateway.rows("SELECT provider_refs->>'receipt' FROM payments "
                                            "WHERE provider_refs ? 'receipt'"))
    for item in await flagged(gateway.engine):
        payment = await gateway.payment(item.public_id)
        lines = [e for e in sandboxes.daraja.books.entries() + sandboxes.wave.books.entries()
                 if e.status == "completed" and e.transaction_id not in used and (
                     e.reference == payment.public_id or e.client_reference == payment.public_id
                     or (e.kind == "b2b" and e.party == (payment.paybill or payment.till)
                         and -e.amount_minor == payment.amount.minor
                         and (payment.account_number is None or e.client_reference == payment.account_number)))]
        assert len(lines) <= 1, (payment, lines)
        receipt = lines[0].transaction_id if lines else None
        used.add(receipt or "")
        await gateway.payments.decide(OperatorVerdict(
            payment.public_id, receipt is not None, f"statement: {receipt or 'no line'}", "test", receipt))
        decided.append((payment.kind, item.reason, receipt is not None))
    return decided


async def operator_books_missed_confirmations(gateway: Gateway, sandboxes: Any) -> list[Payment]:
    """What an operator does with reconciliation's "on the statement, not in Sauti": books each
    payment to our paybill whose confirmation never came (`sauti mpesa book-c2b`), from its line."""
    held = {row[0] for row in await gateway.rows("SELECT provider_ref FROM payments WHERE provider = 'mpesa' "
                                                 "AND provider_ref IS NOT NULL")}
    booked = []
    for line in sandboxes.daraja.books.entries():
        if line.kind == "c2b" and line.transaction_id not in held:
            assert await gateway.payments.book_missed_c2b(
                receipt=line.transaction_id, amount=Money(line.amount_minor, KES), account=line.client_reference,
                phone=line.party, booked_by="test", reason="statement") == "confirming"
            booked.append(await gateway.payment((await gateway.rows(
                "SELECT public_id FROM payments WHERE provider_ref = :r", r=line.transaction_id))[0][0]))
    return booked


class Endpoints:
    """Two merchants' servers: what each was sent (every try), and a fifth of the tries refused."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tries: dict[str, list[tuple[bytes, str | None]]] = {"platform": [], "merchant": []}

    async def take(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.tries[request.match_info["who"]].append((await request.read(), request.headers.get(SIGNATURE_HEADER)))
        return aiohttp.web.Response(status=500 if self.rng.random() < 0.2 else 200)

    def events(self, who: str, secret: str) -> Counter[tuple[str, str]]:
        """(payment, type) of each distinct event ``who`` got, every try's signature checked."""
        seen = {}
        for body, signature in self.tries[who]:
            event = verify_delivery(body, signature, secret, tolerance_s=3600)
            seen[event["id"]] = (event["data"]["payment"]["public_id"], event["type"])
        return Counter(seen.values())


async def subscribed_keys(gateway: Gateway, base: str, merchant: User) -> tuple[int, str, str]:
    """A platform key with an endpoint, and the merchant's user key with one; the platform key's
    id and both secrets."""
    async with gateway.engine.begin() as conn:
        platform = await create_api_key(conn, gateway.app[API_KEY_HASHER], "random platform")
        own = await create_api_key(conn, gateway.app[API_KEY_HASHER], "random merchant", user_id=merchant.id)
        secrets = [(await add_endpoint(conn, key.key.id, f"{base}/{who}", allow_local=True, max_per_key=1,
                                       actor="test")).secret
                   for key, who in ((platform, "platform"), (own, "merchant"))]
    return platform.key.id, *secrets


async def every_final_state_told_once(gateway: Gateway, endpoints: Endpoints, platform_id: int, merchant: User,
                                      secrets: tuple[str, str]) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while await gateway.scalar(f"SELECT count(*) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}' "
                               "AND status IN ('pending', 'running')"):
        assert asyncio.get_running_loop().time() < deadline, "webhook deliveries still waiting"
        await asyncio.sleep(0.1)
    assert not await gateway.scalar(f"SELECT count(*) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}' "
                                    "AND status = 'parked'")
    finals = await gateway.rows(
        "SELECT p.public_id, p.kind, p.api_key_id, p.recipient_user_id, e.to_status FROM payment_events e "
        "JOIN payments p ON p.id = e.payment_id WHERE e.to_status IN ('succeeded', 'failed', 'reversed', 'refunded')")
    told = Counter((r.public_id, f"payment.{r.to_status}") for r in finals if r.api_key_id == platform_id)
    received = Counter((r.public_id, "payment.received") for r in finals
                       if r.recipient_user_id == merchant.id and r.kind != "refund" and r.to_status == "succeeded")
    assert told and received, "the mix should make payments for the key and to the merchant"
    assert endpoints.events("platform", secrets[0]) == told
    assert endpoints.events("merchant", secrets[1]) == received


async def expected_wallets(gateway: Gateway, start: dict[int, Money]) -> dict[int, Money]:
    """What each wallet must hold: its starting balance and the effect of every final payment of
    ours, read from the payments (a refund's effect is its original's: reversed or refunded)."""
    expected = dict(start)
    rows = await gateway.rows("SELECT kind, status, payer_user_id, recipient_user_id, amount, fee, currency "
                              "FROM payments WHERE status = 'succeeded' AND kind <> 'refund'")
    for row in rows:
        currency = Currency(row.currency)
        if row.payer_user_id not in expected:
            continue  # a customer paying our paybill for a number with no wallet: suspense
        if row.kind == "deposit":
            assert row.fee == 0, row
            expected[row.payer_user_id] += Money(row.amount, currency)
        else:
            expected[row.payer_user_id] -= Money(row.amount + row.fee, currency)
            if row.recipient_user_id is not None:
                expected[row.recipient_user_id] += Money(row.amount, currency)
    return expected


@pytest.mark.slow
async def test_every_kind_against_every_failure_mode_loses_nothing_and_moves_nothing_twice(new_database,
                                                                                           tmp_path: Path):
    url, port = await new_database(), free_port()
    began = datetime.now(UTC) - timedelta(minutes=1)
    rng = random.Random(SEED)
    # Wave links lapse after 10 s: a payer whose attempt failed (declined, not enough money) may pay
    # the same link until then, so the deposit ends only when its link has expired.
    async with sandboxes_at_a_port_base(callback_delay_s=0.1, wave_checkout_ttl_s=10) as (sandboxes, base):
        tree: dict[str, Any] = config_tree(url, port, base)
        tree["outbox"] |= {"run_in_serve": True, "max_attempts": 8}
        tree["database"]["pool_size"] = 10
        config = tmp_path / "config.yml"
        config.write_text(yaml.safe_dump(tree), encoding="utf-8")
        tree["webhooks"] |= {"allow_local_urls": True}
        endpoints = Endpoints(random.Random(SEED + 1))
        receiver = aiohttp.web.Application()
        receiver.router.add_post("/{who}", endpoints.take)
        async with running_gateway(Settings.model_validate(tree)) as gateway, serve_app(receiver) as hooks:
            kes = [await gateway.user(suffix=suffix) for suffix in SUFFIXES]
            xof = [await gateway.user(XOF, suffix=suffix) for suffix in SUFFIXES[:8]]
            for user in kes:
                await gateway.fund(user, Money.of(3_000, KES))
            for user in xof:
                await gateway.fund(user, Money.of(40_000, XOF))
            start = {user.id: await gateway.wallet(user) for user in kes}
            start |= {user.id: await gateway.wallet(user, XOF) for user in xof}

            platform_id, *secrets = await subscribed_keys(gateway, hooks, merchant := kes[1])
            # Half the commands come through the platform's key (its own random: the mix stays the seed's).
            by_key = random.Random(SEED + 2)
            commands = [replace(cmd, api_key_id=platform_id) if by_key.random() < 0.5 else cmd
                        for cmd in (command(rng, n, kes, xof) for n in range(COMMANDS))]
            made = await run(gateway, rng, commands)
            # Whatever the mix, customers pay the merchant too (by USSD: no key of the merchant's made them).
            made += [await gateway.payments.handle(SendToWallet(f"to-merchant-{n}", kes[0].id, Money.of(5, KES),
                                                                Channel.USSD, recipient_user_id=merchant.id))
                     for n in range(2)]
            await customers_pay_our_paybill(gateway, rng, kes)
            # Wave payers approve their checkouts in the app once they are open (or fail to: their
            # numbers' suffixes say how).
            await payers_answer_checkouts(gateway, sandboxes.urls.wave, made, rng)
            await settled_or_flagged(gateway, made, within_s=90)
            decided = await operator_reviews(gateway, sandboxes)
            finished = await all_final(gateway, made, within_s=30)
            # The first refunds the providers are asked for fail (the customer's M-Pesa no longer holds
            # the deposit; Wave refuses): the money must come back to the wallet.
            for url in (sandboxes.urls.daraja, sandboxes.urls.wave):
                await control(f"{url}/_sandbox/outcomes", {"outcome": "insufficient_funds", "times": 2})
            refunded = await refunds(gateway, sandboxes, rng, finished)
            await settled_or_flagged(gateway, refunded, within_s=60)
            decided += await operator_reviews(gateway, sandboxes)
            await all_final(gateway, refunded, within_s=30)
            await orphans_settled(gateway, within_s=60)
            # Paybill payments whose confirmation never came (suffix 900), booked from the statement.
            missed = await operator_books_missed_confirmations(gateway, sandboxes)
            assert missed and {p.status.value for p in await all_final(gateway, missed, within_s=30)} == {"succeeded"}
            print("decided by the operator:", decided, "; booked from the statement:", len(missed))
            # Every payment, those the sandboxes' deliveries made (customers paying our paybill,
            # pushes credited as orphans) included.
            everything = await all_final(gateway, [await gateway.payment(row.public_id) for row in await gateway.rows(
                "SELECT public_id FROM payments ORDER BY id")], within_s=30)

            # It was a mix: some of every kind, successes and failures, refunds and refusals.
            kinds = Counter((p.kind, p.status.value) for p in everything)
            print("payments by kind and final state:", dict(sorted(kinds.items())))
            assert {k for k, _ in kinds} >= {"p2p", "send_to_phone", "withdraw", "deposit", "pay_bill",
                                             "buy_goods_till", "buy_goods_pochi", "refund"}
            assert sum(n for (_, s), n in kinds.items() if s == "failed") >= 10
            assert sum(n for (_, s), n in kinds.items() if s in ("reversed", "refunded")) >= 5

            # Succeeded or failed once per payment; reversed or refunded at most once after succeeding.
            for payment in everything:
                _, events = await gateway.payments.history(payment.public_id)
                story = [(e.from_status.value if e.from_status else None, e.to_status.value) for e in events]
                ended = [to for _, to in story if to in ("succeeded", "failed")]
                undone = [(was, to) for was, to in story if to in ("reversed", "refunded")]
                assert len(ended) == 1 and undone in ([], [("succeeded", undone[0][1] if undone else "")]), \
                    (payment.public_id, payment.kind, [(e.from_status, e.to_status, e.cause) for e in events])

            # Our side: every wallet holds exactly what its final payments say.
            expected = await expected_wallets(gateway, start)
            for user in kes:
                assert await gateway.wallet(user) == expected[user.id], user.phone
            for user in xof:
                assert await gateway.wallet(user, XOF) == expected[user.id], user.phone

            # Their side: no payment of ours carried out twice.
            daraja = await statement(f"{sandboxes.urls.daraja}/_sandbox/statement")
            twice = [ref for ref, n in Counter(e.get("reference") for e in daraja).items()
                     if n > 1 and ref and any(ref == p.public_id for p in everything)]
            assert not twice, twice

            await every_final_state_told_once(gateway, endpoints, platform_id, merchant, tuple(secrets))

            await gateway.assert_ledger_ok()
            # In threads: the sandboxes run on this event loop and must keep answering.
            checked = await asyncio.to_thread(sauti, config, "ledger", "check")
            assert checked.returncode == 0, checked.stdout + checked.stderr
            reconciled = await asyncio.to_thread(sauti, config, "reconcile", "--from", began.isoformat())
            assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
