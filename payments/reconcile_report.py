"""What reconciliation found (`payments.reconcile`), as a report: each finding names the payment
and the provider's transaction(s), both amounts signed as the statement shows them (money into the
provider account is positive) and our status; the report renders for a person and as JSON, and is
`ok` when nothing needs one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from payments.money import Currency, Money


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: a payment, a statement line, or both."""

    provider: str
    detail: str
    public_id: str | None = None
    kind: str | None = None
    transaction_ids: tuple[str, ...] = ()
    #: Signed, as the provider's statement should show it.
    our_amount: Money | None = None
    #: The net of the statement lines, signed.
    their_amount: Money | None = None
    our_status: str | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def money(m: Money | None) -> dict[str, Any] | None:
            return None if m is None else {"minor": m.minor, "currency": m.currency.value, "display": m.format()}

        return {"provider": self.provider, "detail": self.detail, "public_id": self.public_id, "kind": self.kind,
                "transaction_ids": list(self.transaction_ids), "our_amount": money(self.our_amount),
                "their_amount": money(self.their_amount), "our_status": self.our_status,
                "at": self.at.isoformat() if self.at else None}


#: The report's sections, in the order they are shown; all but `matched` and `open` need a person.
PROBLEMS = ("missing_on_ours", "parked_in_suspense", "missing_on_theirs", "amount_mismatches", "status_mismatches",
            "ledger_mismatches", "probable_matches")
TITLES = {
    "missing_on_ours": "On the provider's statement, not in Sauti",
    "parked_in_suspense": "Received for no wallet, parked in suspense (assign or return it)",
    "missing_on_theirs": "Done in Sauti, not on the provider's statement",
    "amount_mismatches": "Amounts differ",
    "status_mismatches": "Statuses differ",
    "ledger_mismatches": "Ledger does not match the payment",
    "probable_matches": "Matched by amount, number and time only (check by hand)",
    "open": "Still in flight (not a discrepancy yet)",
}


@dataclass
class ReconcileReport:
    start: datetime
    end: datetime
    sources: tuple[str, ...] = ()
    matched: list[Finding] = field(default_factory=list)
    missing_on_ours: list[Finding] = field(default_factory=list)
    parked_in_suspense: list[Finding] = field(default_factory=list)
    missing_on_theirs: list[Finding] = field(default_factory=list)
    amount_mismatches: list[Finding] = field(default_factory=list)
    status_mismatches: list[Finding] = field(default_factory=list)
    ledger_mismatches: list[Finding] = field(default_factory=list)
    probable_matches: list[Finding] = field(default_factory=list)
    open: list[Finding] = field(default_factory=list)
    #: The providers' own charges on the statement (fee lines and per-line fees), per currency.
    provider_fees: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every statement line and every payment matched: nothing for a person to do."""
        return not any(getattr(self, name) for name in PROBLEMS)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("matched", *PROBLEMS, "open")}

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "sources": list(self.sources),
                "ok": self.ok, "counts": self.counts(), "provider_fees_minor": self.provider_fees,
                **{name: [f.to_json() for f in getattr(self, name)] for name in ("matched", *PROBLEMS, "open")}}

    def render(self) -> str:
        out = [f"Reconciliation {self.start.isoformat()} to {self.end.isoformat()}"]
        out += [f"  statement: {s}" for s in self.sources]
        out.append(f"  {'matched':28} {len(self.matched)}")
        out += [f"  {name.replace('_', ' '):28} {len(getattr(self, name))}" for name in (*PROBLEMS, "open")]
        for currency, minor in sorted(self.provider_fees.items()):
            out.append(f"  provider fees {currency:14} {Money(minor, Currency(currency))}")
        for name in (*PROBLEMS, "open"):
            findings = getattr(self, name)
            if findings:
                out.append("")
                out.append(f"{TITLES[name]}:")
                out += [f"  {_render(f)}" for f in findings]
        out.append("")
        out.append("All matched." if self.ok else
                   f"{sum(len(getattr(self, n)) for n in PROBLEMS)} discrepancy(ies) to look at.")
        return "\n".join(out)


def _render(f: Finding) -> str:
    parts = [f.provider, f.public_id or "-", ",".join(f.transaction_ids) or "-"]
    if f.our_amount is not None:
        parts.append(f"ours {f.our_amount}")
    if f.their_amount is not None:
        parts.append(f"theirs {f.their_amount}")
    if f.our_status:
        parts.append(f.our_status)
    if f.at:
        parts.append(f"{f.at.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}")
    return "  ".join(parts) + f"  {f.detail}"
