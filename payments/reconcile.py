"""Reconciliation: our payments, and the ledger transfers that settled them, against each provider's
statement for a period (DESIGN invariant 5: every external payment is matched against the
provider's own statement).

One pipeline, top to bottom, per provider:

1. Read the statement (`payments.provider_statements`) and our payments with that provider, both
   over the period widened by a grace (a payment made at 23:59 may settle at 00:01), plus any
   payment of ours a statement line names, whenever it was made.
2. Match each line to a payment by the ids both sides know: our `public_id` (Daraja's
   OriginatorConversationID, Wave's client_reference), the provider's reference for the request
   (CheckoutRequestID, payout or session id) and its receipt / transaction id. A reversal or refund
   line goes to our refund payment when there is one, else to the payment it undoes.
3. Lines still unmatched are paired, for review only, with a payment of the same amount to the
   same number at about the same time ("probable": the provider's ids never reached us).
4. Judge every payment: amounts (the lines' net against what the payment should have moved, signed:
   money into the provider account is positive), statuses (the provider completed what we failed,
   or reversed what we count as succeeded), and the ledger (a final payment leaves nothing in
   provider clearing; a succeeded one moved exactly its amount to provider settlement, or from
   provider collection).

IMPORTANT: reconciliation only reads. It never moves money or changes a payment: every finding is
for a person to decide (a refund, a reversal, a manual credit), each through its own command.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Text, any_, bindparam, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.schema import payments as payments_table
from payments.errors import InvalidRequest
from payments.money import Currency, Money
from payments.payment_settings import BOOKED_BY, PARKED_BY
from payments.provider_statements import StatementLine, StatementSource
from payments.reconcile_report import Finding, ReconcileReport
from payments.states import PaymentStatus
from payments.suspense import CONFIRMING, CREDITED, RETURNED, Parked, parked_many

S = PaymentStatus
#: Kinds whose money comes INTO the provider account (a positive statement line); all others go out.
INCOMING_KINDS = frozenset({"deposit"})
REFUND_KIND = "refund"
#: Statuses of a payment the provider really carried out (a refund is a payment of its own).
_DONE = frozenset({S.SUCCEEDED, S.REVERSED, S.REFUNDED})
#: The provider-refs keys that hold one of the provider's ids for a payment.
_REF_KEYS = ("receipt", "transaction_id", "conversation_id", "payout_id", "checkout_request_id",
             "checkout_session_id")
#: The settlement steps' transfer keys (`payments.settlement`): ``<step>:<public_id>``.
_STEPS = ("debit", "settle", "unwind", "credit", "return", "refund")
#: Money that came in for no payment of ours, parked for an operator (`Settlement.park_in_suspense`).
_LEDGER_BATCH = 2000


@dataclass(frozen=True, slots=True)
class OurPayment:
    """What reconciliation needs of one of our payments."""

    id: int
    public_id: str
    kind: str
    status: PaymentStatus
    provider: str
    provider_ref: str | None
    refs: Mapping[str, Any]
    amount: Money
    recipient_phone: str | None
    created_at: datetime
    debit_transfer_id: int | None
    settle_transfer_id: int | None
    refund_of: int | None

    @property
    def incoming(self) -> bool:
        return self.kind in INCOMING_KINDS

    @property
    def expected(self) -> Money:
        """What the provider's statement should show for it, signed."""
        return self.amount if self.incoming else -self.amount

    def identifiers(self) -> set[str]:
        ids = {self.public_id}
        if self.provider_ref:
            ids.add(self.provider_ref)
        ids.update(str(self.refs[k]) for k in _REF_KEYS if self.refs.get(k))
        return ids


# -- our side --------------------------------------------------------------------------------------


_P = payments_table.c
_OURS = select(_P.id, _P.public_id, _P.kind, _P.status, _P.provider, _P.provider_ref, _P.provider_refs, _P.amount,
               _P.currency, _P.recipient_phone, _P.created_at, _P.debit_transfer_id, _P.settle_transfer_id,
               _P.refund_of)


