"""Provider statements: what M-Pesa and Wave say happened, as lines reconciliation can compare.

A `StatementSource` gives a provider's lines for a period, whatever the statement comes from:

- `WaveStatement`: Wave's ``GET /v1/transactions`` (cursor-paged, one UTC day at a time).
- `DarajaSandboxStatement`: Daraja has no statement API, so the local sandbox's books
  (``GET /_sandbox/statement``) stand in for it in development and tests.
- `MpesaCsvStatement`: the organisation statement downloaded from the M-Pesa business portal, as CSV
  (`MpesaCsvUpload`: the same, uploaded to the operators' dashboard or API). Columns (header names
  matched without regard to case, spaces or a trailing dot):

  ==================== ========= =====================================================================
  column               required  meaning
  ==================== ========= =====================================================================
  Receipt No.          yes       the M-Pesa receipt (``NLJ41HAY6Q``): the transaction's id
  Completion Time      yes       ``YYYY-MM-DD HH:MM:SS`` (also ``DD-MM-YYYY``, ``DD/MM/YYYY``, ISO 8601);
                                 Nairobi time unless it carries an offset
  Paid In              yes*      money in, major units (``1,500.00``)
  Withdrawn            yes*      money out, major units, with or without a minus sign
  Transaction Status   no        only ``Completed`` lines count (default: Completed)
  Details              no        free text, which carries what payers typed (account numbers, names)
  Reason Type          no        M-Pesa's own name for the transaction's type (``Pay Bill Online``,
                                 ``Business Payment Charge``, ``Reversal``): what classifies the line
  Other Party Info     no        ``254712345678 - Jane Doe`` (digits may be masked with ``*``)
  Linked Transaction ID no       for a reversal: the receipt it undoes (a charge's: what it charged for)
  A/C No.              no        the account reference
  Reference            no        not an M-Pesa column: our payment id, where a system adds it
  ==================== ========= =====================================================================

  (*) one of Paid In and Withdrawn holds the amount on each line. Fee lines are kept apart: they are
  the provider's charges, not payments. A line is a fee or a reversal by its Reason Type, a field
  M-Pesa fills from its own list of transaction types: a type ending in the word ``Charge(s)`` is a
  fee, one that is ``Reversal`` or ends in the word ``Reversal`` a reversal. Details is read only on
  a line whose Reason Type is empty (or a file without the column), and then only as a whole phrase
  in M-Pesa's own wording: ``Reversal`` or ``Reversal of <receipt>``, and, for money out, a charge's
  name (``B2C Charges``, ``Business Payment Charge``). Words inside free text (an account named
  ``CHARGER SHOP``, a remark ``reversal of bet``) never make a fee or a reversal.

Every line's `amount` is signed from the provider account's point of view: money in is positive.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from payments.errors import InvalidRequest
from payments.money import Currency, Money, MoneyError
from payments.providers.daraja_credentials import NAIROBI
from payments.providers.errors import ProviderProtocolError, transport_errors
from payments.providers.wave import WaveClient, WaveTransaction

MPESA, WAVE = "mpesa", "wave"


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One transaction on a provider's statement."""

    provider: str
    transaction_id: str
    at: datetime
    #: Signed: money into the provider account is positive. Gross of the provider's fee.
    amount: Money
    fee: Money
    kind: str | None = None
    #: Every other id the provider gives the line (its request id, the client reference we sent):
    #: what finds our payment for it.
    references: tuple[str, ...] = ()
    party: str | None = None
    #: A reversal or refund: the transaction it undoes, when the provider says.
    reverses: str | None = None
    is_reversal: bool = False
    is_fee: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "transaction_id": self.transaction_id, "at": self.at.isoformat(),
                "amount_minor": self.amount.minor, "currency": self.amount.currency.value,
                "fee_minor": self.fee.minor, "kind": self.kind, "references": list(self.references),
                "party": self.party, "reverses": self.reverses, "is_reversal": self.is_reversal}


class StatementSource(Protocol):
    """Where a provider's statement comes from. ``lines`` gives those with ``start <= at < end``."""

    provider: str
    description: str

    async def lines(self, start: datetime, end: datetime) -> list[StatementLine]: ...


def _within(moment: datetime, start: datetime, end: datetime) -> bool:
    return start <= moment < end


# -- Wave ------------------------------------------------------------------------------------------


class WaveStatement:
    """Wave's transactions API, day by day (its ``date`` filter is a UTC day)."""

    provider = WAVE

    def __init__(self, client: WaveClient) -> None:
        self.client = client
        self.description = "Wave GET /v1/transactions"

    async def lines(self, start: datetime, end: datetime) -> list[StatementLine]:
        found: list[StatementLine] = []
        day = start.astimezone(UTC).date()
        last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
        while day <= last:
            async for item in self.client.iter_transactions(day=day):
                line = wave_line(item, day)
                if _within(line.at, start, end):
                    found.append(line)
            day += timedelta(days=1)
        return found


def wave_line(item: WaveTransaction, day: date) -> StatementLine:
    references = tuple(r for r in (item.client_reference,) if r)
    return StatementLine(
        provider=WAVE, transaction_id=item.transaction_id,
        # A line without a timestamp belongs to the day it was listed under.
        at=item.timestamp or datetime.combine(day, time(), UTC),
        amount=item.amount, fee=item.fee, kind=item.transaction_type, references=references,
        party=item.counterparty_mobile, is_reversal=item.is_reversal)


# -- Daraja sandbox --------------------------------------------------------------------------------


class DarajaSandboxStatement:
    """The sandbox Daraja's books, read over HTTP (``GET /_sandbox/statement?from=&to=``)."""

    provider = MPESA

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.description = f"sandbox statement {self.base_url}/_sandbox/statement"

    async def lines(self, start: datetime, end: datetime) -> list[StatementLine]:
        params = {"from": start.astimezone(UTC).isoformat(), "to": end.astimezone(UTC).isoformat()}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        with transport_errors(MPESA):
            async with aiohttp.ClientSession(timeout=timeout) as http, \
                    http.get(f"{self.base_url}/_sandbox/statement", params=params) as resp:
                status, payload = resp.status, await resp.json(content_type=None)
        if status != 200 or not isinstance(payload, Mapping) or not isinstance(payload.get("transactions"), list):
            raise ProviderProtocolError(MPESA, f"sandbox statement answered HTTP {status}", http_status=status)
        return [line for line in (daraja_sandbox_line(t) for t in payload["transactions"])
                if _within(line.at, start, end)]


def daraja_sandbox_line(entry: Any) -> StatementLine:
    try:
        currency = Currency.parse(str(entry.get("currency") or "KES"))
        at = datetime.fromisoformat(str(entry["at"]))
        return StatementLine(
            provider=MPESA, transaction_id=str(entry["transaction_id"]),
            at=at if at.tzinfo else at.replace(tzinfo=UTC),
            amount=Money(int(entry["amount_minor"]), currency), fee=Money(int(entry.get("fee_minor") or 0), currency),
            kind=entry.get("kind"),
            references=tuple(str(r) for r in (entry.get("reference"), entry.get("client_reference")) if r),
            party=entry.get("party") or None, reverses=entry.get("reverses") or None,
            is_reversal=entry.get("reverses") is not None or entry.get("kind") == "reversal")
    except (KeyError, TypeError, ValueError, AttributeError, MoneyError) as exc:
        raise ProviderProtocolError(MPESA, f"sandbox statement line not understood: {exc}") from None


# -- M-Pesa statement CSV --------------------------------------------------------------------------


_COLUMN_NAMES = {
    "receiptno": "receipt", "completiontime": "completed", "paidin": "paid_in", "withdrawn": "withdrawn",
    "transactionstatus": "status", "details": "details", "reasontype": "reason", "otherpartyinfo": "party",
    "linkedtransactionid": "linked", "a/cno": "account", "reference": "reference",
}
_REQUIRED = ("receipt", "completed", "paid_in", "withdrawn")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S",
                 "%d.%m.%Y %H:%M:%S", "%Y%m%d%H%M%S")
_PARTY = re.compile(r"^\s*([0-9*]{9,15})")


class StatementFileError(InvalidRequest):
    """A statement file that cannot be read as documented; the message names the line and column."""

    code = "statement_file_error"


class MpesaCsvStatement:
    """An M-Pesa organisation statement downloaded as CSV (columns: see the module docstring)."""

    provider = MPESA

    def __init__(self, path: Path | str, *, currency: Currency = Currency.KES) -> None:
        self.path = Path(path)
        self.currency = currency
        self.description = f"M-Pesa statement file {self.path}"

    async def lines(self, start: datetime, end: datetime) -> list[StatementLine]:
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise StatementFileError(f"cannot read {self.path}: {exc}") from None
        return [line for line in parse_mpesa_csv(text, self.currency, source=str(self.path))
                if _within(line.at, start, end)]


class MpesaCsvUpload:
    """The same statement, uploaded (the operators' reconciliation: `gateway.reconciliation`)."""

    provider = MPESA

    def __init__(self, text: str, name: str = "uploaded statement", *, currency: Currency = Currency.KES) -> None:
        self.text = text
        self.currency = currency
        self.description = f"M-Pesa statement {name}"

    async def lines(self, start: datetime, end: datetime) -> list[StatementLine]:
        return [line for line in parse_mpesa_csv(self.text, self.currency, source=self.description)
                if _within(line.at, start, end)]