def _our(row: Any) -> OurPayment:
    return OurPayment(row.id, row.public_id, row.kind, PaymentStatus(row.status), row.provider, row.provider_ref,
                      dict(row.provider_refs or {}), Money(row.amount, Currency(row.currency)), row.recipient_phone,
                      row.created_at, row.debit_transfer_id, row.settle_transfer_id, row.refund_of)


async def our_payments(conn: AsyncConnection, provider: str, start: datetime, end: datetime,
                       named: Iterable[str] = ()) -> dict[int, OurPayment]:
    """Our payments with ``provider`` made in ``[start, end)``, those a statement line names by one of
    our ids (whenever made), and the refunds of all of them."""
    # One array parameter each, not one parameter per id: a month's statement has more lines than
    # a statement may have parameters.
    names = bindparam("names", sorted(set(named)), type_=ARRAY(Text))
    found = await conn.execute(_OURS.where(_P.provider == provider, or_(
        (_P.created_at >= start) & (_P.created_at < end),
        _P.public_id == any_(names), _P.provider_ref == any_(names),
        _P.provider_refs["receipt"].astext == any_(names), _P.provider_refs["transaction_id"].astext == any_(names))))
    ours = {row.id: _our(row) for row in found}
    if ours:
        originals = bindparam("originals", sorted(ours), type_=ARRAY(BigInteger))
        refunds = await conn.execute(_OURS.where(_P.provider == provider, _P.refund_of == any_(originals)))
        ours.update((row.id, _our(row)) for row in refunds)
    return ours


async def ledger_nets(conn: AsyncConnection, ours: Sequence[OurPayment]) -> dict[tuple[str, str], int]:
    """Per (public_id, account kind): the net the payment's own transfers moved on the provider-side
    accounts (clearing, settlement, collection). A transfer is the payment's by its key (which names
    the payment) or as its debit or settle transfer (money credited from suspense: its debit is the
    parking, which names the receipt)."""
    nets: dict[tuple[str, str], int] = defaultdict(int)
    query = text(
        "SELECT t.id, t.reference, a.kind, sum(p.amount) AS net FROM transfers t "
        "JOIN postings p ON p.transfer_id = t.id JOIN accounts a ON a.id = p.account_id "
        "WHERE (t.idempotency_key = ANY(:keys) OR t.id = ANY(:ids)) "
        "AND a.kind IN ('provider_clearing', 'provider_settlement', 'provider_collection') "
        "GROUP BY t.id, t.reference, a.kind")
    for at in range(0, len(ours), _LEDGER_BATCH):
        batch = ours[at:at + _LEDGER_BATCH]
        keys = [f"{step}:{p.public_id}" for p in batch for step in _STEPS]
        owner = {i: p.public_id for p in batch for i in (p.debit_transfer_id, p.settle_transfer_id) if i is not None}
        for row in await conn.execute(query, {"keys": keys, "ids": sorted(owner)}):
            nets[(owner.get(row.id, row.reference), row.kind)] += int(row.net)
    return nets


def _sort_parked(report: ReconcileReport, provider: str, unmatched: Sequence[StatementLine],
                 parked: Mapping[str, Parked]) -> list[StatementLine]:
    """File the unmatched lines that are money we parked in suspense, and the reversals of those
    (whether the line they reverse is in this period or not); returns the lines still unexplained.
    A parked amount recorded as returned, whose reversal the statement shows for the whole amount,
    is settled (matched); a reversal of money credited from suspense is a status mismatch (the
    payer has it twice); anything else parked waits for a person. No line is left out."""
    firsts = {ln.transaction_id: ln for ln in unmatched if ln.transaction_id in parked and not ln.is_reversal}
    reversals: dict[str, list[StatementLine]] = defaultdict(list)
    rest: list[StatementLine] = []
    for line in unmatched:
        if line.is_reversal and line.reverses in parked:
            reversals[line.reverses].append(line)
        elif line.is_reversal or line.transaction_id not in parked:
            rest.append(line)
    for receipt in sorted(firsts.keys() | reversals.keys()):
        held, backs, first = parked[receipt], reversals.get(receipt, []), firsts.get(receipt)
        lines = ([first] if first else []) + backs
        ids = tuple(ln.transaction_id for ln in lines)
        their = Money(sum(ln.amount.minor for ln in lines), lines[0].amount.currency)
        what = (f"{first.kind or 'transaction'} with {first.party or 'unknown party'}" if first
                else f"M-Pesa reversed {receipt} (before this period)")
        section, detail, public_id = _parked_verdict(held, backs)
        getattr(report, section).append(Finding(provider, f"{what}: {detail}", public_id, lines[0].kind, ids, None,
                                                their, held.state, lines[0].at))
    return rest


def _parked_verdict(held: Parked, backs: Sequence[StatementLine]) -> tuple[str, str, str | None]:
    """Where a parked amount's lines go in the report (its section), why, and the payment named."""
    reversed_whole = bool(backs) and sum(ln.amount.minor for ln in backs) == -held.amount.minor
    if held.state == RETURNED:
        return (("matched", "parked in suspense, returned to the payer", None) if reversed_whole else
                ("parked_in_suspense", "recorded as returned, but this period shows no reversal of it for its whole "
                 "amount (one may fall in the next)", None))
    if held.state in (CREDITED, CONFIRMING):
        if backs:  # the payer has the money back, and the wallet has it too
            return "status_mismatches", f"M-Pesa reversed it; Sauti {held.state} it from suspense", held.payment
        return "parked_in_suspense", f"{held.state} from suspense", held.payment
    if backs:
        return "parked_in_suspense", "M-Pesa reversed it; record that with `sauti suspense return`", None
    return "parked_in_suspense", "waiting in suspense: credit it to its wallet, or return it", None


# -- matching --------------------------------------------------------------------------------------


@dataclass
class _Matching:
    """The lines of one provider's statement, sorted onto our payments."""

    ours: dict[int, OurPayment]
    lines_of: dict[int, list[StatementLine]] = field(default_factory=lambda: defaultdict(list))
    reversals_of: dict[int, list[StatementLine]] = field(default_factory=lambda: defaultdict(list))
    unmatched: list[StatementLine] = field(default_factory=list)
    probable: list[tuple[StatementLine, OurPayment]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id: dict[str, OurPayment] = {}
        # Refunds first, so that a payment's own ids win over a refund that copied them.
        for payment in sorted(self.ours.values(), key=lambda p: p.kind != REFUND_KIND):
            for ident in payment.identifiers():
                self._by_id[ident] = payment
        self._refund_of = {p.refund_of: p for p in self.ours.values() if p.refund_of is not None
                           and p.status is not S.FAILED}

    def lookup(self, line: StatementLine) -> OurPayment | None:
        for ident in (line.transaction_id, *line.references):
            if ident in self._by_id:
                return self._by_id[ident]
        return None

    def sort(self, lines: Sequence[StatementLine]) -> None:
        by_transaction: dict[str, OurPayment] = {}
        for line in (ln for ln in lines if not ln.is_reversal):
            payment = self.lookup(line)
            if payment is None:
                self.unmatched.append(line)
                continue
            self.lines_of[payment.id].append(line)
            by_transaction[line.transaction_id] = payment
        for line in (ln for ln in lines if ln.is_reversal):
            payment = self.lookup(line)
            if payment is not None and payment.kind == REFUND_KIND:
                self.lines_of[payment.id].append(line)
                continue
            original = by_transaction.get(line.reverses or "") or payment
            if original is None:
                self.unmatched.append(line)
            elif (refund := self._refund_of.get(original.id)) is not None:
                self.lines_of[refund.id].append(line)  # our refund of it, which the provider carried out
            else:
                self.reversals_of[original.id].append(line)

    def pair_probable(self, window: timedelta) -> None:
        """Pair each unmatched line with a payment that has no line, of the same signed amount, to the
        same number, made shortly before: a candidate for a person, never a match."""
        free = [p for p in self.ours.values() if p.id not in self.lines_of and p.recipient_phone]
        still: list[StatementLine] = []
        for line in sorted(self.unmatched, key=lambda ln: ln.at):
            candidates = [p for p in free if p.expected == line.amount and _same_party(line.party, p.recipient_phone)
                          and -timedelta(minutes=5) <= line.at - p.created_at <= window]
            if not candidates:
                still.append(line)
                continue
            best = min(candidates, key=lambda p: abs(line.at - p.created_at))
            free.remove(best)
            self.probable.append((line, best))
        self.unmatched = still


def _same_party(party: str | None, phone: str | None) -> bool:
    """Whether a statement's party (``254712345678``, or masked ``2547******678``) is ``phone``."""
    if not party or not phone:
        return False
    digits = phone.lstrip("+")
    return len(party) == len(digits) and all(a in ("*", b) for a, b in zip(party, digits, strict=True))


# -- judging ---------------------------------------------------------------------------------------


def _expected_of(payment: OurPayment, ours: Mapping[int, OurPayment]) -> Money:
    """A refund moves money the other way from the payment it undoes; others as `expected`."""
    if payment.kind == REFUND_KIND and payment.refund_of in ours:
        return -ours[payment.refund_of].expected
    return payment.expected


def _judge(report: ReconcileReport, payment: OurPayment, matching: _Matching, nets: Mapping[tuple[str, str], int],
           start: datetime, end: datetime) -> None:
    lines = matching.lines_of.get(payment.id, [])
    reversals = matching.reversals_of.get(payment.id, [])
    in_window = start <= payment.created_at < end or any(start <= ln.at < end for ln in (*lines, *reversals))
    if not in_window:
        return
    if not lines and not reversals and (PARKED_BY in payment.refs or BOOKED_BY in payment.refs):
        # Credited from suspense, or a C2B payment booked by hand from the statement (`sauti mpesa
        # book-c2b`): its money came in with a statement line of an earlier period (the parking, or
        # the payment whose confirmation never came), and it is judged with that line, which names
        # its receipt. In the period it was booked in it has no line of its own: not "missing".
        return
    expected = _expected_of(payment, matching.ours)
    cur = payment.amount.currency
    transactions = tuple(ln.transaction_id for ln in (*lines, *reversals))

    def finding(detail: str, their: Money | None = None) -> Finding:
        at = lines[0].at if lines else payment.created_at
        return Finding(payment.provider, detail, payment.public_id, payment.kind, transactions, expected, their,
                       payment.status.value, at)

    problems = 0
    if not lines and not payment.status.is_final:
        report.open.append(finding("no result yet"))
        return
    if lines:
        direct = Money(sum(ln.amount.minor for ln in lines), cur)
        if len(lines) > 1 or direct != expected:
            problems += 1
            report.amount_mismatches.append(finding(
                f"the provider shows {len(lines)} transaction(s) for {direct}; the payment is for {expected}",
                direct))
        undone = bool(reversals) and direct.minor + sum(ln.amount.minor for ln in reversals) == 0
        if undone and payment.status not in (S.FAILED, S.REVERSED, S.REFUNDED):
            problems += 1
            report.status_mismatches.append(finding(
                f"the provider reversed it; Sauti says {payment.status.value}", direct))
        elif not undone and payment.status is S.FAILED:
            problems += 1
            report.status_mismatches.append(finding(
                "the provider completed it; Sauti failed it (" +
                ("the wallet was never credited)" if payment.incoming else "the payer got the money back too)"),
                direct))
        elif not undone and not payment.status.is_final:
            problems += 1
            report.status_mismatches.append(finding(
                f"the provider completed it; Sauti still says {payment.status.value}", direct))
    elif payment.status in _DONE:
        problems += 1
        report.missing_on_theirs.append(finding("no transaction on the provider's statement"))
    problems += _judge_ledger(report, payment, nets, finding)
    # A failed payment the provider shows nothing for agrees, but matched nothing: it is not listed.
    if not problems and lines:
        report.matched.append(finding("matched", Money(sum(ln.amount.minor for ln in lines), cur)))


def _judge_ledger(report: ReconcileReport, payment: OurPayment, nets: Mapping[tuple[str, str], int],
                  finding: Any) -> int:
    if not payment.status.is_final:
        return 0
    cur = payment.amount.currency

    def net(kind: str) -> int:
        return nets.get((payment.public_id, kind), 0)

    wrong: list[str] = []
    if net("provider_clearing"):
        wrong.append(f"{Money(net('provider_clearing'), cur)} left in provider clearing")
    if payment.kind != REFUND_KIND:
        done = payment.status in _DONE
        if payment.incoming:
            should = -payment.amount.minor if done else 0
            if net("provider_collection") != should:
                wrong.append(f"provider collection moved {Money(net('provider_collection'), cur)}, "
                             f"expected {Money(should, cur)}")
        else:
            should = payment.amount.minor if done else 0
            if net("provider_settlement") != should:
                wrong.append(f"provider settlement moved {Money(net('provider_settlement'), cur)}, "
                             f"expected {Money(should, cur)}")
    if wrong:
        report.ledger_mismatches.append(finding("ledger: " + "; ".join(wrong)))
    return len(wrong)


# -- the pipeline ----------------------------------------------------------------------------------


async def reconcile(engine: AsyncEngine, sources: Sequence[StatementSource], start: datetime, end: datetime, *,
                    grace: timedelta = timedelta(hours=1)) -> ReconcileReport:
    """Reconcile ``[start, end)`` (aware datetimes) against each source's statement; reads only."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequest("the period's bounds need a time zone (e.g. 2026-01-31T00:00:00+03:00)")
    if start >= end:
        raise InvalidRequest("the period must end after it starts")
    if grace < timedelta(0):
        raise InvalidRequest("the grace period cannot be negative")
    report = ReconcileReport(start, end, tuple(f"{s.provider}: {s.description}" for s in sources))
    for source in sources:
        lines = await source.lines(start - grace, end + grace)
        fees = [ln for ln in lines if ln.is_fee]
        lines = [ln for ln in lines if not ln.is_fee]
        for ln in (*fees, *lines):
            if start <= ln.at < end:
                charge = abs(ln.amount.minor) if ln.is_fee else ln.fee.minor
                cur = ln.amount.currency.value
                report.provider_fees[cur] = report.provider_fees.get(cur, 0) + charge
        named = {ident for ln in lines for ident in (ln.transaction_id, *ln.references)}
        async with engine.connect() as conn:
            ours = await our_payments(conn, source.provider, start - grace, end + grace, named)
            nets = await ledger_nets(conn, list(ours.values()))
        matching = _Matching(ours)
        matching.sort(lines)
        # Money we parked in suspense, and its reversals, are ours already: never paired by amount
        # with a payment (a credit from suspense M-Pesa refused has that amount and number).
        async with engine.connect() as conn:
            # What we parked under each (`payments.suspense`), and what became of it.
            parked = await parked_many(conn, [ident for ln in matching.unmatched
                                              for ident in (ln.transaction_id, ln.reverses) if ident])
        parked_lines = [ln for ln in matching.unmatched
                        if (ln.reverses in parked if ln.is_reversal else ln.transaction_id in parked)]
        matching.unmatched = [ln for ln in matching.unmatched if ln not in parked_lines]
        matching.pair_probable(grace)
        paired = {payment.id for _, payment in matching.probable}
        for payment in sorted(ours.values(), key=lambda p: p.created_at):
            if payment.id not in paired:  # a probable pair is reported as such, once
                _judge(report, payment, matching, nets, start, end)
        for line, payment in matching.probable:
            report.probable_matches.append(Finding(
                source.provider, "same amount and number, no shared id", payment.public_id, payment.kind,
                (line.transaction_id,), payment.expected, line.amount, payment.status.value, line.at))
        unmatched = [ln for ln in (*parked_lines, *matching.unmatched) if start <= ln.at < end]
        for line in _sort_parked(report, source.provider, unmatched, parked):
            what = f"{line.kind or 'transaction'} with {line.party or 'unknown party'}"
            report.missing_on_ours.append(Finding(source.provider, what, None, line.kind, (line.transaction_id,), None,
                                                  line.amount, None, line.at))
    return report