def _column(name: str) -> str:
    return re.sub(r"[\s._]+", "", name.strip().lower())


def parse_mpesa_csv(text: str, currency: Currency = Currency.KES, *, source: str = "statement") -> list[StatementLine]:
    """The completed lines of an M-Pesa statement CSV. Preamble lines before the header (the portal
    writes the organisation's name and the period first) are skipped."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a field past the csv module's limit, say
        raise StatementFileError(f"{source}: not a CSV statement ({exc})") from None
    header_at = next((i for i, row in enumerate(rows)
                      if {_COLUMN_NAMES.get(_column(c)) for c in row} >= set(_REQUIRED)), None)
    if header_at is None:
        raise StatementFileError(f"{source}: no header with the columns Receipt No., Completion Time, Paid In "
                                 "and Withdrawn")
    names = [_COLUMN_NAMES.get(_column(c)) for c in rows[header_at]]
    lines = []
    for number, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if not any(cell.strip() for cell in row):
            continue
        record = {name: cell.strip() for name, cell in zip(names, row, strict=False) if name}
        where = f"{source} line {number}"
        if (record.get("status") or "Completed").lower() != "completed":
            continue  # failed or cancelled lines moved no money
        lines.append(_csv_line(record, currency, where))
    return lines


def _csv_line(record: Mapping[str, str], currency: Currency, where: str) -> StatementLine:
    receipt = record.get("receipt", "")
    if not receipt:
        raise StatementFileError(f"{where}: Receipt No. is empty")
    paid_in, withdrawn = record.get("paid_in", ""), record.get("withdrawn", "")
    if bool(paid_in) == bool(withdrawn):
        raise StatementFileError(f"{where}: exactly one of Paid In and Withdrawn holds the amount")
    try:
        amount = Money.of((paid_in or withdrawn).lstrip("-").strip(), currency)
    except MoneyError as exc:
        raise StatementFileError(f"{where}: {exc}") from None
    if withdrawn:
        amount = -amount
    is_reversal, is_fee = _classify(record, money_out=bool(withdrawn))
    party = _PARTY.match(record.get("party", ""))
    references = tuple(r for r in (record.get("reference"), record.get("account")) if r)
    return StatementLine(
        provider=MPESA, transaction_id=receipt, at=_csv_time(record.get("completed", ""), where), amount=amount,
        fee=Money.zero(currency), kind=record.get("reason") or record.get("details") or None, references=references,
        party=party.group(1) if party else None, reverses=record.get("linked") or None,
        is_reversal=is_reversal, is_fee=is_fee)


# Reason Type is M-Pesa's vocabulary ("Business Payment Charge", "Pay Utility Reversal"): its last
# word names what the line is.
_REASON_FEE = re.compile(r"(?:[a-z0-9/-]+ )*charges?")
_REASON_REVERSAL = re.compile(r"(?:[a-z0-9/-]+ )*reversal")
# Details is free text that embeds what payers typed: only M-Pesa's own whole phrases count, from
# the first word to the last. A reversal names the receipt it undoes (letters and digits, with a
# digit: never a word such as "bet"); a charge is a few words of a type's name and nothing else.
_DETAILS_REVERSAL = re.compile(r"reversal(?: of (?=[a-z0-9]*[0-9])[a-z0-9]{8,20})?")
_DETAILS_FEE = re.compile(r"(?:[a-z0-9]+ ){0,3}charges?")


def _phrase(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def _classify(record: Mapping[str, str], *, money_out: bool) -> tuple[bool, bool]:
    """(is_reversal, is_fee) of a statement line, by its Reason Type; by its Details only where it
    has none (see the module docstring)."""
    reason = _phrase(record.get("reason"))
    if reason:
        return bool(_REASON_REVERSAL.fullmatch(reason)), bool(_REASON_FEE.fullmatch(reason))
    details = _phrase(record.get("details"))
    # A charge is money M-Pesa takes: a line paying money in is never one.
    return bool(_DETAILS_REVERSAL.fullmatch(details)), money_out and bool(_DETAILS_FEE.fullmatch(details))


def _csv_time(text: str, where: str) -> datetime:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=NAIROBI)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise StatementFileError(f"{where}: Completion Time {text[:40]!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=NAIROBI)


def combine(sources: Iterable[StatementSource]) -> Sequence[StatementSource]:
    """The sources, at most one per provider (a second would count every line twice)."""
    chosen: dict[str, StatementSource] = {}
    for source in sources:
        if source.provider in chosen:
            raise InvalidRequest(f"two statements for {source.provider}: {chosen[source.provider].description} "
                                 f"and {source.description}")
        chosen[source.provider] = source
    return tuple(chosen.values())
